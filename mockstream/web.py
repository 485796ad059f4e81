"""Browsers: CORS on every route, the EventSource route, route aliases, static files and the demo page.

A chat front-end can point `fetch()` or `new EventSource()` at the mock from a dev server on another
origin, or mount the mock at the paths it already calls (`--route /api/chat=chat`) and serve its own
page from the same origin (`--static DIR`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import aiohttp_cors
from aiohttp import hdrs, web

from .dialects import chat
from .errors import RequestError
from .faults import EVENT, Frame
from .plan import Plan
from .server import DIALECT_NAMES, _dialect_handler

# What a page's script may read from a response (the SDKs read the request id and rate limits).
EXPOSED_HEADERS = (
    "x-request-id",
    "request-id",
    "openai-processing-ms",
    "openai-version",
    "retry-after",
    "retry-after-ms",
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
    "x-mockstream-scenario",
)
# Query parameters of the EventSource route that are not knobs.
ROUTE_PARAMS = ("model", "prompt")
# Knob fields that stay strings when read from a query string; every other value is read as JSON.
STRING_FIELDS = {
    "content",
    "locale",
    "finish_reason",
    "scenario",
    "fault.kind",
    "fault.message",
    "fault.type",
    "fault.code",
    "fault.data",
}
RETRY_MS = 1000  # how soon a browser reconnects after the stream ends


def add_routes(app: web.Application, routes: Mapping[str, str], static: str | None) -> None:
    """The EventSource route, the aliases, and what `/` serves."""
    app.router.add_get("/v1/chat/completions", _dialect_handler(EventSourceChat(), _query_body))
    for path, name in routes.items():
        app.router.add_post(path, _dialect_handler(DIALECT_NAMES[name]))
        if name == "chat":
            app.router.add_get(path, _dialect_handler(EventSourceChat(), _query_body))
    if static is None:
        app.router.add_get("/", _demo)
    else:
        root = Path(static)
        app.router.add_get("/", lambda request: web.FileResponse(root / "index.html"))
        app.router.add_static("/", root)


def allow_cors(app: web.Application, origins: Iterable[str]) -> None:
    """Answer preflights and add CORS headers on every route, for the given origins (`*`: any)."""
    options = aiohttp_cors.ResourceOptions(
        allow_headers="*", expose_headers=EXPOSED_HEADERS, allow_methods="*", max_age=600
    )
    cors = aiohttp_cors.setup(app, defaults={origin: options for origin in origins})
    for route in list(app.router.routes()):
        cors.add(route)
    # aiohttp_cors looks the route's CORS config up on every response before it checks for an Origin
    # header; without one it adds nothing. Skip it at once for the requests that carry none (API clients,
    # load generators): the same headers, without that per-request cost.
    signal = app.on_response_prepare
    for i, hook in enumerate(signal):
        if getattr(hook, "__module__", "").startswith("aiohttp_cors"):
            signal[i] = _with_origin_only(hook)


def _with_origin_only(hook):
    async def only_with_origin(request: web.Request, response: web.StreamResponse) -> None:
        if hdrs.ORIGIN in request.headers:
            await hook(request, response)

    return only_with_origin


async def _demo(request: web.Request) -> web.Response:
    page = resources.files("mockstream").joinpath("demo.html").read_text(encoding="utf-8")
    return web.Response(text=page, content_type="text/html")


# ---------------------------------------------------------------- EventSource ---
class EventSourceChat:
    """The chat dialect spelled for a browser's EventSource: an `id:` on every event (sent back as
    `Last-Event-ID` when it reconnects) and a `retry:` hint. Never on the OpenAI routes, where
    openai-python would keep the id and turn later blank lines into empty events."""

    name = "eventsource"

    def __getattr__(self, attribute: str) -> Any:
        return getattr(chat, attribute)

    def encode(self, plan: Plan) -> Iterator[Frame]:
        yield 0.0, b"retry: " + str(RETRY_MS).encode() + b"\n\n", EVENT
        for number, (due, data, kind) in enumerate(chat.encode(plan), 1):
            yield due, b"id: " + str(number).encode() + b"\n" + data, kind


async def _query_body(request: web.Request) -> tuple[dict[str, Any], dict[str, Any]]:
    """`?content=Hi&chunk_bytes=1&fault.kind=stall&tokens=["a","b"]` -> the body of a streaming chat request
    (which the journal keeps as it is)."""
    knobs: dict[str, Any] = {}
    for key, raw in request.query.items():
        if key in ROUTE_PARAMS:
            continue
        value: Any = raw if key in STRING_FIELDS else _json_or_text(raw)
        target = knobs
        *parents, leaf = key.split(".")
        for parent in parents:
            target = target.setdefault(parent, {})
            if not isinstance(target, dict):
                raise RequestError(
                    400, f"Query parameter {key!r} nests under a value that is not an object.", f"mockstream.{key}"
                )
        target[leaf] = value
    prompt = request.query.get("prompt", "")
    body = {
        "model": request.query.get("model", "gpt-4o-mini"),
        "stream": True,
        "messages": [{"role": "user", "content": prompt}],
        "mockstream": knobs,
    }
    return body, body


def _json_or_text(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw
