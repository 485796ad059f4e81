"""`malformed`: K tokens, then one data line that is not valid JSON (SSE framing intact), then the stream goes on."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..deliver.frames import EVENT, Frame
from ..deliver.sse import framing
from ..dialects import Reply
from ..plan.checks import optional, string
from .base import AT_TOKEN, AtToken

if TYPE_CHECKING:
    from ..dialects import Dialect
    from ..plan import Plan


@dataclass(frozen=True)
class Malformed(AtToken):
    """K tokens, then one data line that is not valid JSON (SSE framing intact), then the stream goes on."""

    kind = "malformed"
    checks = {"at_token": AT_TOKEN, "data": optional(string)}
    data: str | None = None  # the text of the broken line (default: the frame's JSON cut in half)

    def struck(self, frame: Frame, index: int, plan: Plan, dialect: Dialect) -> tuple[list[Frame], bool]:
        assert isinstance(frame.data, bytes)
        broken = framing(plan.delivery.line_ending).broken(frame.data, self.data)
        return [Frame(frame.due, broken, EVENT), frame], True

    async def complete(
        self, reply: Reply, plan: Plan, dialect: Dialect, transport: asyncio.BaseTransport | None
    ) -> Reply:
        return Reply(reply.status, reply.body[: len(reply.body) // 2], reply.headers)  # not valid JSON
