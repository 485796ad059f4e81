"""`http_error`: that status before any SSE byte, with the API's error body and headers."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..dialects import Reply
from ..errors import api_error
from ..plan.checks import integer, number, optional, string
from .base import Fault

if TYPE_CHECKING:
    from ..dialects import Dialect
    from ..plan import Plan

DEFAULT_RETRY = 20.0  # s a 429's words and rate-limit headers say, when no retry_after is scripted


@dataclass(frozen=True)
class HttpError(Fault):
    """That status before any SSE byte, with the API's error body and headers."""

    kind = "http_error"
    before_response = True
    checks = {
        "status": integer(400, 599),
        "retry_after": optional(number(0, 86_400)),
        "retry_after_ms": optional(number(0, 86_400_000)),
        "message": optional(string),
        "type": optional(string),
        "code": optional(string),
    }
    status: int = 500
    retry_after: float | None = None  # s, sent as Retry-After
    retry_after_ms: float | None = None  # ms, sent as retry-after-ms (what openai-python and anthropic read first)
    message: str | None = None
    type: str | None = None
    code: str | None = None

    def refusal(self, plan: Plan, dialect: Dialect) -> Reply:
        if self.retry_after is not None:
            wait = self.retry_after
        else:
            wait = self.retry_after_ms / 1000 if self.retry_after_ms is not None else DEFAULT_RETRY
        error = api_error(self.status, plan.model, self.message, self.type, self.code, f"{wait:g}s")
        headers = {**dialect.error_headers(error, plan, wait), "x-mockstream-scenario": plan.scenario}
        if self.retry_after is not None:
            headers["Retry-After"] = f"{self.retry_after:.15g}"  # :g rounds to 6 digits
        if self.retry_after_ms is not None:
            headers["retry-after-ms"] = f"{self.retry_after_ms:.15g}"
        return Reply(self.status, json.dumps(dialect.error_body(error)).encode(), headers)
