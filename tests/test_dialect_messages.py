"""Anthropic Messages (`POST /v1/messages`) with the official `anthropic` SDK, sync and async, and on the wire.

wire-format.md §6: named events from `message_start` to `message_stop`, `text_delta` and `input_json_delta`
pieces, `stop_reason` in `message_delta`, an `error` event in-band, and Anthropic's error shape
(`{"type": "error", "error": {...}}`) for HTTP errors. Knobs travel in `extra_body={"mockstream": ...}`.

Every fault on this endpoint, raw and through the SDK, is in test_dialect_matrix.py.
"""

from __future__ import annotations

import json
import re
from typing import Any

import anthropic
import httpx
import pytest
from anthropic import Anthropic
from helpers import anthropic_sdk, async_anthropic_sdk
from wire import events_of, read, request_body

from mockstream.plan.content import tokenize
from mockstream.testing import MockHandle

TEXT = "Claude-shaped answers arrive as content block deltas."
TOKENS = ["Un", " deux", " trois", " quatre", " cinq"]
WEATHER = {"name": "get_weather", "arguments": {"city": "Zürich", "days": [1, 2]}}
TIME = {"name": "get_time", "arguments": {"zone": "Asia/Tokyo"}}
USER = [{"role": "user", "content": "Hello"}]
MODEL = "claude-test-model"  # a retired model name makes the SDK warn
K = 3


@pytest.fixture(scope="module")
def client(server):
    """The anthropic SDK here (conftest's `client` is openai-python's)."""
    with anthropic_sdk(server) as c:
        yield c


@pytest.fixture
async def aclient(server):
    async with async_anthropic_sdk(server) as c:
        yield c


def helper(client: Anthropic, knobs: dict[str, Any], **kwargs: Any) -> tuple[list[Any], Any, BaseException | None]:
    """The helper's events, its final message, and what it raised (if anything)."""
    kwargs.setdefault("max_tokens", 1024)
    events: list[Any] = []
    final = None
    try:
        with client.messages.stream(model=MODEL, messages=USER, extra_body={"mockstream": knobs},
                                    **kwargs) as stream:
            for event in stream:
                events.append(event)
            final = stream.get_final_message()
    except Exception as exc:
        return events, final, exc
    return events, final, None


def text_deltas(events: list[Any]) -> list[str]:
    return [e.delta.text for e in events if e.type == "content_block_delta" and e.delta.type == "text_delta"]


# ---------------------------------------------------------------- the stream() helper ---
def test_stream_helper_assembles_the_text(client):
    with client.messages.stream(model=MODEL, max_tokens=1024, messages=USER,
                                extra_body={"mockstream": {"content": TEXT}}) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(pieces) == TEXT
    assert len(pieces) == len(tokenize(TEXT))
    assert final.role == "assistant"
    assert final.model == MODEL
    assert final.id.startswith("msg_")
    assert [b.type for b in final.content] == ["text"]
    assert final.content[0].text == TEXT
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == len(tokenize(TEXT))
    assert final.usage.input_tokens > 0


async def test_async_stream_helper(aclient):
    async with aclient.messages.stream(model=MODEL, max_tokens=1024, messages=USER,
                                       extra_body={"mockstream": {"tokens": TOKENS}}) as stream:
        pieces = [p async for p in stream.text_stream]
        final = await stream.get_final_message()
    assert pieces == TOKENS
    assert final.content[0].text == "".join(TOKENS)


def test_tokens_arrive_as_exactly_those_deltas(client):
    tokens = ["你", "好", "!", " 👋", "  two  spaces", "\n\n", '}{"json-ish']
    events, final, exc = helper(client, {"tokens": tokens})
    assert exc is None
    assert text_deltas(events) == tokens
    assert final.content[0].text == "".join(tokens)


def test_stream_helper_assembles_tool_inputs(client):
    events, final, exc = helper(client, {"content": "Checking.", "tool_calls": [WEATHER, TIME]})
    assert exc is None
    assert [b.type for b in final.content] == ["text", "tool_use", "tool_use"]
    assert final.content[0].text == "Checking."
    calls = final.content[1:]
    assert [c.name for c in calls] == ["get_weather", "get_time"]
    assert [c.input for c in calls] == [WEATHER["arguments"], TIME["arguments"]]  # parsed, not text
    assert all(c.id.startswith("toolu_") for c in calls) and calls[0].id != calls[1].id
    assert final.stop_reason == "tool_use"
    partial = [e for e in events if e.type == "input_json"]
    assert len(partial) > 2
    assert partial[-1].snapshot == TIME["arguments"]


