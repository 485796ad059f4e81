"""`reset`: K tokens, then a TCP RST (SO_LINGER 0) instead of a FIN."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..deliver import sockets
from .base import AT_TOKEN, DeliveryFault

if TYPE_CHECKING:
    from ..deliver.stream import Stream
    from ..dialects import Dialect, Reply
    from ..plan import Plan

GRACE = 0.05  # s between the last bytes and the RST, so the reader has them before the reset


@dataclass(frozen=True)
class Reset(DeliveryFault):
    """K tokens, then a TCP RST (SO_LINGER 0) instead of a FIN."""

    kind = "reset"
    checks = {"at_token": AT_TOKEN}

    def strike(self, stream: Stream, loop: asyncio.AbstractEventLoop) -> bool:
        # An RST discards what the peer has not read yet: wait until the bytes before it have left, and a little
        if not stream.written_out() or loop.time() < (stream.last_byte or 0) + GRACE:
            stream.wait_until(loop.time() + GRACE)
            return False
        stream.end(self, close=True, reset=True)
        return False

    async def complete(
        self, reply: Reply, plan: Plan, dialect: Dialect, transport: asyncio.BaseTransport | None
    ) -> None:
        sockets.close(transport, reset=True)
