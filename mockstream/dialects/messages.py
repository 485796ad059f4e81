"""Anthropic Messages: named events from `message_start` to `message_stop`, and Anthropic's error shape.

Text is one `text` content block; each tool call is a `tool_use` block whose input streams as
`input_json_delta` pieces. The API has no `n`: only the first choice is spelled.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from .. import sse
from ..content import count_tokens
from ..errors import API_ERRORS, CODE_STATUS, RequestError
from ..faults import EVENT, TAIL, TOKEN, ErrorEvent
from ..plan import Ask, Choice, Plan
from . import Frame
from .common import interleave, message_text

name = "messages"
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "content_filter": "refusal"}
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def _field(body: dict[str, Any], key: str, kind: type, required: bool = False) -> Any:
    """Anthropic words its validation errors as `<field>: <problem>`."""
    if key not in body or body[key] is None:
        if required:
            raise RequestError(400, f"{key}: Field required", key)
        return None
    value = body[key]
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
        raise RequestError(400, f"{key}: Input should be a valid {kind.__name__.replace('str', 'string')}", key)
    return value


def parse(body: dict[str, Any]) -> Ask:
    model = _field(body, "model", str, required=True)
    max_tokens = _field(body, "max_tokens", int, required=True)
    if max_tokens < 1:
        raise RequestError(400, "max_tokens: Input should be greater than or equal to 1", "max_tokens")
    messages = _field(body, "messages", list, required=True)
    if not messages or not all(isinstance(m, dict) and m.get("role") in ("user", "assistant") for m in messages):
        raise RequestError(400, "messages: each message needs a role of 'user' or 'assistant'", "messages")
    system = body.get("system")
    system_text = system if isinstance(system, str) else message_text(system)
    texts = [message_text(m.get("content")) for m in messages]
    last_user = next((message_text(m.get("content")) for m in reversed(messages) if m["role"] == "user"), "")
    prompt = count_tokens(system_text) + sum(count_tokens(t) + 3 for t in texts)
    return Ask(
        model=model,
        stream=bool(_field(body, "stream", bool)),
        prompt_tokens=prompt,
        last_user=last_user,
        max_tokens=max_tokens,
    )


def _tool_id(plan: Plan, i: int) -> str:
    return "toolu_" + plan.choices[0].tool_calls[i].id.removeprefix("call_")


def _event(kind: str, fields: dict[str, Any]) -> bytes:
    return sse.event(kind, _dumps({"type": kind, **fields}))


def _usage(plan: Plan, output_tokens: int) -> dict[str, int]:
    return {
        "input_tokens": plan.usage.prompt_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output_tokens,
    }


def _message(plan: Plan, content: list, stop_reason: str | None, output_tokens: int) -> dict[str, Any]:
    return {
        "id": f"msg_{plan.uid}",
        "type": "message",
        "role": "assistant",
        "model": plan.model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": _usage(plan, output_tokens),
    }


def encode(plan: Plan) -> Iterator[Frame]:
    choice = plan.choices[0]
    yield 0.0, _event("message_start", {"message": _message(plan, [], None, 1)}), EVENT
    last = yield from interleave(plan, [_with_ping(_blocks(plan, choice))], lambda i: None)
    delta = {
        "delta": {"stop_reason": STOP_REASONS[choice.finish_reason], "stop_sequence": None},
        "usage": {"output_tokens": plan.usage.completion_tokens},
    }
    yield last, _event("message_delta", delta), TAIL
    yield last, _event("message_stop", {}), TAIL


def _with_ping(blocks: Iterator[tuple[bytes, int]]) -> Iterator[tuple[bytes, int]]:
    """The API sends its `ping` right after the first `content_block_start` (after `message_start` when
    the answer has no block)."""
    first = next(blocks, None)
    if first is not None:
        yield first
    yield _event("ping", {}), EVENT
    yield from blocks


def _blocks(plan: Plan, choice: Choice) -> Iterator[tuple[bytes, int]]:
    index = 0
    if choice.tokens:
        yield _event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}), EVENT
        head = (
            b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":'
            b'{"type":"text_delta","text":'
        )
        for token in choice.tokens:
            yield head + _dumps(token) + b"}}\n\n", TOKEN
        yield _event("content_block_stop", {"index": 0}), EVENT
        index = 1
    for i, call in enumerate(choice.tool_calls):
        block = {"type": "tool_use", "id": _tool_id(plan, i), "name": call.name, "input": {}}
        yield _event("content_block_start", {"index": index + i, "content_block": block}), EVENT
        for fragment in call.fragments:
            delta = {"type": "input_json_delta", "partial_json": fragment}
            yield _event("content_block_delta", {"index": index + i, "delta": delta}), TOKEN
        yield _event("content_block_stop", {"index": index + i}), EVENT


def error_frame(plan: Plan, fault: ErrorEvent, index: int) -> bytes:
    if fault.type in ERROR_TYPES.values():
        kind = fault.type
    elif fault.code in CODE_STATUS:
        kind = ERROR_TYPES.get(CODE_STATUS[fault.code], "api_error")
    else:
        kind = "api_error" if fault.message else "overloaded_error"
    return _event("error", {"error": {"type": kind, "message": fault.message or "Overloaded"}})


def complete(plan: Plan) -> dict[str, Any]:
    choice = plan.choices[0]
    content: list[dict[str, Any]] = [{"type": "text", "text": choice.text}] if choice.tokens else []
    for i, call in enumerate(choice.tool_calls):
        try:
            arguments = json.loads(call.arguments)
        except ValueError:  # cut short by max_tokens
            arguments = {}
        content.append({"type": "tool_use", "id": _tool_id(plan, i), "name": call.name, "input": arguments})
    return _message(plan, content, STOP_REASONS[choice.finish_reason], plan.usage.completion_tokens)


def error_body(error: RequestError) -> dict[str, Any]:
    kind = ERROR_TYPES.get(error.status, "api_error" if error.status >= 500 else "invalid_request_error")
    message = DEFAULT_MESSAGES.get(error.status, error.message) if _is_openai_default(error) else error.message
    return {"type": "error", "error": {"type": kind, "message": message}}


# Anthropic's own words for a scripted error that gives no message of its own.
DEFAULT_MESSAGES = {
    401: "invalid x-api-key",
    403: "Your API key does not have permission to use the specified resource.",
    404: "Not found.",
    429: "Number of request tokens has exceeded your per-minute rate limit.",
    500: "Internal server error",
    529: "Overloaded",
}


def _is_openai_default(error: RequestError) -> bool:
    default = API_ERRORS.get(error.status)
    return default is not None and error.message.startswith(default[2].split("{")[0])


def headers(plan: Plan) -> dict[str, str]:
    return {
        "request-id": plan.request_id,
        "anthropic-organization-id": "mockstream",
        "anthropic-ratelimit-requests-limit": "4000",
        "anthropic-ratelimit-requests-remaining": "3999",
        "anthropic-ratelimit-tokens-limit": "400000",
        "anthropic-ratelimit-tokens-remaining": str(400_000 - plan.usage.total_tokens),
    }
