"""The Responses API (`POST /v1/responses`) with openai-python, sync and async, and on the wire.

What wire-format.md §3 says clients depend on: `event:` lines naming the JSON `type`, `sequence_number`
counting from 0 by 1, exactly one terminal event, `function_call` items, `response.incomplete` for a cut
answer, an `error` event then `response.failed` for an in-band error.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from typing import Any

import openai
import pytest
from openai import AsyncOpenAI, OpenAI
from wire import RESPONSES_TERMINAL, Event, check_framing, read, request_body, transport_error

from mockstream.plan.content import tokenize

TEXT = "Responses arrive as typed events; the helper puts the text back together."
TOKENS = ["Uno", " dos", " tres", " cuatro", " cinco"]
WEATHER = {"name": "get_weather", "arguments": {"city": "Zürich", "days": [1, 2]}}
TIME = {"name": "get_time", "arguments": {"zone": "Asia/Tokyo"}}
REQUEST_ID = re.compile(r"req_[0-9a-f]{32}")
K = 3


@pytest.fixture(scope="module")
def client(server):
    with OpenAI(base_url=server.base_url, api_key="x", max_retries=0, timeout=10,
                http_client=openai.DefaultHttpxClient(verify=False)) as c:
        yield c


@pytest.fixture
async def aclient(server):
    async with AsyncOpenAI(base_url=server.base_url, api_key="x", max_retries=0, timeout=10,
                           http_client=openai.DefaultAsyncHttpxClient(verify=False)) as c:
        yield c


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


def sdk_events(client: OpenAI, knobs: dict[str, Any], **kwargs: Any) -> tuple[list[Any], BaseException | None]:
    """The raw typed events of `responses.create(stream=True)`, and what iterating raised (if anything)."""
    events: list[Any] = []
    try:
        with client.responses.create(model="gpt-4o-mini", input="Hi", stream=True,
                                     extra_body={"mockstream": knobs}, **kwargs) as stream:
            for event in stream:
                events.append(event)
    except Exception as exc:
        return events, exc
    return events, None


def text_deltas(events: list[Any]) -> list[str]:
    return [e.delta for e in events if e.type == "response.output_text.delta"]


def raw_events(server, knobs: dict[str, Any], **fields: Any) -> list[Event]:
    reply = read(server.url, "responses", request_body("responses", knobs, **fields))
    assert reply.status == 200, reply.raw
    assert reply.error is None
    check_framing("responses", reply)
    return reply.events


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
    events = raw_events(server, {"tokens": TOKENS})
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
    events = raw_events(server, {"content": "Let me check.", "tool_calls": [WEATHER, TIME]})
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


# ---------------------------------------------------------------- in-band error ---
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


def test_error_event_raw_sequence(server):
    events = raw_events(server, {"tokens": TOKENS, "fault": {"kind": "error_event", "at_token": K}})
    check_sequence(events)
    assert [e.name for e in events].count("response.output_text.delta") == K
    error = events[-2].json
    assert set(error) == {"type", "sequence_number", "code", "message", "param"}
    assert error["param"] is None
    assert events[-1].name == "response.failed"
    assert events[-1].json["response"]["error"] == {"code": "server_error", "message": error["message"]}


# ---------------------------------------------------------------- faults through the SDK ---
def test_fault_disconnect_raises_connection_error_after_k_deltas(client):
    events, exc = sdk_events(client, {"tokens": TOKENS, "fault": {"kind": "disconnect", "at_token": K}})
    assert text_deltas(events) == TOKENS[:K]
    assert isinstance(exc, openai.APIConnectionError)


def test_fault_reset_raises_connection_error_after_k_deltas(client):
    events, exc = sdk_events(client, {"tokens": TOKENS, "fault": {"kind": "reset", "at_token": K}})
    assert text_deltas(events) == TOKENS[:K]
    assert isinstance(exc, openai.APIConnectionError)
    assert exc.__cause__ is not None and transport_error(exc.__cause__)


def test_fault_truncate_ends_quietly_without_a_terminal_event(client):
    events, exc = sdk_events(client, {"tokens": TOKENS, "fault": {"kind": "truncate", "at_token": K}})
    assert exc is None
    assert text_deltas(events) == TOKENS[:K]
    assert not [e for e in events if e.type in RESPONSES_TERMINAL]
    _, final = helper(client, {"tokens": TOKENS, "fault": {"kind": "truncate", "at_token": K}})
    assert isinstance(final, RuntimeError)


def test_fault_malformed_raises_json_error_after_k_deltas(client):
    events, exc = sdk_events(client, {"tokens": TOKENS, "fault": {"kind": "malformed", "at_token": K}})
    assert text_deltas(events) == TOKENS[:K]
    assert isinstance(exc, json.JSONDecodeError)  # not an OpenAIError


def test_fault_error_event_is_yielded_not_raised(client):
    events, exc = sdk_events(client, {"tokens": TOKENS, "fault": {"kind": "error_event", "at_token": K}})
    assert exc is None
    assert text_deltas(events) == TOKENS[:K]
    assert [e.type for e in events[-2:]] == ["error", "response.failed"]


def test_fault_stall_pauses_after_k_deltas(client):
    times: list[float] = []
    with client.responses.stream(model="m", input="Hi", extra_body={"mockstream": {
            "tokens": TOKENS, "fault": {"kind": "stall", "at_token": K, "ms": 250}}}) as stream:
        for event in stream:
            if event.type == "response.output_text.delta":
                times.append(time.monotonic())
        final = stream.get_final_response()
    assert final.output_text == "".join(TOKENS)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps[K - 1] >= 0.2
    assert gaps[K - 1] == max(gaps)


def test_fault_stall_without_end_times_the_client_out(server):
    with OpenAI(base_url=server.base_url, api_key="x", max_retries=0, timeout=0.5,
                http_client=openai.DefaultHttpxClient(verify=False)) as client:
        events, exc = sdk_events(client, {"tokens": TOKENS, "fault": {"kind": "stall", "at_token": K}})
    assert text_deltas(events) == TOKENS[:K]
    assert isinstance(exc, openai.APITimeoutError)


def test_fault_slow_headers(server):
    with OpenAI(base_url=server.base_url, api_key="x", max_retries=0, timeout=0.15,
                http_client=openai.DefaultHttpxClient(verify=False)) as impatient:
        events, exc = sdk_events(impatient, {"tokens": TOKENS, "fault": {"kind": "slow_headers", "ms": 400}})
    assert events == []
    assert isinstance(exc, openai.APITimeoutError)
    with OpenAI(base_url=server.base_url, api_key="x", max_retries=0, timeout=5,
                http_client=openai.DefaultHttpxClient(verify=False)) as patient:
        started = time.monotonic()
        events, exc = sdk_events(patient, {"tokens": TOKENS, "fault": {"kind": "slow_headers", "ms": 400}})
    assert exc is None
    assert time.monotonic() - started >= 0.35
    assert text_deltas(events) == TOKENS


@pytest.mark.parametrize(("status", "error"), [
    (401, openai.AuthenticationError),
    (429, openai.RateLimitError),
    (500, openai.InternalServerError),
])
def test_fault_http_error_raises_the_sdk_class(client, status, error):
    with pytest.raises(error) as info:
        client.responses.create(model="m", input="Hi", stream=True,
                                extra_body={"mockstream": {"fault": {"kind": "http_error", "status": status}}})
    assert info.value.status_code == status
    assert info.value.message


async def test_async_fault_disconnect(aclient):
    deltas: list[str] = []
    stream = await aclient.responses.create(model="m", input="Hi", stream=True, extra_body={"mockstream": {
        "tokens": TOKENS, "fault": {"kind": "disconnect", "at_token": K}}})
    with pytest.raises(openai.APIConnectionError):
        async with stream:
            async for event in stream:
                if event.type == "response.output_text.delta":
                    deltas.append(event.delta)
    assert deltas == TOKENS[:K]


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
