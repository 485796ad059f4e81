"""How each API spells an answer: one module per API, each a `Dialect`; `registry` lists them.

A dialect knows the API's JSON and nothing else: it reads its request from a `RequestView`, spells a Plan
as SSE frames (framed by `deliver.sse`), and owns its error body and headers. It never sleeps and never
touches a socket.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qsl

from multidict import MultiDict

if TYPE_CHECKING:
    from ..deliver.frames import Frame
    from ..errors import Failure, RequestError
    from ..plan import Ask, Plan

__all__ = ["Asked", "Dialect", "Reply", "RequestView"]


@dataclass(frozen=True, slots=True)
class RequestView:
    """What a dialect may read of a request."""

    method: str
    path: str
    query_string: str  # as sent, without the "?"
    headers: Mapping[str, str]
    body: Any = None  # the parsed JSON body; None when the request has none

    @property
    def query(self) -> Mapping[str, str]:
        """The query string's parameters (parsed when asked: most requests have none)."""
        return MultiDict(parse_qsl(self.query_string, keep_blank_values=True))


@dataclass(frozen=True, slots=True)
class Asked:
    """What a request asks, as its dialect reads it."""

    ask: Ask
    knobs: Any  # the request's `mockstream` object, as sent (the plan layer validates it)
    request: Any  # the JSON object the request stands for: it seeds the answer


@dataclass(slots=True)
class Reply:
    """A whole, non-streamed answer: an error, or a completion."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


class Dialect(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def routes(self) -> tuple[tuple[str, str], ...]:
        """The (method, path) pairs it answers by default."""
        ...

    def parse(self, request: RequestView) -> Asked:
        """Validate the request (a 400 in the API's words on bad input) and say what it asks for."""
        ...

    def encode(self, plan: Plan) -> Iterator[Frame]:
        """The streamed answer, lazily: one frame per SSE event."""
        ...

    def complete(self, plan: Plan) -> dict[str, Any]:
        """The non-streamed answer object."""
        ...

    def headers(self, plan: Plan) -> dict[str, str]:
        """The API's own response headers (request id, rate limits...)."""
        ...

    def error_event(self, plan: Plan, failure: Failure, index: int) -> bytes:
        """The in-band error event(s) of a stream that fails after its 200, after `index` events."""
        ...

    def error_body(self, error: RequestError) -> dict[str, Any]:
        """The error shape this API uses."""
        ...

    def error_headers(self, error: RequestError, plan: Plan, retry_in: float) -> dict[str, str]:
        """The headers of an error answer to a planned request: the API's own, and for a 429 its rate-limit
        headers, saying the limit resets in `retry_in` seconds."""
        ...


class JsonDialect:
    """A dialect whose request is a JSON object body, knobs under its `mockstream` field."""

    name = ""
    routes: tuple[tuple[str, str], ...] = ()

    def parse(self, request: RequestView) -> Asked:
        body = request.body
        return Asked(self.read(body), body.get("mockstream", {}), body)

    def read(self, body: dict[str, Any]) -> Ask:
        """What the body asks for; a RequestError in the API's words when it is not valid."""
        raise NotImplementedError
