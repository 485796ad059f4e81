"""How each API spells an answer: one module per API, each a `Dialect`; `registry` lists them.

A dialect knows the API's JSON and nothing else: it reads its request from a `RequestView`, spells a Plan
as SSE frames (framed by `deliver.sse`), and owns its error body and headers. It never sleeps and never
touches a socket.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qsl

from multidict import MultiDict

from ..errors import RequestError

if TYPE_CHECKING:
    from ..deliver.frames import Frame
    from ..errors import Failure
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


KNOBS = "mockstream"  # the body field that holds the knobs


@lru_cache(maxsize=1024)  # a body's field names repeat from request to request: each is judged once
def misplaced_knobs(key: str) -> bool:
    """Is this top-level field meant as the knobs? `extra_body` (a client sending its own option as a field,
    as litellm's Anthropic route does) or a name close to `mockstream` (`mockstrem`, `mock_stream`)."""
    if key == "extra_body":
        return True
    folded = key.lower()
    if folded.replace("_", "").replace("-", "") == KNOBS:
        return True
    return difflib.SequenceMatcher(None, folded, KNOBS).ratio() >= 0.8


def _misplaced(key: str) -> RequestError:
    return RequestError(
        400,
        f"Unrecognized request argument supplied: {key}. mockstream reads its knobs from a top-level "
        f'"{KNOBS}" object of the request body (openai-python: extra_body={{"{KNOBS}": {{...}}}}, which the SDK '
        f"merges into the body); a client that sends extra_body as a field of its own needs the knobs passed "
        f'as a top-level "{KNOBS}" field, or a scenario named in the X-Mockstream-Scenario header.',
        key,
        "unknown_parameter",
    )


class JsonDialect:
    """A dialect whose request is a JSON object body, knobs under its `mockstream` field."""

    name = ""
    routes: tuple[tuple[str, str], ...] = ()

    def parse(self, request: RequestView) -> Asked:
        body = request.body
        for key in body:
            if key != KNOBS and misplaced_knobs(key):
                raise _misplaced(key)
        return Asked(self.read(body), body.get(KNOBS, {}), body)

    def read(self, body: dict[str, Any]) -> Ask:
        """What the body asks for; a RequestError in the API's words when it is not valid."""
        raise NotImplementedError
