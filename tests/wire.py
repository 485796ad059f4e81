"""Reading any dialect's stream off a real socket: shared by the dialect tests.

Chat and legacy Completions frame each event as one `data:` line and end with `data: [DONE]`; the
Responses API and Anthropic Messages name each event with an `event:` line and end with their own terminal
event (wire-format.md §0). Everything here reads bytes from a real mockstream server with httpx.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

ENDPOINTS = ("chat", "completions", "responses", "messages")
PATHS = {
    "chat": "/v1/chat/completions",
    "completions": "/v1/completions",
    "responses": "/v1/responses",
    "messages": "/v1/messages",
}
NAMED = ("responses", "messages")  # the dialects whose frames carry an `event:` line
PROMPT = "Tell me something."
RESPONSES_TERMINAL = ("response.completed", "response.incomplete", "response.failed")


def request_body(dialect: str, knobs: dict[str, Any] | None = None, *, stream: bool = True, **fields: Any) -> dict:
    """The smallest valid request of each API, with the knobs under `mockstream` (if any)."""
    user = [{"role": "user", "content": PROMPT}]
    base: dict[str, Any] = {
        "chat": {"model": "gpt-4o-mini", "messages": user},
        "completions": {"model": "gpt-3.5-turbo-instruct", "prompt": PROMPT},
        "responses": {"model": "gpt-4o-mini", "input": PROMPT},
        "messages": {"model": "claude-test-model", "max_tokens": 1024, "messages": user},
    }[dialect]
    body = {**base, "stream": stream, **fields}
    if knobs is not None:
        body["mockstream"] = knobs
    return body


def auth_headers(dialect: str) -> dict[str, str]:
    if dialect == "messages":
        return {"x-api-key": "sk-ant-test", "anthropic-version": "2023-06-01"}
    return {"Authorization": "Bearer sk-test"}


@dataclass
class Event:
    name: str | None  # the `event:` line, None on the data-only dialects
    data: str
    at: float  # seconds after the request was sent when the frame's blank line arrived
    lines: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        if self.data == "[DONE]":
            return True
        try:
            json.loads(self.data)
        except ValueError:
            return False
        return True

    @property
    def json(self) -> Any:
        return json.loads(self.data)


@dataclass
class Reply:
    """One response, read until the body ended or the connection failed."""

    status: int
    headers: httpx.Headers
    headers_at: float  # seconds from sending the request to having the response headers
    raw: bytes
    pieces: list[int]  # the size of every read, in order
    error: Exception | None  # what reading the body raised (a cut connection), None for a clean end
    events: list[Event]

    def json(self) -> Any:
        return json.loads(self.raw)


def _frames(buffer: bytes, at: float) -> tuple[list[Event], bytes]:
    """Split off every complete frame (ended by a blank line); return them and the unfinished rest."""
    events = []
    while b"\n\n" in buffer:
        block, buffer = buffer.split(b"\n\n", 1)
        lines = block.decode("utf-8").split("\n")
        name = next((line[len("event: "):] for line in lines if line.startswith("event: ")), None)
        data = "\n".join(line[len("data: "):] for line in lines if line.startswith("data: "))
        events.append(Event(name, data, at, lines))
    return events, buffer


def read(
    url: str,
    dialect: str,
    body: dict[str, Any],
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> Reply:
    """POST `body` to the dialect's path and read the answer as it arrives, frame by frame."""
    events: list[Event] = []
    raw = b""
    buffer = b""
    pieces: list[int] = []
    error: Exception | None = None
    with httpx.Client(timeout=timeout, verify=False) as client:  # plain http: no CA bundle to load
        started = time.monotonic()
        with client.stream(
            "POST", url + PATHS[dialect], json=body, headers={**auth_headers(dialect), **(headers or {})}
        ) as response:
            headers_at = time.monotonic() - started
            try:
                for piece in response.iter_raw():
                    pieces.append(len(piece))
                    raw += piece
                    new, buffer = _frames(buffer + piece, time.monotonic() - started)
                    events.extend(new)
            except httpx.TransportError as exc:
                error = exc
    return Reply(response.status_code, response.headers, headers_at, raw, pieces, error, events)


def check_framing(dialect: str, reply: Reply) -> None:
    """Every frame is exactly what the API sends: `data:` only, or `event:` + `data:` with a matching type."""
    text = reply.raw.decode("utf-8")
    assert not text.startswith("\ufeff")
    assert "\r" not in text
    assert text.endswith("\n\n"), f"the last frame must end with its blank line: {text[-60:]!r}"
    for event in reply.events:
        if dialect in NAMED:
            assert len(event.lines) == 2, event.lines
            assert event.lines[0].startswith("event: ") and event.lines[1].startswith("data: "), event.lines
            if event.valid:
                assert event.json["type"] == event.name
        else:
            assert len(event.lines) == 1 and event.lines[0].startswith("data: "), event.lines
    if dialect not in NAMED:
        assert "[DONE]" not in [e.data for e in reply.events[:-1]]
    else:
        assert "[DONE]" not in text