async def test_async_tool_use_only(aclient):
    async with aclient.messages.stream(model=MODEL, max_tokens=1024, messages=USER,
                                       extra_body={"mockstream": {"tool_calls": [WEATHER]}}) as stream:
        final = await stream.get_final_message()
    [call] = final.content
    assert call.type == "tool_use" and call.input == WEATHER["arguments"]
    assert final.stop_reason == "tool_use"


def test_create_stream_yields_raw_events(client):
    with client.messages.create(model=MODEL, max_tokens=1024, messages=USER, stream=True,
                                extra_body={"mockstream": {"tokens": TOKENS}}) as stream:
        events = list(stream)
    assert events[0].type == "message_start"
    assert [e.delta.text for e in events if e.type == "content_block_delta"] == TOKENS
    assert events[-2].delta.stop_reason == "end_turn"
    assert events[-1].type == "message_stop"


def test_request_id_and_anthropic_headers(client, server):
    handle = MockHandle(server)
    handle.reset()
    raw = client.messages.with_raw_response.create(model=MODEL, max_tokens=100, messages=USER,
                                                   extra_body={"mockstream": {"content": "Hi"}})
    message = raw.parse()
    assert message.content[0].text == "Hi"
    assert raw.headers["request-id"] == message._request_id
    assert message._request_id.startswith("req_")
    [entry] = handle.requests
    sent = {k.lower(): v for k, v in entry.headers.items()}
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", sent["anthropic-version"])  # the SDK sends it; accepted


# ---------------------------------------------------------------- the raw event order ---
def test_raw_event_order_of_text_and_tool_use(server):
    events = events_of(server.url, "messages", {"tokens": TOKENS, "tool_calls": [WEATHER]})
    names = [e.name for e in events]
    pieces = len(tokenize(json.dumps(WEATHER["arguments"], ensure_ascii=False)))
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        *["content_block_delta"] * len(TOKENS),
        "content_block_stop",
        "content_block_start",
        *["content_block_delta"] * pieces,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = events[0].json["message"]
    assert start["type"] == "message" and start["role"] == "assistant" and start["content"] == []
    assert start["stop_reason"] is None and start["model"] == "claude-test-model"
    assert start["id"].startswith("msg_")
    assert events[1].json == {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    assert events[2].json == {"type": "ping"}
    assert [e.json["delta"] for e in events[3:3 + len(TOKENS)]] == [{"type": "text_delta", "text": t} for t in TOKENS]
    assert all(e.json["index"] == 0 for e in events[3:4 + len(TOKENS)])
    tool = events[4 + len(TOKENS)].json
    assert tool["index"] == 1
    block = tool["content_block"]
    assert (block["type"], block["name"], block["input"]) == ("tool_use", "get_weather", {})
    assert block["id"].startswith("toolu_")
    partial = [e.json for e in events if e.name == "content_block_delta" and e.json["index"] == 1]
    assert all(p["delta"]["type"] == "input_json_delta" for p in partial)
    assert json.loads("".join(p["delta"]["partial_json"] for p in partial)) == WEATHER["arguments"]
    delta = events[-2].json
    assert delta["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    assert delta["usage"]["output_tokens"] == len(TOKENS) + pieces
    assert events[-1].json == {"type": "message_stop"}


def test_an_empty_answer_still_opens_and_closes(server):
    events = events_of(server.url, "messages", {"content": ""})
    assert [e.name for e in events] == ["message_start", "ping", "message_delta", "message_stop"]
    assert events[2].json["delta"]["stop_reason"] == "end_turn"


# ---------------------------------------------------------------- stop reasons ---
@pytest.mark.parametrize(("reason", "expected"), [
    ("stop", "end_turn"),
    ("length", "max_tokens"),
    ("tool_calls", "tool_use"),
    ("content_filter", "refusal"),
])
def test_stop_reason_mapping(client, reason, expected):
    events, final, exc = helper(client, {"tokens": TOKENS, "finish_reason": reason})
    assert exc is None
    assert final.stop_reason == expected
    assert text_deltas(events) == TOKENS
    message = client.messages.create(model=MODEL, max_tokens=100, messages=USER,
                                     extra_body={"mockstream": {"tokens": TOKENS, "finish_reason": reason}})
    assert message.stop_reason == expected


def test_request_max_tokens_cuts_with_max_tokens(client):
    events, final, exc = helper(client, {"tokens": TOKENS}, max_tokens=2)
    assert exc is None
    assert text_deltas(events) == TOKENS[:2]
    assert final.stop_reason == "max_tokens"
    assert final.usage.output_tokens == 2
    message = client.messages.create(model=MODEL, max_tokens=2, messages=USER,
                                     extra_body={"mockstream": {"tokens": TOKENS}})
    assert message.content[0].text == "".join(TOKENS[:2])
    assert message.stop_reason == "max_tokens"


def test_max_tokens_cutting_a_tool_input(client):
    message = client.messages.create(model=MODEL, max_tokens=len(TOKENS) + 2, messages=USER,
                                     extra_body={"mockstream": {"tokens": TOKENS, "tool_calls": [WEATHER]}})
    assert message.stop_reason == "max_tokens"
    assert [b.type for b in message.content] == ["text", "tool_use"]


# ---------------------------------------------------------------- non-streaming ---
def test_non_streaming_message(client):
    message = client.messages.create(model=MODEL, max_tokens=1024, messages=USER, system="Be brief.",
                                     extra_body={"mockstream": {"content": TEXT, "tool_calls": [WEATHER]}})
    assert message.type == "message"
    assert message.role == "assistant"
    assert [b.type for b in message.content] == ["text", "tool_use"]
    assert message.content[0].text == TEXT
    assert message.content[1].input == WEATHER["arguments"]
    assert message.stop_reason == "tool_use"
    assert message.usage.output_tokens > len(tokenize(TEXT))


async def test_async_non_streaming(aclient):
    message = await aclient.messages.create(model=MODEL, max_tokens=100, messages=USER,
                                            extra_body={"mockstream": {"tokens": TOKENS}})
    assert message.content[0].text == "".join(TOKENS)


# ---------------------------------------------------------------- errors ---
def test_an_in_band_rate_limit_is_spelled_as_anthropic_does(client):
    fault = {"kind": "error_event", "at_token": 1, "type": "requests", "code": "rate_limit_exceeded"}
    events, _, exc = helper(client, {"tokens": TOKENS, "fault": fault})
    assert text_deltas(events) == TOKENS[:1]
    assert isinstance(exc, anthropic.APIStatusError)
    assert exc.body["error"]["type"] == "rate_limit_error"


def test_error_event_with_its_own_type_and_message(client):
    fault = {"kind": "error_event", "at_token": 1, "type": "api_error", "message": "Internal server error"}
    events, _, exc = helper(client, {"tokens": TOKENS, "fault": fault})
    assert text_deltas(events) == TOKENS[:1]
    assert isinstance(exc, anthropic.APIStatusError)
    assert exc.body["error"] == {"type": "api_error", "message": "Internal server error"}


def test_missing_max_tokens_is_a_400_naming_it(server):
    body = request_body("messages")
    del body["max_tokens"]
    reply = read(server.url, "messages", body)
    assert reply.status == 400
    error = reply.json()
    assert error["type"] == "error"
    assert error["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in error["error"]["message"]


@pytest.mark.parametrize(("change", "field"), [
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "system", "content": "x"}]}, "messages"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"max_tokens": "many"}, "max_tokens"),
    ({"model": None}, "model"),
])
def test_validation_errors_in_anthropics_shape(client, change, field):
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.create(**{"model": MODEL, "max_tokens": 10, "messages": USER, **change})
    assert info.value.body["error"]["type"] == "invalid_request_error"
    assert field in info.value.body["error"]["message"]


