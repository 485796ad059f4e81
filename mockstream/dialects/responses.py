"""The Responses API: typed `event:` frames numbered by `sequence_number`, ending in exactly one of
`response.completed`, `response.incomplete` or `response.failed`.

The answer is one output item per part: a `message` with one `output_text` part for the text, then one
`function_call` item per tool call. Only the first choice is spelled (the API has no `n`).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

from ..deliver.frames import EVENT, TAIL, TOKEN, Frame
from ..deliver.sse import Framing, framing
from ..errors import Failure, RequestError, in_band_error
from ..plan import Ask, Choice, Plan
from ..plan.content import count_tokens
from .clock import interleave
from .conversation import Talk, entries
from .openai import OpenAIDialect, dumps, message_text, require

INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}
NO_REASONING = {"effort": None, "summary": None}


# Input items the model made (each joins the assistant's turn) and the results a client sends back for them,
# besides every `*_call` and `*_call_output` type. Any other type is passed over (`item_reference`, `compaction`...).
MODEL_ITEMS = frozenset({"reasoning", "mcp_list_tools", "mcp_approval_request", "program"})
RESULT_ITEMS = frozenset({"tool_search_output", "program_output"})
NAMED_TOOLS = ("function", "custom")  # the tool types a request names (hosted tools have no name)


def parse(body: dict[str, Any]) -> Ask:
    model = require(body, "model", str, missing="you must provide a model parameter")
    if "input" not in body:
        raise RequestError(400, "Missing required parameter: 'input'.", "input", "missing_required_parameter")
    items = body["input"]
    if not isinstance(items, (str, list)):
        raise RequestError(
            400, "Invalid type for 'input': expected a string or an array of input items.", "input", "invalid_type"
        )
    stream = require(body, "stream", bool, default=False)
    max_tokens = require(body, "max_output_tokens", int, default=None)
    if max_tokens is not None and max_tokens < 16:
        raise RequestError(
            400,
            f"Invalid 'max_output_tokens': integer below minimum value. Expected a value >= 16, "
            f"but got {max_tokens} instead.",
            "max_output_tokens",
            "integer_below_min_value",
        )
    instructions = require(body, "instructions", str, default="")
    previous = require(body, "previous_response_id", str, default=None)
    messages = [{"role": "user", "content": items}] if isinstance(items, str) else items
    talk = Talk()
    talk.instruct(instructions)
    names = _tool_names(body.get("tools"))
    for item in messages:
        if isinstance(item, dict):
            _hear(talk, item, names)
    texts = [message_text(m.get("content")) for m in messages if isinstance(m, dict)]
    prompt = count_tokens(instructions) + sum(count_tokens(t) + 4 for t in texts)
    return Ask(
        model=model,
        stream=stream,
        prompt_tokens=prompt,
        max_tokens=max_tokens,
        previous=previous,
        **talk.fields(names),
    )


def _hear(talk: Talk, item: dict[str, Any], names: list[Any]) -> None:
    """One input item: a message (`type: message`, or a bare `{role, content}`), an item the model made, a
    result the client sends back, or tools offered on the way (`additional_tools`)."""
    kind = item.get("type")
    if kind is None or kind == "message":
        role = item.get("role", "user" if kind is None else None)
        if role == "assistant":
            talk.assistant()
        elif role in ("system", "developer"):
            talk.system_says(item.get("content"))
        elif role == "user":
            talk.user(item.get("content"))
    elif not isinstance(kind, str):
        return
    elif kind.endswith("_call_output") or kind in RESULT_ITEMS:
        talk.tool(item["output"] if "output" in item else item.get("result"))
    elif kind.endswith("_call") or kind in MODEL_ITEMS:
        talk.assistant()
    elif kind == "additional_tools":
        names += _tool_names(item.get("tools"))


def _tool_names(tools: Any) -> list[Any]:
    return [tool.get("name") for tool in entries(tools) if tool.get("type") in NAMED_TOOLS]


class _Spelling:
    """Ids, item objects and the response snapshot of one plan, shared by stream and non-stream."""

    def __init__(self, plan: Plan):
        self.plan = plan
        self.sse: Framing = framing(plan.delivery.line_ending)
        self.choice: Choice = plan.choices[0]
        self.message_id = f"msg_{plan.uid}"
        self.reasoning_id = f"rs_{plan.uid}"
        self.message_index = 1 if self.choice.reasoning else 0  # the reasoning item comes first
        self.call_ids = [f"fc_{call.id.removeprefix('call_')}{i}" for i, call in enumerate(self.choice.tool_calls)]

    @property
    def ended(self) -> str:
        return "incomplete" if self.choice.finish_reason in INCOMPLETE else "completed"

    def message(self, status: str, text: str | None) -> dict[str, Any]:
        content = [] if text is None else [self.part(text)]
        return {"id": self.message_id, "type": "message", "status": status, "role": "assistant", "content": content}

    @staticmethod
    def part(text: str) -> dict[str, Any]:
        return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}

    def reasoning(self, text: str | None) -> dict[str, Any]:
        """The reasoning item, its summary given (`summary: "auto"`); None: just added, no summary yet."""
        summary = [] if text is None else [self.summary(text)]
        return {"id": self.reasoning_id, "type": "reasoning", "summary": summary}

    @staticmethod
    def summary(text: str) -> dict[str, Any]:
        return {"type": "summary_text", "text": text}

    def call(self, i: int, status: str, arguments: str) -> dict[str, Any]:
        call = self.choice.tool_calls[i]
        return {
            "id": self.call_ids[i],
            "type": "function_call",
            "status": status,
            "call_id": call.id,
            "name": call.name,
            "arguments": arguments,
        }

    def output(self, status: str) -> list[dict[str, Any]]:
        items = [self.reasoning(self.choice.reasoning_text)] if self.choice.reasoning else []
        items += [self.message(status, self.choice.text)] if self.choice.tokens else []
        items += [self.call(i, status, c.arguments) for i, c in enumerate(self.choice.tool_calls)]
        return items

    def response(self, status: str, output: list, usage: dict | None = None, error: dict | None = None) -> dict:
        plan = self.plan
        reason = INCOMPLETE.get(self.choice.finish_reason) if status == "incomplete" else None
        return {
            "id": f"resp_{plan.uid}",
            "object": "response",
            "created_at": plan.created,
            "status": status,
            "background": False,
            "error": error,
            "incomplete_details": {"reason": reason} if reason else None,
            "instructions": None,
            "max_output_tokens": plan.ask.max_tokens,
            "model": plan.model,
            "output": output,
            "parallel_tool_calls": True,
            "previous_response_id": plan.ask.previous,
            "reasoning": {"effort": "medium", "summary": "auto"} if self.choice.reasoning else NO_REASONING,
            "service_tier": "default",
            "store": True,
            "temperature": 1.0,
            "text": {"format": {"type": "text"}},
            "tool_choice": "auto",
            "tools": [],
            "top_p": 1.0,
            "truncation": "disabled",
            "usage": usage,
            "user": None,
            "metadata": {},
        }

    def usage(self) -> dict[str, Any]:
        usage = self.plan.usage
        return {
            "input_tokens": usage.prompt_tokens,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": usage.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
            "total_tokens": usage.total_tokens,
        }

    def event(self, kind: str, seq: int, fields: dict[str, Any]) -> bytes:
        return self.sse.event(kind, dumps({"type": kind, "sequence_number": seq, **fields}))


def encode(plan: Plan) -> Iterator[Frame]:
    spelling = _Spelling(plan)
    seq = itertools.count()
    _event = spelling.event
    yield Frame(0.0, _event("response.created", next(seq), {"response": spelling.response("in_progress", [])}), EVENT)
    yield Frame(
        0.0, _event("response.in_progress", next(seq), {"response": spelling.response("in_progress", [])}), EVENT
    )
    last = yield from interleave(plan, [_items(spelling, seq)], lambda i: None)
    ended = spelling.ended
    final = spelling.response(ended, spelling.output(ended), spelling.usage())
    yield Frame(last, _event(f"response.{ended}", next(seq), {"response": final}), TAIL)


def _items(spelling: _Spelling, seq: Iterator[int]) -> Iterator[tuple[bytes, int]]:
    """The output items in stream order: the reasoning (summary deltas), the message (text deltas), then each
    function call."""
    choice = spelling.choice
    ended = spelling.ended
    _event = spelling.event
    if choice.reasoning:
        yield from _reasoning(spelling, seq)
    index = spelling.message_index
    if choice.tokens:
        ids = {"item_id": spelling.message_id, "output_index": index, "content_index": 0}
        yield (
            _event(
                "response.output_item.added",
                next(seq),
                {"output_index": index, "item": spelling.message("in_progress", None)},
            ),
            EVENT,
        )
        yield _event("response.content_part.added", next(seq), {**ids, "part": spelling.part("")}), EVENT
        head, end = spelling.sse.around(
            b'{"type":"response.output_text.delta","sequence_number":', b',"logprobs":[]}', "response.output_text.delta"
        )
        tail = (
            b',"item_id":"' + spelling.message_id.encode()
            + b'","output_index":' + str(index).encode() + b',"content_index":0,"delta":'
        )
        for token in choice.tokens:
            yield head + str(next(seq)).encode() + tail + dumps(token) + end, TOKEN
        text = choice.text
        yield _event("response.output_text.done", next(seq), {**ids, "text": text, "logprobs": []}), EVENT
        yield _event("response.content_part.done", next(seq), {**ids, "part": spelling.part(text)}), EVENT
        yield (
            _event(
                "response.output_item.done", next(seq), {"output_index": index, "item": spelling.message(ended, text)}
            ),
            EVENT,
        )
        index += 1
    for i, call in enumerate(choice.tool_calls):
        at = {"item_id": spelling.call_ids[i], "output_index": index + i}
        yield (
            _event(
                "response.output_item.added",
                next(seq),
                {"output_index": index + i, "item": spelling.call(i, "in_progress", "")},
            ),
            EVENT,
        )
        for fragment in call.fragments:
            yield _event("response.function_call_arguments.delta", next(seq), {**at, "delta": fragment}), TOKEN
        yield (
            _event(
                "response.function_call_arguments.done",
                next(seq),
                {**at, "name": call.name, "arguments": call.arguments},
            ),
            EVENT,
        )
        yield (
            _event(
                "response.output_item.done",
                next(seq),
                {"output_index": index + i, "item": spelling.call(i, ended, call.arguments)},
            ),
            EVENT,
        )


def _reasoning(spelling: _Spelling, seq: Iterator[int]) -> Iterator[tuple[bytes, int]]:
    """The reasoning item as the API streams it for `reasoning: {summary: "auto"}`: one summary part, its text
    in deltas."""
    _event = spelling.event
    at = {"item_id": spelling.reasoning_id, "output_index": 0, "summary_index": 0}
    yield _event("response.output_item.added", next(seq), {"output_index": 0, "item": spelling.reasoning(None)}), EVENT
    yield _event("response.reasoning_summary_part.added", next(seq), {**at, "part": spelling.summary("")}), EVENT
    head, end = spelling.sse.around(
        b'{"type":"response.reasoning_summary_text.delta","sequence_number":',
        b"}",
        "response.reasoning_summary_text.delta",
    )
    tail = b',"item_id":"' + spelling.reasoning_id.encode() + b'","output_index":0,"summary_index":0,"delta":'
    for token in spelling.choice.reasoning:
        yield head + str(next(seq)).encode() + tail + dumps(token) + end, TOKEN
    text = spelling.choice.reasoning_text
    yield _event("response.reasoning_summary_text.done", next(seq), {**at, "text": text}), EVENT
    yield _event("response.reasoning_summary_part.done", next(seq), {**at, "part": spelling.summary(text)}), EVENT
    done = {"output_index": 0, "item": spelling.reasoning(text)}
    yield _event("response.output_item.done", next(seq), done), EVENT


def complete(plan: Plan) -> dict[str, Any]:
    spelling = _Spelling(plan)
    ended = spelling.ended
    response = spelling.response(ended, spelling.output(ended), spelling.usage())
    response["output_text"] = spelling.choice.text
    return response


class Responses(OpenAIDialect):
    name = "responses"
    routes = (("POST", "/v1/responses"),)

    read = staticmethod(parse)
    encode = staticmethod(encode)
    complete = staticmethod(complete)

    def error_event(self, plan: Plan, failure: Failure, index: int) -> bytes:
        """An `error` event, then `response.failed`: the stream's one terminal event."""
        error = in_band_error(plan.model, failure)
        message, code = error.message, error.code or "server_error"
        spelling = _Spelling(plan)
        event = spelling.event("error", index, {"code": code, "message": message, "param": None})
        failed = spelling.response("failed", [], error={"code": code, "message": message})
        return event + spelling.event("response.failed", index + 1, {"response": failed})


RESPONSES = Responses()
