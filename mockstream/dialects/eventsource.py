"""Chat Completions for a browser's `EventSource`: a GET whose query string is the request, and an `id:` on
every event (sent back as `Last-Event-ID` when it reconnects) with a `retry:` hint first.

Never on the POST routes, where openai-python would keep the id and turn later blank lines into empty events.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from ..deliver.frames import EVENT, Frame
from ..deliver.sse import framing
from ..errors import RequestError
from ..plan import Plan
from . import Asked, RequestView
from .chat import Chat

# Query parameters that are not knobs.
ROUTE_PARAMS = ("model", "prompt")
# Knob fields that stay strings when read from a query string; every other value is read as JSON.
STRING_FIELDS = {
    "content",
    "locale",
    "finish_reason",
    "line_ending",
    "scenario",
    "fault.kind",
    "fault.message",
    "fault.type",
    "fault.code",
    "fault.data",
}
RETRY_MS = 1000  # how soon a browser reconnects after the stream ends


class EventSourceChat(Chat):
    name = "eventsource"
    routes = (("GET", "/v1/chat/completions"),)

    def parse(self, request: RequestView) -> Asked:
        body = query_body(request.query)
        return Asked(self.read(body), body["mockstream"], body)

    def encode(self, plan: Plan) -> Iterator[Frame]:
        sse = framing(plan.delivery.line_ending)
        yield Frame(0.0, sse.retry(RETRY_MS), EVENT)
        for number, (due, data, kind) in enumerate(super().encode(plan), 1):
            yield Frame(due, sse.with_id(number, data) if isinstance(data, bytes) else data, kind)


def query_body(query: Mapping[str, str]) -> dict[str, Any]:
    """`?content=Hi&chunk_bytes=1&fault.kind=stall&tokens=["a","b"]` -> the body of a streaming chat request."""
    knobs: dict[str, Any] = {}
    for key, raw in query.items():
        if key in ROUTE_PARAMS:
            continue
        value: Any = raw if key in STRING_FIELDS else _json_or_text(raw)
        target = knobs
        *parents, leaf = key.split(".")
        for parent in parents:
            target = target.setdefault(parent, {})
            if not isinstance(target, dict):
                raise RequestError(
                    400, f"Query parameter {key!r} nests under a value that is not an object.", f"mockstream.{key}"
                )
        target[leaf] = value
    return {
        "model": query.get("model", "gpt-4o-mini"),
        "stream": True,
        "messages": [{"role": "user", "content": query.get("prompt", "")}],
        "mockstream": knobs,
    }


def _json_or_text(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw


EVENTSOURCE = EventSourceChat()
