"""`stall`: K tokens, then silence for `ms` (then the stream goes on); without `ms`, until the client gives up."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..plan.checks import number, optional
from .base import AT_TOKEN, DeliveryFault

if TYPE_CHECKING:
    from ..deliver.stream import Stream
    from ..dialects import Dialect, Reply
    from ..plan import Plan


@dataclass(frozen=True)
class Stall(DeliveryFault):
    """K tokens, then silence for `ms` (then the stream goes on); without `ms`, until the client gives up."""

    kind = "stall"
    checks = {"at_token": AT_TOKEN, "ms": optional(number(0, 86_400_000))}
    ms: float | None = None

    def strike(self, stream: Stream, loop: asyncio.AbstractEventLoop) -> bool:
        if self.ms is None:
            stream.park(self)
            return False
        stream.pause(self, self.ms / 1000, loop)
        return True

    async def complete(
        self, reply: Reply, plan: Plan, dialect: Dialect, transport: asyncio.BaseTransport | None
    ) -> Reply:
        await asyncio.sleep(self.ms / 1000 if self.ms is not None else float("inf"))
        return reply
