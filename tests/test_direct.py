"""The API routes served directly, past aiohttp's Application (server/direct.py): the same answers, byte for
byte, as through the router; the Application still serves every other request, and an app given a middleware
or a response signal of its own is served whole, so what those do still happens to every response.

Each test runs the real app on a real socket, with aiohttp's own handler counted: what reaches it is what the
Application served.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from mockstream.server import create_app, route_directly
from mockstream.server.access_log import AccessLog
from mockstream.server.state import State

CHAT = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}],
        "mockstream": {"tokens": ["a", "b"]}}


@contextlib.asynccontextmanager
async def serving(app: web.Application, **runner_options) -> AsyncIterator[tuple[int, list[str]]]:
    """`app` on a port, its API routes served directly where they can be; yields the port and the paths that
    reached the Application."""
    if "access_log_class" not in runner_options:
        runner_options["access_log"] = None
    runner = web.AppRunner(app, **runner_options)
    await runner.setup()
    assert runner.server is not None
    reached: list[str] = []
    application = runner.server.request_handler

    def counted(request: web.BaseRequest) -> Awaitable[web.StreamResponse]:
        reached.append(request.path)
        return application(request)

    runner.server.request_handler = counted
    route_directly(runner)
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield runner.addresses[0][1], reached
    finally:
        await runner.cleanup()


async def exchange(port: int, method: str, path: str, body: dict | None = None, **headers: str) -> tuple[str, bytes]:
    """One request on its own connection: the response's head (without its Date) and body bytes as sent."""
    payload = json.dumps(body).encode() if body is not None else b""
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close",
             f"Content-Length: {len(payload)}", *(f"{name.replace('_', '-')}: {v}" for name, v in headers.items())]
    if body is not None:
        lines.append("Content-Type: application/json")
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + payload)
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, rest = answer.partition(b"\r\n\r\n")
    kept = [line for line in head.decode().split("\r\n") if not line.lower().startswith("date:")]
    return "\r\n".join(kept), rest


async def test_an_api_request_goes_past_the_application_and_the_rest_through_it():
    async with serving(create_app(speed=0)) as (port, reached):
        head, body = await exchange(port, "POST", "/v1/chat/completions", CHAT)
        assert head.startswith("HTTP/1.1 200") and b"data: [DONE]" in body
        head, _ = await exchange(port, "POST", "/v1/messages", {"model": "m", "max_tokens": 5, "stream": True,
                                                                  "messages": [{"role": "user", "content": "hi"}]})
        assert head.startswith("HTTP/1.1 200")
        assert reached == []  # neither reached the Application
        await exchange(port, "GET", "/_mockstream/requests")  # the admin API
        await exchange(port, "POST", "/v1beta/models/gemini-2.0-flash:streamGenerateContent",
                       {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]})  # a path with a variable part
        await exchange(port, "GET", "/v1/nowhere")
        assert reached == ["/_mockstream/requests", "/v1beta/models/gemini-2.0-flash:streamGenerateContent",
                           "/v1/nowhere"]


async def test_a_cross_origin_call_and_an_expectation_are_the_applications():
    async with serving(create_app(speed=0)) as (port, reached):
        head, body = await exchange(port, "POST", "/v1/chat/completions", CHAT, Origin="http://localhost:5173")
        assert "access-control-allow-origin: http://localhost:5173" in head.lower() and b"data: [DONE]" in body
        head, body = await exchange(port, "POST", "/v1/chat/completions", CHAT, Expect="100-continue")
        assert head.startswith("HTTP/1.1 100 Continue") and b"data: [DONE]" in body
        assert reached == ["/v1/chat/completions", "/v1/chat/completions"]


async def test_served_directly_or_routed_the_answer_is_the_same_bytes():
    async def leave_alone(request: web.Request, response: web.StreamResponse) -> None:
        return None

    routed_app = create_app(speed=0, seed=7)
    routed_app.on_response_prepare.append(leave_alone)  # a signal of the user's: the app is served whole
    answers = []
    for app in (create_app(speed=0, seed=7), routed_app):
        async with serving(app) as (port, reached):
            answers.append(await exchange(port, "POST", "/v1/chat/completions", {**CHAT, "mockstream": {}}))
            answers.append(await exchange(port, "POST", "/v1/chat/completions", {"model": "m", "messages": []}))
        assert reached == ([] if app is not routed_app else ["/v1/chat/completions"] * 2)
    direct, direct_refused, routed, routed_refused = answers
    assert direct == routed
    assert direct_refused[0].startswith("HTTP/1.1 400")
    # the refusal's request id is a counter of the process: the rest of it is the same
    assert direct_refused[1] == routed_refused[1]


async def test_a_middleware_of_the_users_keeps_every_request_on_the_application():
    seen: list[str] = []

    @web.middleware
    async def mine(request: web.Request, handler: Callable) -> web.StreamResponse:
        seen.append(request.path)
        return await handler(request)

    app = create_app(speed=0)
    app.middlewares.append(mine)
    async with serving(app) as (port, reached):
        head, _ = await exchange(port, "POST", "/v1/chat/completions", CHAT)
    assert head.startswith("HTTP/1.1 200")
    assert seen == reached == ["/v1/chat/completions"]


async def test_an_api_request_served_directly_logs_one_line_from_its_journal_entry():
    lines: list[str] = []
    access_log = AccessLog(write=lines.append)
    app = create_app(speed=0)
    State.of(app).journal.listeners.append(access_log.ended)
    async with serving(app, access_log_class=access_log.for_aiohttp()) as (port, reached):
        await exchange(port, "POST", "/v1/chat/completions", CHAT)
        await exchange(port, "GET", "/v1/models")
        await asyncio.sleep(0.05)  # aiohttp logs a request once its connection handler is done with it
    assert reached == ["/v1/models"]
    assert len(lines) == 2, lines
    assert " POST /v1/chat/completions scenario=default status=200 outcome=completed " in lines[0]
    assert " GET /v1/models scenario=- status=200 outcome=completed " in lines[1]


async def test_every_api_answer_served_directly_carries_the_servers_own_headers():
    """The server's headers (`--header`, a worker's pid) are on a stream, a whole answer, a fault's refusal and
    a bad request's 400 alike: with no response signal on the direct path, each answer must carry them itself
    (a proxied answer: tests/test_record.py)."""
    app = create_app(speed=0)
    State.of(app).settings.headers["x-served-by"] = "worker-7"
    refused = {**CHAT, "mockstream": {"fault": {"kind": "http_error", "status": 429, "retry_after": 0}}}
    async with serving(app) as (port, reached):
        answers = [
            await exchange(port, "POST", "/v1/chat/completions", CHAT),
            await exchange(port, "POST", "/v1/chat/completions", {**CHAT, "stream": False}),
            await exchange(port, "POST", "/v1/chat/completions", refused),
            await exchange(port, "POST", "/v1/chat/completions", {"model": "m", "messages": "not a list"}),
        ]
    assert reached == []
    statuses = [head.split("\r\n")[0].split(" ")[1] for head, _ in answers]
    assert statuses == ["200", "200", "429", "400"]
    for head, _ in answers:
        assert "x-served-by: worker-7" in head.lower(), head
