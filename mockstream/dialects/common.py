"""Request-reading helpers that every OpenAI dialect shares."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from ..content import count_tokens
from ..errors import RequestError
from ..faults import TAIL, TOKEN
from ..plan import Plan, Usage

SERVER_ERROR = "The server had an error while processing your request. Sorry about that!"

_MISSING = object()
_TYPE_NAMES = {
    str: "a string",
    int: "an integer",
    bool: "a boolean",
    list: "an array",
    dict: "an object",
    float: "a number",
}


def _type_of(value: Any) -> str:
    for kind, label in (
        (bool, "boolean"),
        (int, "integer"),
        (float, "number"),
        (str, "string"),
        (list, "array"),
        (dict, "object"),
    ):
        if isinstance(value, kind):
            return label
    return "null" if value is None else type(value).__name__


def require(
    body: dict, key: str, kind: type, default: Any = _MISSING, missing: str | None = None, param: str | None = None
) -> Any:
    """Read `body[key]` as `kind`, with the API's wording when it is missing or of the wrong type."""
    param = param or key
    if key not in body or (body[key] is None and default is not _MISSING):
        if default is _MISSING:
            raise RequestError(
                400,
                missing or f"Missing required parameter: '{param}'.",
                None if missing else param,
                None if missing else "missing_required_parameter",
            )
        return default
    value = body[key]
    wrong = isinstance(value, bool) and kind is not bool
    if wrong or not isinstance(value, kind):
        raise RequestError(
            400,
            f"Invalid type for '{param}': expected {_TYPE_NAMES[kind]}, but got {_type_of(value)} instead.",
            param,
            "invalid_type",
        )
    return value


def at_least(body: dict, key: str, low: int) -> int | None:
    """An optional integer field with a lower bound, refused in the API's words when it is below."""
    value = require(body, key, int, default=None)
    if value is not None and value < low:
        raise RequestError(
            400,
            f"Invalid '{key}': integer below minimum value. Expected a value >= {low}, but got {value} instead.",
            key,
            "integer_below_min_value",
        )
    return value


def include_usage(body: dict, stream: bool) -> bool:
    """`stream_options.include_usage`, which the API only takes on a streamed request."""
    options = require(body, "stream_options", dict, default=None)
    if options is not None and not stream:
        raise RequestError(
            400, "The 'stream_options' parameter is only allowed when 'stream' is enabled.", "stream_options"
        )
    return require(options or {}, "include_usage", bool, default=False, param="stream_options.include_usage")


def message_text(content: Any) -> str:
    """The text of a message's content: a string, or the text parts of a parts array."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part.get("text", "") for part in content if isinstance(part, dict) and isinstance(part.get("text", ""), str)
        )
    return ""


def count_prompt_tokens(messages: list[dict]) -> int:
    """The cookbook's count: 3 per message, its content's tokens, 1 + name tokens for a name; 3 to prime."""
    total = 3
    for message in messages:
        total += 3 + count_tokens(message_text(message.get("content")))
        if isinstance(message.get("name"), str):
            total += 1 + count_tokens(message["name"])
    return total


def last_user_text(messages: list[dict]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return message_text(message.get("content"))
    return ""


def usage_object(usage: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def interleave(plan: Plan, slots: list[Iterator[tuple[bytes, int]]], finish: Callable[[int], bytes | None]):
    """Put every choice's frames on the plan's clock. Each TOKEN frame takes the next due time (slot k of
    every choice is due at the k-th due time); other frames follow the token before them at once, and a
    choice's `finish` frame (if any) follows its last frame. Returns the last due time (for the frames
    that close the stream)."""
    last = 0.0
    pacing = plan.pacing
    if len(slots) == 1 and not pacing.jitter:
        # one choice without jitter (the common case): the same frames and times (token k is due at
        # ttft + k * itl, as Pacing.due_times computes it), without a generator to resume per token
        ttft, itl, k = pacing.ttft, pacing.itl, 0
        for data, kind in slots[0]:
            if kind == TOKEN:
                last = ttft + k * itl
                k += 1
            yield last, data, kind
        closing = finish(0)
        if closing is not None:
            yield last, closing, TAIL
        return last
    times = plan.due_times()
    if len(slots) == 1:  # one choice: the same frames and times, without the bookkeeping
        for data, kind in slots[0]:
            if kind == TOKEN:
                last = next(times)
            yield last, data, kind
        closing = finish(0)
        if closing is not None:
            yield last, closing, TAIL
        return last
    live = list(enumerate(slots))
    while live:
        due = next(times)
        still = []
        for i, frames in live:
            for data, kind in frames:
                if kind == TOKEN:
                    yield due, data, TOKEN
                    still.append((i, frames))
                    break
                yield last, data, kind
            else:
                closing = finish(i)
                if closing is not None:
                    yield last, closing, TAIL
        if still:
            last = due
        live = still
    return last


def openai_headers(plan: Plan) -> dict[str, str]:
    """The headers the OpenAI API sends with every answer (SDKs expose x-request-id as `_request_id`)."""
    return {
        "x-request-id": plan.request_id,
        "openai-version": "2020-10-01",
        "openai-organization": "mockstream",
        "openai-project": "proj_mockstream",
        "openai-processing-ms": str(round(plan.duration * 1000)),
        "x-ratelimit-limit-requests": "10000",
        "x-ratelimit-remaining-requests": "9999",
        "x-ratelimit-reset-requests": "6ms",
        "x-ratelimit-limit-tokens": "30000000",
        "x-ratelimit-remaining-tokens": str(30_000_000 - plan.usage.total_tokens),
        "x-ratelimit-reset-tokens": "0s",
    }
