"""`error_event`: K tokens, then an in-band error event, then the stream ends."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..deliver.frames import TAIL, Frame
from ..dialects import Reply
from ..errors import Failure, in_band_error
from ..plan.checks import optional, string
from .base import AT_TOKEN, AtToken

if TYPE_CHECKING:
    from ..dialects import Dialect
    from ..plan import Plan


@dataclass(frozen=True)
class ErrorEvent(AtToken):
    """K tokens, then an in-band error event, then the stream ends."""

    kind = "error_event"
    checks = {"at_token": AT_TOKEN, "message": optional(string), "type": optional(string), "code": optional(string)}
    message: str | None = None
    type: str | None = None
    code: str | None = None

    @property
    def failure(self) -> Failure:
        return Failure(self.message, self.type, self.code)

    def struck(self, frame: Frame, index: int, plan: Plan, dialect: Dialect) -> tuple[list[Frame], bool]:
        return [Frame(frame.due, dialect.error_event(plan, self.failure, index), TAIL)], False

    async def complete(
        self, reply: Reply, plan: Plan, dialect: Dialect, transport: asyncio.BaseTransport | None
    ) -> Reply:
        """The answer failed while being generated: the API's error status."""
        error = in_band_error(plan.model, self.failure)
        return Reply(error.status, json.dumps(dialect.error_body(error)).encode(), dialect.headers(plan))
