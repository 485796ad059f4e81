"""`truncate`: K tokens, then the body ends cleanly: no finish_reason, no [DONE]."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..deliver.frames import Frame
from ..dialects import Reply
from .base import AT_TOKEN, AtToken

if TYPE_CHECKING:
    from ..dialects import Dialect
    from ..plan import Plan


@dataclass(frozen=True)
class Truncate(AtToken):
    """K tokens, then the body ends cleanly: no finish_reason, no [DONE]."""

    kind = "truncate"
    checks = {"at_token": AT_TOKEN}

    def struck(self, frame: Frame, index: int, plan: Plan, dialect: Dialect) -> tuple[list[Frame], bool]:
        return [], False

    async def complete(
        self, reply: Reply, plan: Plan, dialect: Dialect, transport: asyncio.BaseTransport | None
    ) -> Reply:
        return Reply(reply.status, reply.body[: len(reply.body) // 2], reply.headers)  # the body ends half way
