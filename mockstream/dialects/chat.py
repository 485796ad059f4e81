"""Chat Completions: `chat.completion.chunk` frames ending in `data: [DONE]`, and `chat.completion`.

Every chunk of a response shares id, created, model and system_fingerprint, so the frame around a
token is built once and each token costs one `json.dumps` of the token itself.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from .. import sse
from ..errors import RequestError, in_band_error
from ..faults import EVENT, TAIL, TOKEN, ErrorEvent
from ..plan import Ask, Choice, Plan
from . import Frame
from .common import (
    at_least,
    count_prompt_tokens,
    include_usage,
    interleave,
    last_user_text,
    openai_headers,
    require,
    usage_object,
)

name = "chat"
MAX_N = 128


# json.dumps(value, ensure_ascii=False, separators=...) builds a new encoder per call: reuse one (same bytes)
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _dumps(value: Any) -> bytes:
    return _encode(value).encode()


# The JSON of recent token strings: seeded text repeats its words, so most tokens are encoded once
_TOKENS: dict[str, bytes] = {}
TOKEN_CACHE_SIZE = 4096


def _token(token: str) -> bytes:
    data = _TOKENS.get(token)
    if data is None:
        data = _dumps(token)
        if len(_TOKENS) < TOKEN_CACHE_SIZE and type(token) is str:
            _TOKENS[token] = data
    return data


def parse(body: dict[str, Any]) -> Ask:
    model = require(body, "model", str, missing="you must provide a model parameter")
    messages = require(body, "messages", list)
    if not messages:
        raise RequestError(400, "'messages' must contain at least one message.", "messages", "empty_array")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise RequestError(
                400,
                f"Invalid value for 'messages[{i}]': each message needs a string 'role'.",
                f"messages[{i}].role",
                "invalid_value",
            )
    stream = require(body, "stream", bool, default=False)
    n = require(body, "n", int, default=1)
    if not 1 <= n <= MAX_N:
        raise RequestError(
            400, f"Invalid value for 'n': must be between 1 and {MAX_N}, got {n}.", "n", "integer_out_of_range"
        )
    limits = [v for v in (at_least(body, key, 1) for key in ("max_completion_tokens", "max_tokens")) if v is not None]
    max_tokens = min(limits) if limits else None
    usage = include_usage(body, stream)
    return Ask(
        model=model,
        stream=stream,
        prompt_tokens=count_prompt_tokens(messages),
        last_user=last_user_text(messages),
        n=n,
        max_tokens=max_tokens,
        include_usage=usage,
    )


def encode(plan: Plan) -> Iterator[Frame]:
    head = (
        b'{"id":"chatcmpl-'
        + plan.uid.encode()
        + b'","object":"chat.completion.chunk","created":'
        + str(plan.created).encode()
        + b',"model":'
        + _dumps(plan.model)
        + b',"service_tier":"default","system_fingerprint":"'
        + plan.system_fingerprint.encode()
        + b'",'
        + (b'"usage":null,' if plan.ask.include_usage else b"")
        + b'"choices":[{"index":'
    )
    open_tail = b',"logprobs":null,"finish_reason":null}]}\n\n'
    prefixes = [b"data: " + head + str(c.index).encode() + b',"delta":' for c in plan.choices]

    for choice, prefix in zip(plan.choices, prefixes):
        role: dict[str, Any] = {"role": "assistant", "content": None if _opens_with_call(choice) else ""}
        if _opens_with_call(choice):
            role["tool_calls"] = [_call_head(choice, 0)]
        role["refusal"] = None
        yield 0.0, prefix + _dumps(role) + open_tail, EVENT

    def finish(i: int) -> bytes:
        reason = plan.choices[i].finish_reason.encode()
        return prefixes[i] + b'{},"logprobs":null,"finish_reason":"' + reason + b'"}]}\n\n'

    slots = [_slots(choice, prefix, open_tail) for choice, prefix in zip(plan.choices, prefixes)]
    last = yield from interleave(plan, slots, finish)
    if plan.ask.include_usage:
        chunk = head[: -len(b'"choices":[{"index":')].replace(b'"usage":null,', b"")
        yield last, sse.data(chunk + b'"choices":[],"usage":' + _dumps(usage_object(plan.usage)) + b"}"), TAIL
    if plan.done:
        yield last, sse.DONE, TAIL


def error_frame(plan: Plan, fault: ErrorEvent, index: int) -> bytes:
    """The in-band error the API sends once a 200 stream has started: openai-python raises APIError."""
    return sse.data(_dumps(in_band_error(plan.model, fault.message, fault.type, fault.code).body()))


def _opens_with_call(choice: Choice) -> bool:
    return not choice.tokens and bool(choice.tool_calls)


def _call_head(choice: Choice, i: int) -> dict[str, Any]:
    call = choice.tool_calls[i]
    return {"index": i, "id": call.id, "type": "function", "function": {"name": call.name, "arguments": ""}}


def _slots(choice: Choice, prefix: bytes, tail: bytes) -> Iterator[tuple[bytes, int]]:
    """One chunk per time slot: content tokens, then each tool call's head and argument pieces."""
    content = prefix + b'{"content":'
    end = b"}" + tail
    for token in choice.tokens:
        yield content + _token(token) + end, TOKEN
    for i, call in enumerate(choice.tool_calls):
        if i > 0 or choice.tokens:
            yield prefix + _dumps({"tool_calls": [_call_head(choice, i)]}) + tail, TOKEN
        piece = prefix + b'{"tool_calls":[{"index":' + str(i).encode() + b',"function":{"arguments":'
        for fragment in call.fragments:
            yield piece + _dumps(fragment) + b"}}]}" + tail, TOKEN


def complete(plan: Plan) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{plan.uid}",
        "object": "chat.completion",
        "created": plan.created,
        "model": plan.model,
        "choices": [_message(choice) for choice in plan.choices],
        "usage": usage_object(plan.usage),
        "service_tier": "default",
        "system_fingerprint": plan.system_fingerprint,
    }


def _message(choice: Choice) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": choice.text if choice.tokens else None,
        "refusal": None,
        "annotations": [],
    }
    if choice.tool_calls:
        message["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in choice.tool_calls
        ]
    return {"index": choice.index, "message": message, "logprobs": None, "finish_reason": choice.finish_reason}


def error_body(error: RequestError) -> dict[str, Any]:
    return error.body()


headers = openai_headers
