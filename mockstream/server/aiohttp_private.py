"""Every private aiohttp attribute mockstream relies on, named in one place (tests/test_aiohttp_private.py
fails when aiohttp changes one of them).

- `StreamResponse._send_headers_immediately`: when False, `prepare()` keeps the headers until the first body
  write, so both leave in one packet (as aiohttp's own `web.Response` does). A stream's first event then
  arrives with its headers: one packet fewer per stream. Older aiohttp ignores the flag and sends them at once.
- `BaseSite._runner`, `._backlog` and `._server`: what a site subclass (as aiohttp's own `TCPSite`) reads and
  sets in `start()`: the runner's protocol factory, the listen backlog, and the server `stop()` closes.
  `mockstream serve` listens with a site of its own (process/listen.py).
"""

from __future__ import annotations

import asyncio

from aiohttp import web

HEADERS_WAIT_FLAG = "_send_headers_immediately"
SITE_ATTRIBUTES = ("_runner", "_backlog", "_server")


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