def test_bad_knob_is_a_400_in_anthropics_shape(client):
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.create(model=MODEL, max_tokens=10, messages=USER,
                               extra_body={"mockstream": {"chunk_byte": 1}})
    assert "chunk_bytes" in info.value.body["error"]["message"]


def test_unparseable_json_is_a_400_in_anthropics_shape(server):
    with httpx.Client(verify=False) as http:
        response = http.post(server.url + "/v1/messages", content=b"{nope",
                             headers={"content-type": "application/json", "anthropic-version": "2023-06-01"})
    assert response.status_code == 400
    assert response.json()["type"] == "error"


# ---------------------------------------------------------------- one-byte writes ---
def test_chunk_bytes_one_still_assembles_text_and_tool_input(client):
    text = "Héllo wörld — 你好，世界！ 😀"
    _events, final, exc = helper(client, {"content": text, "tool_calls": [WEATHER], "chunk_bytes": 1,
                                         "chunk_gap_ms": 0})
    assert exc is None
    assert final.content[0].text == text
    assert final.content[1].input == WEATHER["arguments"]


async def test_async_chunk_bytes_one(aclient):
    async with aclient.messages.stream(model=MODEL, max_tokens=100, messages=USER, extra_body={"mockstream": {
            "tokens": TOKENS, "chunk_bytes": 1, "chunk_gap_ms": 0}}) as stream:
        pieces = [p async for p in stream.text_stream]
    assert pieces == TOKENS
