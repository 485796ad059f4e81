"""Every private aiohttp attribute mockstream relies on, named in one place (tests/server/test_aiohttp_private.py
fails when aiohttp changes one of them).

- `StreamResponse._send_headers_immediately`: when False, `prepare()` keeps the headers until the first body
  write, so both leave in one packet (as aiohttp's own `web.Response` does). A stream's first event then
  arrives with its headers: one packet fewer per stream. Older aiohttp ignores the flag and sends them at once.
"""

from __future__ import annotations

from aiohttp import web

HEADERS_WAIT_FLAG = "_send_headers_immediately"


class HeadersWithBody(web.StreamResponse):
    """A response whose headers wait for its first body write, to leave with it in one packet."""

    _send_headers_immediately = False
