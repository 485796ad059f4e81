"""What every OpenAI dialect shares: request-reading helpers, the headers and the errors."""

from __future__ import annotations

import json
from typing import Any

from ..deliver.sse import framing
from ..errors import Failure, RequestError, in_band_error
from ..plan import Plan, Usage
from ..plan.content import count_tokens
from . import JsonDialect

# json.dumps(value, ensure_ascii=False, separators=...) builds a new encoder per call: reuse one (same bytes)
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def dumps(value: Any) -> bytes:
    """Compact JSON as the APIs send it (UTF-8, no spaces)."""
    return _encode(value).encode()


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


def usage_object(usage: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": usage.reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def openai_headers(plan: Plan, before_headers: float | None = None) -> dict[str, str]:
    """The headers the OpenAI API sends with every answer (SDKs expose x-request-id as `_request_id`).

    `openai-processing-ms` is the time planned before the headers leave, `before_headers` (s) when given: a
    fault's header delay (`slow_headers`), plus the whole generation for a non-streamed answer (a stream's
    headers go out before its first token)."""
    if before_headers is None:
        before_headers = _header_delay(plan) + (0.0 if plan.ask.stream else plan.duration)
    return {
        "x-request-id": plan.request_id,
        "openai-version": "2020-10-01",
        "openai-organization": "mockstream",
        "openai-project": "proj_mockstream",
        "openai-processing-ms": str(round(before_headers * 1000)),
        "x-ratelimit-limit-requests": "10000",
        "x-ratelimit-remaining-requests": "9999",
        "x-ratelimit-reset-requests": "6ms",
        "x-ratelimit-limit-tokens": "30000000",
        "x-ratelimit-remaining-tokens": str(30_000_000 - plan.usage.total_tokens),
        "x-ratelimit-reset-tokens": "0s",
    }


def _header_delay(plan: Plan) -> float:
    """How long the plan's fault holds the headers back (s): `slow_headers`' delay, else 0."""
    return plan.fault.header_delay() if plan.fault is not None else 0.0


def rate_limit_headers(retry_in: float) -> dict[str, str]:
    """OpenAI's headers on a 429: the request limit is used up and resets in `retry_in` seconds."""
    return {
        "x-ratelimit-limit-requests": "3",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": f"{retry_in:g}s",
        "x-ratelimit-limit-tokens": "30000000",
        "x-ratelimit-remaining-tokens": "29999000",
        "x-ratelimit-reset-tokens": "2ms",
    }


class OpenAIDialect(JsonDialect):
    """Headers and errors as every OpenAI route spells them."""

    def headers(self, plan: Plan) -> dict[str, str]:
        return openai_headers(plan)

    def error_body(self, error: RequestError) -> dict[str, Any]:
        return error.body()

    def error_headers(self, error: RequestError, plan: Plan, retry_in: float) -> dict[str, str]:
        headers = openai_headers(plan, before_headers=_header_delay(plan))  # refused before any generation
        if error.status == 429:
            headers.update(rate_limit_headers(retry_in))
        return headers

    def error_event(self, plan: Plan, failure: Failure, index: int) -> bytes:
        """The in-band error the API sends once a 200 stream has started: openai-python raises APIError."""
        return framing(plan.delivery.line_ending).data(dumps(in_band_error(plan.model, failure).body()))
