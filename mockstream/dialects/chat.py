"""Chat Completions: `chat.completion.chunk` frames ending in `data: [DONE]`, and `chat.completion`.

Every chunk of a response shares id, created, model and system_fingerprint, so the frame around a
token is built once and each token costs one `json.dumps` of the token itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..deliver.frames import EVENT, TAIL, TOKEN, Frame
from ..deliver.sse import framing
from ..errors import RequestError
from ..plan import Ask, Choice, Plan
from .clock import interleave
from .conversation import CHAT_ROLES, Talk, entries
from .openai import (
    OpenAIDialect,
    at_least,
    count_prompt_tokens,
    dumps,
    include_usage,
    require,
    usage_object,
)

MAX_N = 128

# The JSON of recent token strings: seeded text repeats its words, so most tokens are encoded once
_TOKENS: dict[str, bytes] = {}
TOKEN_CACHE_SIZE = 4096


def _token(token: str) -> bytes:
    data = _TOKENS.get(token)
    if data is None:
        data = dumps(token)
        if len(_TOKENS) < TOKEN_CACHE_SIZE and type(token) is str:
            _TOKENS[token] = data
    return data


class Chat(OpenAIDialect):
    name = "chat"
    routes = (("POST", "/v1/chat/completions"),)

    def read(self, body: dict[str, Any]) -> Ask:
        model = require(body, "model", str, missing="you must provide a model parameter")
        messages = require(body, "messages", list)
        if not messages:
            raise RequestError(400, "'messages' must contain at least one message.", "messages", "empty_array")
        talk = Talk()
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or not isinstance(message.get("role"), str):
                raise RequestError(
                    400,
                    f"Invalid value for 'messages[{i}]': each message needs a string 'role'.",
                    f"messages[{i}].role",
                    "invalid_value",
                )
            _hear(talk, message)
        stream = require(body, "stream", bool, default=False)
        n = require(body, "n", int, default=1)
        if not 1 <= n <= MAX_N:
            raise RequestError(
                400, f"Invalid value for 'n': must be between 1 and {MAX_N}, got {n}.", "n", "integer_out_of_range"
            )
        limits = [
            v for v in (at_least(body, key, 1) for key in ("max_completion_tokens", "max_tokens")) if v is not None
        ]
        return Ask(
            model=model,
            stream=stream,
            prompt_tokens=count_prompt_tokens(messages),
            n=n,
            max_tokens=min(limits) if limits else None,
            include_usage=include_usage(body, stream),
            **talk.fields(_offered(body)),
        )

    def encode(self, plan: Plan) -> Iterator[Frame]:
        sse = framing(plan.delivery.line_ending)
        head = (
            b'{"id":"chatcmpl-'
            + plan.uid.encode()
            + b'","object":"chat.completion.chunk","created":'
            + str(plan.created).encode()
            + b',"model":'
            + dumps(plan.model)
            + b',"service_tier":"default","system_fingerprint":"'
            + plan.system_fingerprint.encode()
            + b'",'
            + (b'"usage":null,' if plan.ask.include_usage else b"")
            + b'"choices":[{"index":'
        )
        choices = [sse.around(head + str(c.index).encode() + b',"delta":', b"") for c in plan.choices]
        open_tail = b',"logprobs":null,"finish_reason":null}]}'

        for choice, (prefix, end) in zip(plan.choices, choices):
            role: dict[str, Any] = {"role": "assistant", "content": None if _opens_with_call(choice) else ""}
            if _opens_with_call(choice):
                role["tool_calls"] = [_call_head(choice, 0)]
            role["refusal"] = None
            yield Frame(0.0, prefix + dumps(role) + open_tail + end, EVENT)

        def finish(i: int) -> bytes:
            prefix, end = choices[i]
            reason = plan.choices[i].finish_reason.encode()
            return prefix + b'{},"logprobs":null,"finish_reason":"' + reason + b'"}]}' + end

        field = plan.reasoning_field
        slots = [
            _slots(choice, prefix, open_tail + end, field) for choice, (prefix, end) in zip(plan.choices, choices)
        ]
        last = yield from interleave(plan, slots, finish)
        if plan.ask.include_usage:
            chunk = head[: -len(b'"choices":[{"index":')].replace(b'"usage":null,', b"")
            usage = sse.data(chunk + b'"choices":[],"usage":' + dumps(usage_object(plan.usage)) + b"}")
            yield Frame(last, usage, TAIL)
        if plan.done:
            yield Frame(last, sse.done, TAIL)

    def complete(self, plan: Plan) -> dict[str, Any]:
        return {
            "id": f"chatcmpl-{plan.uid}",
            "object": "chat.completion",
            "created": plan.created,
            "model": plan.model,
            "choices": [_message(choice, plan.reasoning_field) for choice in plan.choices],
            "usage": usage_object(plan.usage),
            "service_tier": "default",
            "system_fingerprint": plan.system_fingerprint,
        }


def _hear(talk: Talk, message: dict[str, Any]) -> None:
    """One message of a Chat conversation; a role the API does not know is passed over."""
    role = CHAT_ROLES.get(message["role"])
    if role == "assistant":
        talk.assistant()
    elif role == "tool":
        talk.tool(message.get("content"))
    elif role == "system":
        talk.system_says(message.get("content"))
    elif role == "user":
        talk.user(message.get("content"))


def _offered(body: dict[str, Any]) -> list[Any]:
    """The names of `tools[].function` (`tools[].custom` for a custom tool) and of legacy `functions[]`."""
    names = [
        spec.get("name")
        for tool in entries(body.get("tools"))
        for spec in (tool.get("function"), tool.get("custom"))
        if isinstance(spec, dict)
    ]
    names += [function.get("name") for function in entries(body.get("functions"))]
    return names


def _opens_with_call(choice: Choice) -> bool:
    return not choice.tokens and bool(choice.tool_calls)


def _call_head(choice: Choice, i: int) -> dict[str, Any]:
    call = choice.tool_calls[i]
    return {"index": i, "id": call.id, "type": "function", "function": {"name": call.name, "arguments": ""}}


def _slots(choice: Choice, prefix: bytes, tail: bytes, reasoning_field: str) -> Iterator[tuple[bytes, int]]:
    """One chunk per time slot: reasoning tokens (in `reasoning_field` alone, as vLLM streams them), content
    tokens, then each tool call's head and argument pieces."""
    end = b"}" + tail
    thinking = prefix + b'{"' + reasoning_field.encode() + b'":'
    for token in choice.reasoning:
        yield thinking + _token(token) + end, TOKEN
    content = prefix + b'{"content":'
    for token in choice.tokens:
        yield content + _token(token) + end, TOKEN
    for i, call in enumerate(choice.tool_calls):
        if i > 0 or choice.tokens:
            yield prefix + dumps({"tool_calls": [_call_head(choice, i)]}) + tail, TOKEN
        piece = prefix + b'{"tool_calls":[{"index":' + str(i).encode() + b',"function":{"arguments":'
        for fragment in call.fragments:
            yield piece + dumps(fragment) + b"}}]}" + tail, TOKEN


def _message(choice: Choice, reasoning_field: str) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": choice.text if choice.tokens else None,
        "refusal": None,
        "annotations": [],
    }
    if choice.reasoning:
        message[reasoning_field] = choice.reasoning_text
    if choice.tool_calls:
        message["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in choice.tool_calls
        ]
    return {"index": choice.index, "message": message, "logprobs": None, "finish_reason": choice.finish_reason}


CHAT = Chat()
