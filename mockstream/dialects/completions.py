"""Legacy Completions: `text_completion` chunks (`choices[].text`) ending in `data: [DONE]`.

Chat framing, a prompt instead of messages, and no tool calls: a scripted tool call is not spelled here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..deliver.frames import TAIL, TOKEN, Frame
from ..deliver.sse import framing
from ..errors import RequestError
from ..plan import Ask, Choice, Plan
from ..plan.content import count_tokens
from .clock import interleave
from .openai import OpenAIDialect, at_least, dumps, include_usage, require

MAX_N = 128


def parse(body: dict[str, Any]) -> Ask:
    model = require(body, "model", str, missing="you must provide a model parameter")
    prompt = body.get("prompt", "<|endoftext|>")
    prompts: list = [prompt] if isinstance(prompt, str) or _is_token_array(prompt) else prompt
    if (
        not isinstance(prompts, list)
        or not prompts
        or not all(isinstance(p, str) or _is_token_array(p) for p in prompts)
    ):
        raise RequestError(
            400,
            "Invalid type for 'prompt': expected a string, an array of strings, an array of "
            "tokens, or an array of token arrays.",
            "prompt",
            "invalid_type",
        )
    stream = require(body, "stream", bool, default=False)
    n = require(body, "n", int, default=1)
    if not 1 <= n <= MAX_N:
        raise RequestError(
            400, f"Invalid value for 'n': must be between 1 and {MAX_N}, got {n}.", "n", "integer_out_of_range"
        )
    max_tokens = at_least(body, "max_tokens", 1)
    usage = include_usage(body, stream)
    return Ask(
        model=model,
        stream=stream,
        prompt_tokens=sum(count_tokens(p) if isinstance(p, str) else len(p) for p in prompts),
        last_user=prompts[-1] if isinstance(prompts[-1], str) else "",
        n=n * len(prompts),
        max_tokens=max_tokens,
        include_usage=usage,
    )


def _is_token_array(value: Any) -> bool:
    return (
        isinstance(value, list) and bool(value) and all(isinstance(t, int) and not isinstance(t, bool) for t in value)
    )


def _head(plan: Plan) -> bytes:
    return (
        b'{"id":"cmpl-'
        + plan.uid.encode()
        + b'","object":"text_completion","created":'
        + str(plan.created).encode()
        + b',"model":'
        + dumps(plan.model)
        + b',"system_fingerprint":"'
        + plan.system_fingerprint.encode()
        + b'",'
    )


def encode(plan: Plan) -> Iterator[Frame]:
    sse = framing(plan.delivery.line_ending)
    head, end = sse.around(_head(plan) + b'"choices":[{"text":', b"")

    def texts(choice: Choice) -> Iterator[tuple[bytes, int]]:
        tail = b',"index":' + str(choice.index).encode() + b',"logprobs":null,"finish_reason":null}]}' + end
        for token in choice.tokens:
            yield head + dumps(token) + tail, TOKEN

    def finish(i: int) -> bytes:
        reason = plan.choices[i].finish_reason
        reason = "stop" if reason == "tool_calls" else reason
        return (
            head
            + b'"","index":'
            + str(i).encode()
            + b',"logprobs":null,"finish_reason":"'
            + reason.encode()
            + b'"}]}'
            + end
        )

    last = yield from interleave(plan, [texts(c) for c in plan.choices], finish)
    if plan.ask.include_usage:
        yield Frame(last, sse.data(_head(plan) + b'"choices":[],"usage":' + dumps(_usage(plan)) + b"}"), TAIL)
    if plan.done:
        yield Frame(last, sse.done, TAIL)


def _usage(plan: Plan) -> dict[str, int]:
    tokens = sum(len(c.tokens) for c in plan.choices)
    return {
        "prompt_tokens": plan.usage.prompt_tokens,
        "completion_tokens": tokens,
        "total_tokens": plan.usage.prompt_tokens + tokens,
    }


def complete(plan: Plan) -> dict[str, Any]:
    return {
        "id": f"cmpl-{plan.uid}",
        "object": "text_completion",
        "created": plan.created,
        "model": plan.model,
        "system_fingerprint": plan.system_fingerprint,
        "choices": [
            {
                "text": c.text,
                "index": c.index,
                "logprobs": None,
                "finish_reason": "stop" if c.finish_reason == "tool_calls" else c.finish_reason,
            }
            for c in plan.choices
        ],
        "usage": _usage(plan),
    }


class Completions(OpenAIDialect):
    name = "completions"
    routes = (("POST", "/v1/completions"),)

    read = staticmethod(parse)
    encode = staticmethod(encode)
    complete = staticmethod(complete)


COMPLETIONS = Completions()
