"""Socket options a stream needs: writes that leave at once, an RST instead of a FIN, a bounded buffer."""

from __future__ import annotations

import asyncio
import socket
import struct

BACKED_UP = 16 * 1024  # bytes waiting in the transport: hand the stream back to its handler


def no_delay(transport: asyncio.BaseTransport) -> None:
    """TCP_NODELAY: each write leaves at once instead of waiting to be merged with the next."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def linger_zero(transport: asyncio.BaseTransport) -> None:
    """SO_LINGER 0: closing the socket sends an RST, not a FIN."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def close(transport: asyncio.BaseTransport | None, reset: bool = False) -> None:
    """Close the connection under the response: a FIN, or with `reset` an RST."""
    if transport is not None:
        if reset:
            linger_zero(transport)
        transport.close()


def prepare(transport: asyncio.BaseTransport | None, cut: bool) -> None:
    """Set up a streaming connection: a backed-up stream waits on aiohttp's drain, so the socket must pause
    where "backed up" starts; `cut` writes (chunk_bytes) must each leave at once."""
    if transport is None:
        return
    if cut:
        no_delay(transport)
    transport.set_write_buffer_limits(high=BACKED_UP)  # type: ignore[attr-defined]
