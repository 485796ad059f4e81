"""The private aiohttp attributes the server relies on, all named in mockstream/server/aiohttp_private.py:
these tests fail when aiohttp drops, renames or stops honouring one of them.

- `StreamResponse._send_headers_immediately`: checked over a real socket, against aiohttp's own server, with a
  response that prepares, waits, then writes its first bytes. With the flag off (`HeadersWithBody`) nothing
  leaves before that write, and the headers arrive in the same read as it; a plain `StreamResponse` sends its
  headers at once, alone. (Without the flag the server quietly sends every stream's headers in a packet of
  their own.)
- `BaseSite._runner`, `._backlog`, `._server`: a site of our own (as `mockstream serve` has) listens with the
  runner's protocol factory and the backlog it was given, serves a request, and `stop()` closes its listener.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from aiohttp import web

from mockstream.server.aiohttp_private import (
    HEADERS_WAIT_FLAG,
    SITE_ATTRIBUTES,
    HeadersWithBody,
    set_site_server,
    site_backlog,
    site_factory,
)

PAUSE = 0.3  # s between prepare() and the first write
FIRST = b"data: first\n\n"


def test_aiohttp_still_has_the_flag_and_sends_headers_at_once_by_default():
    assert hasattr(web.StreamResponse, HEADERS_WAIT_FLAG), f"aiohttp no longer has {HEADERS_WAIT_FLAG}"
    assert getattr(web.StreamResponse, HEADERS_WAIT_FLAG) is True
    assert getattr(HeadersWithBody, HEADERS_WAIT_FLAG) is False
    assert issubclass(HeadersWithBody, web.StreamResponse)


def app() -> web.Application:
    def handler(response_class: type[web.StreamResponse]):
        async def handle(request: web.Request) -> web.StreamResponse:
            response = response_class(headers={"Content-Type": "text/event-stream"})
            response.enable_chunked_encoding()
            await response.prepare(request)
            await asyncio.sleep(PAUSE)
            await response.write(FIRST)
            await response.write_eof()
            return response

        return handle

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hello")

    application = web.Application()
    application.router.add_get("/hello", hello)
    application.router.add_get("/with-body", handler(HeadersWithBody))
    application.router.add_get("/plain", handler(web.StreamResponse))
    return application


async def reads_of(path: str) -> list[tuple[float, bytes]]:
    """GET `path` from aiohttp's server on a real socket; every read with its time since the request."""
    runner = web.AppRunner(app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        sent = time.monotonic()
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        reads = []
        while data := await asyncio.wait_for(reader.read(65536), 5):
            reads.append((time.monotonic() - sent, data))
        writer.close()
        return reads
    finally:
        await runner.cleanup()


async def test_headers_with_body_leave_in_the_same_read_as_the_first_write():
    reads = await reads_of("/with-body")
    (at, first), *_ = reads
    assert first.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\n\r\n" + b"%x\r\n" % len(FIRST) + FIRST in first, first  # the headers, then the first write
    assert at >= PAUSE * 0.8, f"something left {at:.3f} s after the request, before the first write"


async def test_a_plain_stream_response_sends_its_headers_alone_at_once():
    reads = await reads_of("/plain")
    (at, first), *rest = reads
    assert first.startswith(b"HTTP/1.1 200 OK\r\n") and first.endswith(b"\r\n\r\n"), first
    assert FIRST not in first
    assert at < PAUSE / 2
    later = b"".join(data for _, data in rest)
    assert FIRST in later
    assert rest[0][0] >= PAUSE * 0.8


# ---------------------------------------------------------------- a site of our own ---
class OwnSite(web.BaseSite):
    """A site as process/listen.py makes one: its own listener, made from the runner's protocol factory."""

    @property
    def name(self) -> str:
        return "own"

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        listener = await loop.create_server(site_factory(self), "127.0.0.1", 0, backlog=site_backlog(self))
        self.port = listener.sockets[0].getsockname()[1]
        set_site_server(self, listener)


def test_base_site_still_has_the_attributes_a_site_of_our_own_uses():
    slots = {name for cls in web.TCPSite.__mro__ for name in getattr(cls, "__slots__", ())}
    missing = [name for name in SITE_ATTRIBUTES if name not in slots]
    assert missing == [], f"aiohttp's BaseSite no longer has {missing}"


async def test_a_site_of_our_own_serves_with_the_runners_factory_and_stops():
    runner = web.AppRunner(app(), access_log=None)
    await runner.setup()
    try:
        site = OwnSite(runner, backlog=7)
        assert site_factory(site) is runner.server
        assert site_backlog(site) == 7
        await site.start()
        assert runner.sites == {site}
        reader, writer = await asyncio.open_connection("127.0.0.1", site.port)
        writer.write(b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(-1), 5)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b"hello")
        await site.stop()  # closes what set_site_server set
        assert runner.sites == set()
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", site.port)
    finally:
        await runner.cleanup()
