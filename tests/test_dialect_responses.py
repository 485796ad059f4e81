"""The Responses API (`POST /v1/responses`) with openai-python, sync and async, and on the wire.

What wire-format.md §3 says clients depend on: `event:` lines naming the JSON `type`, `sequence_number`
counting from 0 by 1, exactly one terminal event, `function_call` items, `response.incomplete` for a cut
answer, an `error` event then `response.failed` for an in-band error.

Every fault on this endpoint, raw and through the SDK, is in test_dialect_matrix.py.
"""

from __future__ import annotations

import json
import re
from typing import Any

import openai
import pytest
from openai import OpenAI
from wire import RESPONSES_TERMINAL, Event, events_of

from mockstream.plan.content import tokenize

TEXT = "Responses arrive as typed events; the helper puts the text back together."
TOKENS = ["Uno", " dos", " tres", " cuatro", " cinco"]
WEATHER = {"name": "get_weather", "arguments": {"city": "Zürich", "days": [1, 2]}}
TIME = {"name": "get_time", "arguments": {"zone": "Asia/Tokyo"}}
REQUEST_ID = re.compile(r"req_[0-9a-f]{32}")
K = 3


def helper(client: OpenAI, knobs: dict[str, Any], **kwargs: Any):
    """Every event the `responses.stream()` helper yields, and its final response (or what it raised)."""
    events: list[Any] = []
    with client.responses.stream(model="gpt-4o-mini", input="Hi", extra_body={"mockstream": knobs},
                                 **kwargs) as stream:
        for event in stream:
            events.append(event)
        try:
            final: Any = stream.get_final_response()
        except RuntimeError as exc:
            final = exc
    return events, final


def text_deltas(events: list[Any]) -> list[str]:
    return [e.delta for e in events if e.type == "response.output_text.delta"]


def check_sequence(events: list[Event]) -> None:
    """`event:` names the JSON type, numbers count 0, 1, 2..., one terminal event and it is the last."""
    payloads = [e.json for e in events]
    assert [p["type"] for p in payloads] == [e.name for e in events]
    assert [p["sequence_number"] for p in payloads] == list(range(len(events)))
    assert [e.name for e in events if e.name in RESPONSES_TERMINAL] == [events[-1].name]
    assert events[0].name == "response.created"


# ---------------------------------------------------------------- the stream() helper ---
def test_stream_helper_assembles_the_text(client):
    events, final = helper(client, {"content": TEXT})
    assert "".join(text_deltas(events)) == TEXT
    assert len(text_deltas(events)) == len(tokenize(TEXT))
    assert [e.text for e in events if e.type == "response.output_text.done"] == [TEXT]
    assert final.output_text == TEXT
    assert final.status == "completed"
    assert final.id.startswith("resp_")
    [message] = final.output
    assert message.type == "message" and message.role == "assistant" and message.status == "completed"
    assert final.usage.output_tokens == len(tokenize(TEXT))
    assert final.usage.total_tokens == final.usage.input_tokens + final.usage.output_tokens
    assert final.usage.input_tokens > 0


async def test_async_stream_helper_assembles_the_text(aclient):
    async with aclient.responses.stream(model="gpt-4o-mini", input="Hi",
                                        extra_body={"mockstream": {"content": TEXT}}) as stream:
        deltas = [e.delta async for e in stream if e.type == "response.output_text.delta"]
        final = await stream.get_final_response()
    assert "".join(deltas) == TEXT
    assert final.output_text == TEXT


async def test_async_create_stream_yields_typed_events(aclient):
    stream = await aclient.responses.create(model="gpt-4o-mini", input="Hi", stream=True,
                                            extra_body={"mockstream": {"tokens": TOKENS}})
    async with stream:
        events = [e async for e in stream]
    assert text_deltas(events) == TOKENS
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[-1].type == "response.completed"
    assert events[-1].response.output_text == "".join(TOKENS)


def test_tokens_arrive_as_exactly_those_deltas(client):
    tokens = ["你", "好", "!", " 👋", "  two  spaces", "\n\n", '}{"json-ish']
    events, final = helper(client, {"tokens": tokens})
    assert text_deltas(events) == tokens
    assert final.output_text == "".join(tokens)


def test_request_id_is_exposed(client):
    response = client.responses.create(model="m", input="Hi", extra_body={"mockstream": {"content": "Hi"}})
    assert REQUEST_ID.fullmatch(response._request_id)


