"""Anthropic Messages: named events from `message_start` to `message_stop`, and Anthropic's error shape.

Text is one `text` content block; each tool call is a `tool_use` block whose input streams as
`input_json_delta` pieces. The API has no `n`: only the first choice is spelled.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

from ..deliver.frames import EVENT, TAIL, TOKEN, Frame
from ..deliver.sse import Framing, framing
from ..errors import API_ERRORS, CODE_STATUS, Failure, RequestError
from ..plan import Ask, Choice, Plan
from ..plan.content import count_tokens
from . import JsonDialect
from .clock import interleave
from .conversation import Talk, entries
from .openai import dumps, message_text

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
    talk = Talk()
    for block in system if isinstance(system, list) else (system,):
        talk.instruct(block.get("text") if isinstance(block, dict) else block)
    for message in messages:
        _hear(talk, message)
    texts = [message_text(m.get("content")) for m in messages]
    prompt = count_tokens(system if isinstance(system, str) else message_text(system))
    prompt += sum(count_tokens(t) + 3 for t in texts)
    return Ask(
        model=model,
        stream=bool(_field(body, "stream", bool)),
        prompt_tokens=prompt,
        max_tokens=max_tokens,
        previous=_continues(body.get("thread")),
        **talk.fields(tool.get("name") for tool in entries(body.get("tools"))),
    )


def _hear(talk: Talk, message: dict[str, Any]) -> None:
    """One message: the assistant's, or the user's, which hands back tool results as `tool_result` blocks (their
    text blocks, if any, are what the user said alongside)."""
    content = message.get("content")
    if message["role"] == "assistant":
        talk.assistant()
        return
    if not isinstance(content, list):
        talk.user(content)
        return
    results = [block for block in content if isinstance(block, dict) and block.get("type") == "tool_result"]
    if not results or any(isinstance(block, dict) and block.get("type") == "text" for block in content):
        talk.user(content)
    if results:
        talk.tool(results[-1].get("content"))


def _continues(thread: Any) -> str | None:
    """The reply a message thread continues from: `thread: {"type": "continue", "previous_message_id": ...}`."""
    if isinstance(thread, dict) and thread.get("type") == "continue":
        previous = thread.get("previous_message_id")
        return previous if isinstance(previous, str) else None
    return None


def _tool_id(plan: Plan, i: int) -> str:
    return "toolu_" + plan.choices[0].tool_calls[i].id.removeprefix("call_")


def _opaque(plan: Plan, label: str, size: int) -> str:
    """A seeded stand-in for what the API encrypts (a thinking block's signature, a redacted block's data):
    base64 text, the same for the same plan."""
    return base64.b64encode(hashlib.blake2b(f"{label}:{plan.uid}".encode(), digest_size=size).digest()).decode()


def _thinking(plan: Plan, choice: Choice) -> list[dict[str, Any]]:
    """The reasoning as content blocks: one `thinking` block (or `redacted_thinking`), or none."""
    if not choice.reasoning:
        return []
    if plan.redacted_thinking:
        return [{"type": "redacted_thinking", "data": _opaque(plan, "redacted", 64)}]
    return [{"type": "thinking", "thinking": choice.reasoning_text, "signature": _opaque(plan, "signature", 48)}]


def _event(sse: Framing, kind: str, fields: dict[str, Any]) -> bytes:
    return sse.event(kind, dumps({"type": kind, **fields}))


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
    sse = framing(plan.delivery.line_ending)
    choice = plan.choices[0]
    yield Frame(0.0, _event(sse, "message_start", {"message": _message(plan, [], None, 1)}), EVENT)
    last = yield from interleave(plan, [_with_ping(sse, _blocks(sse, plan, choice))], lambda i: None)
    delta = {
        "delta": {"stop_reason": STOP_REASONS[choice.finish_reason], "stop_sequence": None},
        "usage": {"output_tokens": plan.usage.completion_tokens},
    }
    yield Frame(last, _event(sse, "message_delta", delta), TAIL)
    yield Frame(last, _event(sse, "message_stop", {}), TAIL)


def _with_ping(sse: Framing, blocks: Iterator[tuple[bytes, int]]) -> Iterator[tuple[bytes, int]]:
    """The API sends its `ping` right after the first `content_block_start` (after `message_start` when
    the answer has no block)."""
    first = next(blocks, None)
    if first is not None:
        yield first
    yield _event(sse, "ping", {}), EVENT
    yield from blocks


def _blocks(sse: Framing, plan: Plan, choice: Choice) -> Iterator[tuple[bytes, int]]:
    index = 0
    if choice.reasoning:
        yield from _thinking_block(sse, plan, choice)
        index = 1
    if choice.tokens:
        start = {"index": index, "content_block": {"type": "text", "text": ""}}
        yield _event(sse, "content_block_start", start), EVENT
        head, end = sse.around(
            b'{"type":"content_block_delta","index":' + str(index).encode() + b',"delta":{"type":"text_delta","text":',
            b"}}",
            "content_block_delta",
        )
        for token in choice.tokens:
            yield head + dumps(token) + end, TOKEN
        yield _event(sse, "content_block_stop", {"index": index}), EVENT
        index += 1
    for i, call in enumerate(choice.tool_calls):
        block = {"type": "tool_use", "id": _tool_id(plan, i), "name": call.name, "input": {}}
        yield _event(sse, "content_block_start", {"index": index + i, "content_block": block}), EVENT
        for fragment in call.fragments:
            delta = {"type": "input_json_delta", "partial_json": fragment}
            yield _event(sse, "content_block_delta", {"index": index + i, "delta": delta}), TOKEN
        yield _event(sse, "content_block_stop", {"index": index + i}), EVENT


def _thinking_block(sse: Framing, plan: Plan, choice: Choice) -> Iterator[tuple[bytes, int]]:
    """Block 0: `thinking` deltas then the `signature_delta`, as the API streams extended thinking; a redacted
    block arrives whole, as the first token (its usage still counts every reasoning token)."""
    [block] = _thinking(plan, choice)
    if block["type"] == "redacted_thinking":
        yield _event(sse, "content_block_start", {"index": 0, "content_block": block}), TOKEN
    else:
        opened = {"index": 0, "content_block": {"type": "thinking", "thinking": "", "signature": ""}}
        yield _event(sse, "content_block_start", opened), EVENT
        head, end = sse.around(
            b'{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":',
            b"}}",
            "content_block_delta",
        )
        for token in choice.reasoning:
            yield head + dumps(token) + end, TOKEN
        signature = {"type": "signature_delta", "signature": block["signature"]}
        yield _event(sse, "content_block_delta", {"index": 0, "delta": signature}), EVENT
    yield _event(sse, "content_block_stop", {"index": 0}), EVENT


def error_event(plan: Plan, failure: Failure, index: int) -> bytes:
    if failure.type in ERROR_TYPES.values():
        kind = failure.type
    elif failure.code in CODE_STATUS:
        kind = ERROR_TYPES.get(CODE_STATUS[failure.code], "api_error")
    else:
        kind = "api_error" if failure.message else "overloaded_error"
    sse = framing(plan.delivery.line_ending)
    return _event(sse, "error", {"error": {"type": kind, "message": failure.message or "Overloaded"}})


def complete(plan: Plan) -> dict[str, Any]:
    choice = plan.choices[0]
    content = _thinking(plan, choice)
    if choice.tokens:
        content.append({"type": "text", "text": choice.text})
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


def _headers(plan: Plan) -> dict[str, str]:
    return {
        "request-id": plan.request_id,
        "anthropic-organization-id": "mockstream",
        "anthropic-ratelimit-requests-limit": "4000",
        "anthropic-ratelimit-requests-remaining": "3999",
        "anthropic-ratelimit-tokens-limit": "400000",
        "anthropic-ratelimit-tokens-remaining": str(400_000 - plan.usage.total_tokens),
    }


def _rate_limit_headers(retry_in: float) -> dict[str, str]:
    """Anthropic's headers on a 429: the request limit is used up until the reset (RFC 3339)."""
    reset = datetime.fromtimestamp(time.time() + retry_in, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "anthropic-ratelimit-requests-limit": "4000",
        "anthropic-ratelimit-requests-remaining": "0",
        "anthropic-ratelimit-requests-reset": reset,
        "anthropic-ratelimit-tokens-limit": "400000",
        "anthropic-ratelimit-tokens-remaining": "400000",
    }


class Messages(JsonDialect):
    name = "messages"
    routes = (("POST", "/v1/messages"),)

    read = staticmethod(parse)
    encode = staticmethod(encode)
    complete = staticmethod(complete)
    headers = staticmethod(_headers)
    error_event = staticmethod(error_event)
    error_body = staticmethod(error_body)

    def error_headers(self, error: RequestError, plan: Plan, retry_in: float) -> dict[str, str]:
        headers = _headers(plan)
        if error.status == 429:
            headers.update(_rate_limit_headers(retry_in))
        return headers


MESSAGES = Messages()
