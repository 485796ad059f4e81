"""The throughput reference: the least an aiohttp handler can do to stream chat completion chunks.

It writes pre-encoded `chat.completion.chunk` frames of the same JSON shape as mockstream's chat dialect
(`data: {...}\\n\\n`, ending with `data: [DONE]`), one `await resp.write()` per event, and sleeps to
absolute deadlines (`asyncio.sleep`) when the request asks for `ttft_ms` / `itl_ms`. It understands the
request body mockstream understands for the benchmark:

    {"model": "m", "stream": true, "messages": [...],
     "mockstream": {"random_tokens": N, "itl_ms": X, "ttft_ms": Y}}

and answers `GET /healthz`. Nothing else: no validation, no scenarios, no faults. mockstream is measured
against it (`bench/run.py`), so the ratio says what mockstream's features cost on top of aiohttp itself.

    python bench/reference_server.py --host 127.0.0.1 --port 8001
"""

from __future__ import annotations

import argparse
import asyncio
import json

from aiohttp import web

TEXT = (
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore "
    "et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation ullamco laboris."
)
HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}


class Frames:
    """Every frame of a response for one model name, encoded once and reused by every request."""

    __slots__ = ("done", "finish", "role", "tokens")

    def __init__(self, model: str):
        head = {
            "id": "chatcmpl-reference00000000000000000",
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": model,
            "service_tier": "default",
            "system_fingerprint": "fp_0000000000",
        }

        def frame(delta: dict, finish: str | None = None) -> bytes:
            chunk = dict(head, choices=[{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}])
            return b"data: " + json.dumps(chunk, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"

        self.role = frame({"role": "assistant", "content": "", "refusal": None})
        self.tokens = [frame({"content": (" " if i else "") + word}) for i, word in enumerate(TEXT.split(" "))]
        self.finish = frame({}, "stop")
        self.done = b"data: [DONE]\n\n"


_frames: dict[str, Frames] = {}


def frames_for(model: str) -> Frames:
    frames = _frames.get(model)
    if frames is None:
        if len(_frames) > 64:
            _frames.clear()
        frames = _frames[model] = Frames(model)
    return frames


def knobs(raw: bytes) -> tuple[str, int, float, float]:
    """(model, tokens, itl seconds, ttft seconds) from the request body."""
    try:
        body = json.loads(raw)
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    ms = body.get("mockstream") or {}
    return (
        str(body.get("model", "reference")),
        int(ms.get("random_tokens", 100)),
        float(ms.get("itl_ms", 0)) / 1000,
        float(ms.get("ttft_ms", 0)) / 1000,
    )


async def chat(request: web.Request) -> web.StreamResponse:
    model, n, itl, ttft = knobs(await request.read())
    frames = frames_for(model)
    tokens = frames.tokens
    count = len(tokens)
    loop = asyncio.get_running_loop()
    start = loop.time()
    resp = web.StreamResponse(headers=HEADERS)
    await resp.prepare(request)
    await resp.write(frames.role)
    paced = itl > 0 or ttft > 0
    for i in range(n):
        if paced:
            delay = start + ttft + i * itl - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
        await resp.write(tokens[i % count])
    await resp.write(frames.finish)
    await resp.write(frames.done)
    await resp.write_eof()
    return resp


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/healthz", healthz)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        loop = asyncio.new_event_loop()
        name = "asyncio"
    else:
        loop = uvloop.new_event_loop()
        name = "uvloop"
    asyncio.set_event_loop(loop)
    print(f"reference server ({name}) listening on http://{args.host}:{args.port}", flush=True)
    web.run_app(
        make_app(),
        host=args.host,
        port=args.port,
        access_log=None,
        backlog=4096,
        print=None,
        shutdown_timeout=1.0,
        loop=loop,
    )


if __name__ == "__main__":
    main()