# ---------------------------------------------------------------- the event sequence on the wire ---
def test_raw_event_sequence_of_a_text_answer(server):
    events = events_of(server.url, "responses", {"tokens": TOKENS})
    check_sequence(events)
    names = [e.name for e in events]
    assert names == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * len(TOKENS),
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    created = events[0].json["response"]
    assert created["status"] == "in_progress" and created["output"] == [] and created["usage"] is None
    added = events[2].json
    item_id = added["item"]["id"]
    assert added["item"] == {"id": item_id, "type": "message", "status": "in_progress", "role": "assistant",
                             "content": []}
    for event in events[3:-2]:
        payload = event.json
        assert (payload["item_id"], payload["output_index"], payload["content_index"]) == (item_id, 0, 0)
    deltas = [e.json for e in events if e.name == "response.output_text.delta"]
    assert [d["delta"] for d in deltas] == TOKENS
    assert all(d["logprobs"] == [] for d in deltas)
    assert events[-4].json["text"] == "".join(TOKENS)
    assert events[-3].json["part"]["text"] == "".join(TOKENS)
    assert events[-2].json["item"]["status"] == "completed"
    completed = events[-1].json["response"]
    assert completed["status"] == "completed"
    assert completed["id"] == created["id"]
    assert completed["output"] == [events[-2].json["item"]]
    assert completed["usage"]["output_tokens"] == len(TOKENS)
    assert completed["usage"]["total_tokens"] == completed["usage"]["input_tokens"] + len(TOKENS)


def test_raw_event_sequence_of_function_calls(server):
    events = events_of(server.url, "responses", {"content": "Let me check.", "tool_calls": [WEATHER, TIME]})
    check_sequence(events)
    added = [e.json for e in events if e.name == "response.output_item.added"]
    assert [(a["output_index"], a["item"]["type"]) for a in added] == [(0, "message"), (1, "function_call"),
                                                                       (2, "function_call")]
    for call, expected, index in zip(added[1:], [WEATHER, TIME], [1, 2]):
        item = call["item"]
        assert item["name"] == expected["name"]
        assert item["arguments"] == "" and item["status"] == "in_progress"
        assert item["call_id"].startswith("call_") and item["id"].startswith("fc_")
        pieces = [e.json for e in events if e.name == "response.function_call_arguments.delta"
                  and e.json["item_id"] == item["id"]]
        assert len(pieces) > 1
        assert all(p["output_index"] == index for p in pieces)
        arguments = "".join(p["delta"] for p in pieces)
        assert json.loads(arguments) == expected["arguments"]
        [done] = [e.json for e in events if e.name == "response.function_call_arguments.done"
                  and e.json["item_id"] == item["id"]]
        assert (done["name"], done["arguments"], done["output_index"]) == (expected["name"], arguments, index)
    # no content parts for a call: the only content part belongs to the message
    assert len([e for e in events if e.name == "response.content_part.added"]) == 1
    final = events[-1].json["response"]
    assert [o["type"] for o in final["output"]] == ["message", "function_call", "function_call"]
    assert len({o["id"] for o in final["output"]}) == 3


# ---------------------------------------------------------------- function calls through the SDK ---
def test_stream_helper_assembles_function_calls(client):
    events, final = helper(client, {"content": "Two calls.", "tool_calls": [WEATHER, TIME]})
    assert final.output_text == "Two calls."
    calls = [o for o in final.output if o.type == "function_call"]
    assert [c.name for c in calls] == ["get_weather", "get_time"]  # a repeated name would be concatenated
    assert [json.loads(c.arguments) for c in calls] == [WEATHER["arguments"], TIME["arguments"]]
    assert all(c.status == "completed" for c in calls)
    assert len({c.call_id for c in calls}) == 2
    done = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert [json.loads(e.arguments) for e in done] == [WEATHER["arguments"], TIME["arguments"]]
    assert final.status == "completed"


async def test_async_function_call_only(aclient):
    async with aclient.responses.stream(model="gpt-4o-mini", input="Hi",
                                        extra_body={"mockstream": {"tool_calls": [WEATHER]}}) as stream:
        pieces = [e.delta async for e in stream if e.type == "response.function_call_arguments.delta"]
        final = await stream.get_final_response()
    [call] = final.output
    assert call.type == "function_call"
    assert json.loads("".join(pieces)) == json.loads(call.arguments) == WEATHER["arguments"]
    assert final.output_text == ""


# ---------------------------------------------------------------- incomplete endings ---
@pytest.mark.parametrize(("knobs", "fields", "reason"), [
    ({"content": TEXT, "finish_reason": "length"}, {}, "max_output_tokens"),
    ({"random_tokens": 40}, {"max_output_tokens": 16}, "max_output_tokens"),
    ({"content": TEXT, "finish_reason": "content_filter"}, {}, "content_filter"),
], ids=["finish_reason-length", "max_output_tokens", "content_filter"])
def test_cut_answers_end_incomplete(client, knobs, fields, reason):
    events, final = helper(client, knobs, **fields)
    # openai-python's helper only returns a final response for response.completed
    assert isinstance(final, RuntimeError)
    terminal = [e for e in events if e.type in RESPONSES_TERMINAL]
    assert [e.type for e in terminal] == ["response.incomplete"]
    assert events[-1] is terminal[0]
    response = terminal[0].response
    assert response.status == "incomplete"
    assert response.incomplete_details.reason == reason
    assert response.output[0].status == "incomplete"
    deltas = text_deltas(events)
    assert response.output_text == "".join(deltas)
    if "max_output_tokens" in fields:
        assert len(deltas) == fields["max_output_tokens"] == response.usage.output_tokens
        assert response.max_output_tokens == 16