def delta_of(dialect: str, event: Event, text_only: bool = False) -> str | None:
    """The piece of the answer one event carries (text, or tool-call arguments unless `text_only`), None
    for any other event."""
    if not event.valid or event.data == "[DONE]":
        return None
    obj = event.json
    if dialect == "chat":
        choices = obj.get("choices") or []
        if not choices or "delta" not in choices[0]:
            return None
        delta = choices[0]["delta"]
        if "role" in delta:
            return None
        if delta.get("content"):
            return delta["content"]
        calls = delta.get("tool_calls") or []
        return (calls[0]["function"].get("arguments") or None) if calls and not text_only else None
    if dialect == "completions":
        choices = obj.get("choices") or []
        if not choices or choices[0].get("finish_reason") is not None:
            return None
        return choices[0]["text"]
    if dialect == "responses":
        if event.name == "response.output_text.delta" or (
            event.name == "response.function_call_arguments.delta" and not text_only
        ):
            return obj["delta"]
        return None
    if event.name == "content_block_delta":
        delta = obj["delta"]
        return delta["text"] if delta["type"] == "text_delta" else None if text_only else delta["partial_json"]
    return None


def text(dialect: str, events: list[Event]) -> str:
    return "".join(d for d in (delta_of(dialect, e, text_only=True) for e in events) if d is not None)


def tool_calls(dialect: str, events: list[Event]) -> list[tuple[str, str]]:
    """(name, arguments text) of every tool call, assembled from the stream's pieces."""
    calls: dict[Any, list[str]] = {}
    for event in events:
        if not event.valid or event.data == "[DONE]":
            continue
        obj = event.json
        if dialect == "chat":
            for choice in obj.get("choices") or []:
                for call in choice.get("delta", {}).get("tool_calls") or []:
                    key = call["index"]
                    if "id" in call:
                        calls[key] = [call["function"]["name"], ""]
                    calls[key][1] += call["function"].get("arguments", "")
        elif dialect == "responses":
            if event.name == "response.output_item.added" and obj["item"]["type"] == "function_call":
                calls[obj["item"]["id"]] = [obj["item"]["name"], ""]
            elif event.name == "response.function_call_arguments.delta":
                calls[obj["item_id"]][1] += obj["delta"]
        elif dialect == "messages":
            if event.name == "content_block_start" and obj["content_block"]["type"] == "tool_use":
                calls[obj["index"]] = [obj["content_block"]["name"], ""]
            elif event.name == "content_block_delta" and obj["delta"]["type"] == "input_json_delta":
                calls[obj["index"]][1] += obj["delta"]["partial_json"]
    return [(name, arguments) for name, arguments in calls.values()]


def deltas(dialect: str, events: list[Event]) -> list[str]:
    return [d for d in (delta_of(dialect, e) for e in events) if d is not None]


def finished(dialect: str, events: list[Event]) -> bool:
    """Did the stream end the way a complete answer ends?"""
    if not events:
        return False
    last = events[-1]
    if dialect in ("chat", "completions"):
        return last.data == "[DONE]"
    if dialect == "responses":
        return last.name in ("response.completed", "response.incomplete")
    return last.name == "message_stop"


def errors(dialect: str, events: list[Event]) -> list[Event]:
    """The in-band error events of a stream."""
    if dialect in NAMED:
        return [e for e in events if e.name == "error"]
    return [e for e in events if e.valid and e.data != "[DONE]" and "error" in e.json]


def finish(dialect: str, events: list[Event]) -> str | None:
    """How the answer says it ended, in the dialect's own words (Responses: terminal status[:reason])."""
    for event in reversed(events):
        if not event.valid or event.data == "[DONE]":
            continue
        obj = event.json
        if dialect in ("chat", "completions"):
            choices = obj.get("choices") or []
            if choices and choices[0].get("finish_reason"):
                return choices[0]["finish_reason"]
        elif dialect == "responses" and event.name in RESPONSES_TERMINAL:
            response = obj["response"]
            reason = (response.get("incomplete_details") or {}).get("reason")
            return f"{response['status']}:{reason}" if reason else response["status"]
        elif dialect == "messages" and event.name == "message_delta":
            return obj["delta"]["stop_reason"]
    return None


# How each dialect spells the plan's finish_reason (wire-format.md §1-3, §6).
FINISH = {
    "stop": {"chat": "stop", "completions": "stop", "responses": "completed", "messages": "end_turn"},
    "length": {
        "chat": "length",
        "completions": "length",
        "responses": "incomplete:max_output_tokens",
        "messages": "max_tokens",
    },
    "content_filter": {
        "chat": "content_filter",
        "completions": "content_filter",
        "responses": "incomplete:content_filter",
        "messages": "refusal",
    },
    "tool_calls": {"chat": "tool_calls", "completions": "stop", "responses": "completed", "messages": "tool_use"},
}


def transport_error(exc: BaseException) -> bool:
    """Is this the HTTP library's own transport error (httpx, or the httpx2 fork an SDK may ship with)?"""
    return any(cls.__name__ == "TransportError" and cls.__module__.startswith("httpx") for cls in type(exc).__mro__)


def events_of(url: str, dialect: str, knobs: dict[str, Any] | None, **fields: Any) -> list[Event]:
    """The events of a streamed answer that ends cleanly, after checking its status and framing."""
    reply = read(url, dialect, request_body(dialect, knobs, **fields))
    assert reply.status == 200, reply.raw
    assert reply.error is None
    check_framing(dialect, reply)
    return reply.events
