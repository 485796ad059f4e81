"""Every private aiohttp attribute mockstream relies on, named in one place (tests/test_aiohttp_private.py
fails when aiohttp changes one of them).

- `StreamResponse._send_headers_immediately`: when False, `prepare()` keeps the headers until the first body
  write, so both leave in one packet (as aiohttp's own `web.Response` does). A stream's first event then
  arrives with its headers: one packet fewer per stream. Older aiohttp ignores the flag and sends them at once.
- `BaseSite._runner`, `._backlog` and `._server`: what a site subclass (as aiohttp's own `TCPSite`) reads and
  sets in `start()`: the runner's protocol factory, the listen backlog, and the server `stop()` closes.
  `mockstream serve` listens with a site of its own (process/listen.py).
- `AbstractRoute._expect_handler`: what answers a request's `Expect` header, before any middleware. aiohttp's
  default answers an unknown expectation with a plain-text 417, and with a 500 when the value is not UTF-8
  (it cannot encode its own message); the public `expect_handler=` of `add_route` misses the routes
  aiohttp_cors and `add_static` add, so every route's is set once they all exist.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web

HEADERS_WAIT_FLAG = "_send_headers_immediately"
SITE_ATTRIBUTES = ("_runner", "_backlog", "_server")
EXPECT_HANDLER = "_expect_handler"


def site_factory(site: web.BaseSite) -> web.Server:
    """The protocol factory of the site's runner (set up before its sites start)."""
    server = site._runner.server
    assert server is not None, "the runner is set up before its sites start"
    return server


def site_backlog(site: web.BaseSite) -> int:
    return site._backlog


def set_site_server(site: web.BaseSite, server: asyncio.AbstractServer) -> None:
    """What the site's `stop()` closes."""
    site._server = server


class HeadersWithBody(web.StreamResponse):
    """A response whose headers wait for its first body write, to leave with it in one packet."""

    _send_headers_immediately = False


def set_expect_handler(route: web.AbstractRoute, expect: Callable[[web.Request], Awaitable[None]]) -> None:
    setattr(route, EXPECT_HANDLER, expect)
