"""`disconnect`: K tokens, then the connection closes (FIN) in the middle of the chunked body."""

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


@dataclass(frozen=True)
class Disconnect(DeliveryFault):
    """K tokens, then the connection closes (FIN) in the middle of the chunked body."""

    kind = "disconnect"
    checks = {"at_token": AT_TOKEN}

    def strike(self, stream: Stream, loop: asyncio.AbstractEventLoop) -> bool:
        stream.end(self, close=True)
        return False

    async def complete(
        self, reply: Reply, plan: Plan, dialect: Dialect, transport: asyncio.BaseTransport | None
    ) -> None:
        sockets.close(transport)
