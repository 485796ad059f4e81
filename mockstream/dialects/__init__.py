"""One module per API spelling. Each turns a request into an `Ask` and a `Plan` into SSE frames.

A dialect knows the API's JSON and nothing else: it never sleeps and never touches a socket.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

from ..errors import RequestError
from ..faults import ErrorEvent, Frame
from ..plan import Ask, Plan

__all__ = ["Dialect", "Frame"]


class Dialect(Protocol):
    name: str

    def parse(self, body: dict[str, Any]) -> Ask:
        """Validate the request body (OpenAI-shaped 400 on bad input) and say what it asks for."""

    def encode(self, plan: Plan) -> Iterator[Frame]:
        """The streamed answer, lazily: one frame per SSE event: (due time, bytes, EVENT, TOKEN or TAIL)."""

    def error_frame(self, plan: Plan, fault: ErrorEvent, index: int) -> bytes:
        """The in-band error event (`error_event` fault) in this API's spelling, after `index` events."""

    def headers(self, plan: Plan) -> dict[str, str]:
        """The API's own response headers (request id, rate limits...)."""

    def complete(self, plan: Plan) -> dict[str, Any]:
        """The non-streamed answer object."""

    def error_body(self, error: RequestError) -> dict[str, Any]:
        """The error shape this API uses."""