def test_non_streaming_incomplete(client):
    response = client.responses.create(model="m", input="Hi", max_output_tokens=16,
                                       extra_body={"mockstream": {"random_tokens": 30}})
    assert response.status == "incomplete"
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.usage.output_tokens == 16
    filtered = client.responses.create(model="m", input="Hi",
                                       extra_body={"mockstream": {"content": TEXT, "finish_reason": "content_filter"}})
    assert filtered.incomplete_details.reason == "content_filter"


def test_max_output_tokens_large_enough_completes(client):
    events, final = helper(client, {"tokens": [f" w{i}" for i in range(16)]}, max_output_tokens=16)
    assert final.status == "completed"
    assert len(text_deltas(events)) == 16


# ---------------------------------------------------------------- non-streaming ---
def test_non_streaming_response_with_output_text_and_usage(client):
    response = client.responses.create(model="gpt-4o-mini", input=[{"role": "user", "content": "Hello"}],
                                       instructions="Be brief.", extra_body={"mockstream": {"content": TEXT}})
    assert response.object == "response"
    assert response.status == "completed"
    assert response.model == "gpt-4o-mini"
    assert response.output_text == TEXT
    assert response.usage.output_tokens == len(tokenize(TEXT))
    assert response.usage.input_tokens > 0
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens
    with_calls = client.responses.create(model="m", input="Hi",
                                         extra_body={"mockstream": {"content": "Sure.", "tool_calls": [WEATHER]}})
    assert with_calls.output_text == "Sure."
    [call] = [o for o in with_calls.output if o.type == "function_call"]
    assert json.loads(call.arguments) == WEATHER["arguments"]


async def test_async_non_streaming(aclient):
    response = await aclient.responses.create(model="m", input="Hi", extra_body={"mockstream": {"tokens": TOKENS}})
    assert response.output_text == "".join(TOKENS)


# ---------------------------------------------------------------- the helper when a fault strikes ---
def test_error_event_then_response_failed_through_the_helper(client):
    fault = {"kind": "error_event", "at_token": K, "message": "Something broke upstream."}
    events, final = helper(client, {"tokens": TOKENS, "fault": fault})
    assert text_deltas(events) == TOKENS[:K]
    assert [e.type for e in events[-2:]] == ["error", "response.failed"]
    error, failed = events[-2:]
    assert error.message == "Something broke upstream."
    assert error.code == "server_error"
    assert failed.response.status == "failed"
    assert failed.response.error.message == "Something broke upstream."
    assert isinstance(final, RuntimeError)  # no response.completed
    assert [e.sequence_number for e in events] == list(range(len(events)))


def test_the_helper_has_no_final_response_for_a_truncated_stream(client):
    """The stream just ends (test_dialect_matrix.py has what the SDK yields): openai-python's helper only
    returns a final response for `response.completed`."""
    events, final = helper(client, {"tokens": TOKENS, "fault": {"kind": "truncate", "at_token": K}})
    assert text_deltas(events) == TOKENS[:K]
    assert not [e for e in events if e.type in RESPONSES_TERMINAL]
    assert isinstance(final, RuntimeError)


# ---------------------------------------------------------------- one-byte writes ---
def test_chunk_bytes_one_through_the_helper(client):
    text = "Héllo wörld — 你好，世界！ 😀"
    _events, final = helper(client, {"content": text, "tool_calls": [WEATHER], "chunk_bytes": 1, "chunk_gap_ms": 0})
    assert final.output_text == text
    [call] = [o for o in final.output if o.type == "function_call"]
    assert json.loads(call.arguments) == WEATHER["arguments"]


async def test_async_chunk_bytes_one(aclient):
    async with aclient.responses.stream(model="m", input="Hi", extra_body={"mockstream": {
            "tokens": TOKENS, "chunk_bytes": 1, "chunk_gap_ms": 0}}) as stream:
        deltas = [e.delta async for e in stream if e.type == "response.output_text.delta"]
        final = await stream.get_final_response()
    assert deltas == TOKENS
    assert final.output_text == "".join(TOKENS)


# ---------------------------------------------------------------- validation ---
def test_missing_input_is_a_bad_request_naming_it(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="m", extra_body={})  # type: ignore[call-overload]
    assert info.value.param == "input"


def test_max_output_tokens_below_16_is_rejected(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="m", input="Hi", max_output_tokens=15)
    assert info.value.param == "max_output_tokens"
    assert "16" in info.value.message


def test_bad_knob_is_a_bad_request(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="m", input="Hi", stream=True, extra_body={"mockstream": {"chunk_bytes": 0}})
    assert info.value.param == "mockstream.chunk_bytes"
