"""Each dialect's `encode(plan)` without a server: the frames' kinds and due times, the bytes parsed as SSE
(by the specification's rules, so any line ending reads), the non-streamed objects, the in-band error event,
the error headers of a 429; and each fault's `frames()` hook, and the fault registry.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
import time
from datetime import datetime
from typing import Any

import pytest

from mockstream import faults
from mockstream.deliver.frames import EVENT, TAIL, TOKEN, Frame
from mockstream.dialects.chat import CHAT
from mockstream.dialects.completions import COMPLETIONS
from mockstream.dialects.eventsource import EVENTSOURCE, RETRY_MS
from mockstream.dialects.messages import MESSAGES
from mockstream.dialects.registry import DIALECTS, STREAMED
from mockstream.dialects.responses import RESPONSES
from mockstream.errors import Failure, api_error
from mockstream.plan import Ask, Plan, make_plan
from mockstream.plan.schema import request_knobs

TOKENS = ["Alpha", " beta", " gamma", " delta", " epsilon"]
TTFT, ITL = 0.1, 0.02
PACED = {"ttft_ms": TTFT * 1000, "itl_ms": ITL * 1000}
WEATHER = {"name": "get_weather", "arguments": {"city": "Zürich"}}
MODEL = "gpt-4o-mini"


def plan(raw: dict[str, Any] | None = None, *, seed: int = 7, **asked: Any) -> Plan:
    knobs = request_knobs({"tokens": TOKENS, **PACED} if raw is None else raw)
    return make_plan(knobs, Ask(**{"model": MODEL, "stream": True, "prompt_tokens": 11, **asked}), seed=seed,
                     speed=1, scenario="s")


def due_of_token(k: int) -> float:
    return TTFT + k * ITL


# ---------------------------------------------------------------- SSE, as the specification reads it ---
@dataclasses.dataclass
class Sse:
    event: str | None
    data: str | None
    id: str | None = None
    retry: int | None = None

    @property
    def json(self) -> Any:
        return json.loads(self.data)


def parse_sse(raw: bytes) -> list[Sse]:
    """Dispatch an event at every blank line; lines end in CRLF, LF or CR (HTML's event-stream grammar)."""
    text = raw.decode("utf-8")
    assert not text.startswith("\ufeff")
    lines = re.split(r"\r\n|\r|\n", text)
    assert lines[-1] == "", f"the stream must end with a line ending: {text[-40:]!r}"
    events, fields = [], {}
    for line in lines[:-1]:
        if line == "":
            assert fields, "an empty event (two blank lines in a row)"
            data = fields.get("data")
            events.append(Sse(fields.get("event"), None if data is None else "\n".join(data), fields.get("id"),
                              int(fields["retry"]) if "retry" in fields else None))
            fields = {}
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        assert name in ("event", "data", "id", "retry"), line
        if name == "data":
            fields.setdefault("data", []).append(value)
        else:
            fields[name] = value
    assert not fields, f"the last event never ended: {fields}"
    return events


def body(frames: list[Frame]) -> bytes:
    assert all(isinstance(f.data, bytes) for f in frames)
    return b"".join(f.data for f in frames)  # type: ignore[misc]


def kinds(frames: list[Frame]) -> list[int]:
    return [f.kind for f in frames]


def token_dues(frames: list[Frame]) -> list[float]:
    return [f.due for f in frames if f.kind == TOKEN]


def check_clock(frames: list[Frame], tokens: int) -> None:
    """Token k is due at ttft + k * itl; every other frame is due with the token before it (or at once)."""
    assert token_dues(frames) == pytest.approx([due_of_token(k) for k in range(tokens)])
    last = 0.0
    for frame in frames:
        if frame.kind == TOKEN:
            last = frame.due
        else:
            assert frame.due == pytest.approx(last), frame
    assert all(b.due >= a.due for a, b in itertools.pairwise(frames))


# ---------------------------------------------------------------- chat ---
def test_chat_frames_and_their_due_times():
    p = plan()
    frames = list(CHAT.encode(p))
    assert kinds(frames) == [EVENT, *[TOKEN] * len(TOKENS), TAIL, TAIL]
    assert frames[0].due == 0.0  # the role chunk is due at once
    check_clock(frames, len(TOKENS))
    events = parse_sse(body(frames))
    assert all(e.event is None and e.id is None for e in events)
    assert events[-1].data == "[DONE]"
    chunks = [e.json for e in events[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert {(c["id"], c["created"], c["model"], c["system_fingerprint"]) for c in chunks} == {
        (f"chatcmpl-{p.uid}", p.created, MODEL, p.system_fingerprint)}
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    assert [c["choices"][0]["delta"]["content"] for c in chunks[1:-1]] == TOKENS
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None] * (1 + len(TOKENS)) + ["stop"]
    assert chunks[-1]["choices"][0]["delta"] == {}
    assert all("usage" not in c for c in chunks)


def test_chat_usage_chunk_comes_before_done():
    p = plan(include_usage=True)
    frames = list(CHAT.encode(p))
    assert kinds(frames)[-3:] == [TAIL, TAIL, TAIL]
    events = parse_sse(body(frames))
    usage = events[-2].json
    assert usage["choices"] == []
    assert usage["usage"]["completion_tokens"] == len(TOKENS)
    assert usage["usage"]["prompt_tokens"] == 11
    assert usage["usage"]["total_tokens"] == 11 + len(TOKENS)
    assert all(e.json["usage"] is None for e in events[:-2])  # `usage: null` on every other chunk


def test_chat_without_done():
    frames = list(CHAT.encode(plan({"tokens": TOKENS, "done": False})))
    assert parse_sse(body(frames))[-1].json["choices"][0]["finish_reason"] == "stop"
    assert b"[DONE]" not in body(frames)


def test_chat_tool_calls_stream_their_arguments():
    p = plan({"tokens": ["Sure."], "tool_calls": [WEATHER], **PACED})
    frames = list(CHAT.encode(p))
    [call] = p.choices[0].tool_calls
    # role, the text token, the call's head, its argument pieces, finish, [DONE]
    assert kinds(frames) == [EVENT, TOKEN, TOKEN, *[TOKEN] * len(call.fragments), TAIL, TAIL]
    check_clock(frames, 2 + len(call.fragments))
    chunks = [e.json for e in parse_sse(body(frames))[:-1]]
    head = chunks[2]["choices"][0]["delta"]["tool_calls"][0]
    assert head == {"index": 0, "id": call.id, "type": "function",
                    "function": {"name": "get_weather", "arguments": ""}}
    pieces = [c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"] for c in chunks[3:-1]]
    assert pieces == list(call.fragments)
    assert json.loads("".join(pieces)) == WEATHER["arguments"]
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_chat_tool_calls_alone_open_in_the_role_chunk():
    p = plan({"tool_calls": [WEATHER]})
    chunks = [e.json for e in parse_sse(body(list(CHAT.encode(p))))[:-1]]
    role = chunks[0]["choices"][0]["delta"]
    assert role["content"] is None
    assert role["tool_calls"][0]["id"] == p.choices[0].tool_calls[0].id


def test_chat_n_choices_share_each_time_slot():
    p = plan(n=2)
    frames = list(CHAT.encode(p))
    assert kinds(frames) == [EVENT, EVENT, *[TOKEN] * (2 * len(TOKENS)), TAIL, TAIL, TAIL]
    dues = token_dues(frames)
    assert dues == pytest.approx([due_of_token(k // 2) for k in range(2 * len(TOKENS))])
    chunks = [e.json for e in parse_sse(body(frames))[:-1]]
    assert [c["choices"][0]["index"] for c in chunks[2:-2]] == [0, 1] * len(TOKENS)
    assert [c["choices"][0]["finish_reason"] for c in chunks[-2:]] == ["stop", "stop"]


def test_chat_complete():
    p = plan({"tokens": TOKENS, "tool_calls": [WEATHER]})
    answer = CHAT.complete(p)
    assert answer["id"] == f"chatcmpl-{p.uid}"
    assert answer["object"] == "chat.completion"
    assert (answer["created"], answer["model"], answer["system_fingerprint"]) == (p.created, MODEL,
                                                                                   p.system_fingerprint)
    [choice] = answer["choices"]
    assert choice["message"]["content"] == "".join(TOKENS)
    [call] = choice["message"]["tool_calls"]
    assert call["function"] == {"name": "get_weather", "arguments": p.choices[0].tool_calls[0].arguments}
    assert choice["finish_reason"] == "tool_calls"
    assert answer["usage"]["completion_tokens"] == p.usage.completion_tokens
    assert answer["usage"]["total_tokens"] == 11 + p.usage.completion_tokens


# ---------------------------------------------------------------- completions ---
def test_completions_frames():
    p = plan()
    frames = list(COMPLETIONS.encode(p))
    assert kinds(frames) == [*[TOKEN] * len(TOKENS), TAIL, TAIL]  # no role chunk in the legacy API
    check_clock(frames, len(TOKENS))
    events = parse_sse(body(frames))
    assert events[-1].data == "[DONE]"
    chunks = [e.json for e in events[:-1]]
    assert {c["object"] for c in chunks} == {"text_completion"}
    assert {c["id"] for c in chunks} == {f"cmpl-{p.uid}"}
    assert [c["choices"][0]["text"] for c in chunks] == [*TOKENS, ""]
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None] * len(TOKENS) + ["stop"]


def test_completions_spell_no_tool_calls_and_usage_counts_text_only():
    p = plan({"tokens": TOKENS, "tool_calls": [WEATHER]}, include_usage=True)
    events = parse_sse(body(list(COMPLETIONS.encode(p))))
    assert b"get_weather" not in body(list(COMPLETIONS.encode(p)))
    assert events[-3].json["choices"][0]["finish_reason"] == "stop"  # never tool_calls
    assert events[-2].json["usage"]["completion_tokens"] == len(TOKENS)
    answer = COMPLETIONS.complete(p)
    assert answer["object"] == "text_completion"
    assert answer["choices"][0]["text"] == "".join(TOKENS)
    assert answer["choices"][0]["finish_reason"] == "stop"
    assert answer["usage"] == {"prompt_tokens": 11, "completion_tokens": len(TOKENS),
                               "total_tokens": 11 + len(TOKENS)}


# ---------------------------------------------------------------- responses ---
def test_responses_frames_and_sequence_numbers():
    p = plan()
    frames = list(RESPONSES.encode(p))
    assert kinds(frames) == [EVENT] * 4 + [TOKEN] * len(TOKENS) + [EVENT] * 3 + [TAIL]
    check_clock(frames, len(TOKENS))
    events = parse_sse(body(frames))
    assert [e.event for e in events] == [
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        *["response.output_text.delta"] * len(TOKENS),
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.completed",
    ]
    payloads = [e.json for e in events]
    assert [x["type"] for x in payloads] == [e.event for e in events]
    assert [x["sequence_number"] for x in payloads] == list(range(len(events)))
    assert [x["delta"] for x in payloads if x["type"] == "response.output_text.delta"] == TOKENS
    completed = payloads[-1]["response"]
    assert completed["id"] == f"resp_{p.uid}" == payloads[0]["response"]["id"]
    assert completed["status"] == "completed"
    assert completed["usage"]["output_tokens"] == len(TOKENS)
    assert completed["output"][0]["content"][0]["text"] == "".join(TOKENS)


def test_responses_cut_answer_ends_incomplete():
    p = plan(max_tokens=3)
    events = parse_sse(body(list(RESPONSES.encode(p))))
    assert events[-1].event == "response.incomplete"
    assert events[-1].json["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert [e.event for e in events].count("response.output_text.delta") == 3


def test_responses_complete():
    p = plan({"tokens": TOKENS, "tool_calls": [WEATHER]})
    answer = RESPONSES.complete(p)
    assert answer["object"] == "response"
    assert answer["status"] == "completed"
    assert answer["output_text"] == "".join(TOKENS)
    assert [o["type"] for o in answer["output"]] == ["message", "function_call"]
    assert answer["output"][1]["call_id"] == p.choices[0].tool_calls[0].id
    assert json.loads(answer["output"][1]["arguments"]) == WEATHER["arguments"]


# ---------------------------------------------------------------- messages ---
def test_messages_frames():
    p = plan()
    frames = list(MESSAGES.encode(p))
    assert kinds(frames) == [EVENT, EVENT, EVENT, *[TOKEN] * len(TOKENS), EVENT, TAIL, TAIL]
    check_clock(frames, len(TOKENS))
    events = parse_sse(body(frames))
    assert [e.event for e in events] == ["message_start", "content_block_start", "ping",
                                         *["content_block_delta"] * len(TOKENS), "content_block_stop",
                                         "message_delta", "message_stop"]
    assert all(e.json["type"] == e.event for e in events)
    start = events[0].json["message"]
    assert start["id"] == f"msg_{p.uid}" and start["content"] == [] and start["stop_reason"] is None
    assert [e.json["delta"]["text"] for e in events if e.event == "content_block_delta"] == TOKENS
    delta = events[-2].json
    assert delta["delta"]["stop_reason"] == "end_turn"
    assert delta["usage"] == {"output_tokens": len(TOKENS)}


def test_messages_complete_with_a_tool_input_cut_short():
    whole = MESSAGES.complete(plan({"tokens": TOKENS, "tool_calls": [WEATHER]}))
    assert whole["type"] == "message"
    assert [b["type"] for b in whole["content"]] == ["text", "tool_use"]
    assert whole["content"][1]["input"] == WEATHER["arguments"]
    assert whole["content"][1]["id"].startswith("toolu_")
    assert whole["stop_reason"] == "tool_use"
    cut = MESSAGES.complete(plan({"tokens": TOKENS, "tool_calls": [WEATHER]}, max_tokens=len(TOKENS) + 2))
    assert cut["stop_reason"] == "max_tokens"
    assert cut["content"][1]["input"] == {}  # the cut JSON text is not an object


# ---------------------------------------------------------------- eventsource ---
def test_eventsource_numbers_every_chat_frame_after_a_retry_hint():
    p = plan()
    frames = list(EVENTSOURCE.encode(p))
    chat = list(CHAT.encode(p))
    assert kinds(frames) == [EVENT, *kinds(chat)]
    assert [f.due for f in frames[1:]] == [f.due for f in chat]
    events = parse_sse(body(frames))
    assert events[0].retry == RETRY_MS and events[0].data is None
    assert [e.id for e in events[1:]] == [str(i) for i in range(1, len(chat) + 1)]
    assert [e.data for e in events[1:]] == [e.data for e in parse_sse(body(chat))]


# ---------------------------------------------------------------- the in-band error event ---
def test_openai_error_event_is_one_data_frame_with_the_error_object():
    p = plan()
    for dialect in (CHAT, COMPLETIONS):
        [event] = parse_sse(dialect.error_event(p, Failure("Upstream broke."), 3))
        assert event.event is None
        assert event.json == {"error": {"message": "Upstream broke.", "type": "server_error", "param": None,
                                        "code": None}}
    [limited] = parse_sse(CHAT.error_event(p, Failure(code="rate_limit_exceeded"), 0))
    assert limited.json["error"]["code"] == "rate_limit_exceeded"
    assert limited.json["error"]["type"] == "requests"  # a rate limit after the 200 reads like a 429


def test_responses_error_event_then_response_failed_numbered_from_the_index():
    p = plan()
    error, failed = parse_sse(RESPONSES.error_event(p, Failure("Upstream broke."), 6))
    assert error.event == "error"
    assert error.json == {"type": "error", "sequence_number": 6, "code": "server_error",
                          "message": "Upstream broke.", "param": None}
    assert failed.event == "response.failed"
    assert failed.json["sequence_number"] == 7
    assert failed.json["response"]["status"] == "failed"
    assert failed.json["response"]["error"] == {"code": "server_error", "message": "Upstream broke."}


@pytest.mark.parametrize(("failure", "kind", "message"), [
    (Failure(), "overloaded_error", "Overloaded"),
    (Failure("Upstream broke."), "api_error", "Upstream broke."),
    (Failure("Slow down.", code="rate_limit_exceeded"), "rate_limit_error", "Slow down."),
    (Failure("Mine.", type="permission_error"), "permission_error", "Mine."),
])
def test_messages_error_event_in_anthropics_words(failure, kind, message):
    [event] = parse_sse(MESSAGES.error_event(plan(), failure, 2))
    assert event.event == "error"
    assert event.json == {"type": "error", "error": {"type": kind, "message": message}}


# ---------------------------------------------------------------- headers ---
def test_answer_headers_carry_the_request_id():
    p = plan()
    assert CHAT.headers(p)["x-request-id"] == p.request_id
    assert RESPONSES.headers(p)["x-request-id"] == p.request_id
    anthropic = MESSAGES.headers(p)
    assert anthropic["request-id"] == p.request_id
    assert not [name for name in anthropic if name.startswith(("x-ratelimit-", "openai-"))]


@pytest.mark.parametrize("dialect", [CHAT, COMPLETIONS, RESPONSES, EVENTSOURCE], ids=lambda d: d.name)
def test_openai_429_headers_say_the_request_limit_is_used_up(dialect):
    p = plan()
    headers = dialect.error_headers(api_error(429, MODEL), p, 2.5)
    assert headers["x-request-id"] == p.request_id
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert headers["x-ratelimit-reset-requests"] == "2.5s"
    assert int(headers["x-ratelimit-limit-requests"]) > 0
    other = dialect.error_headers(api_error(500, MODEL), p, 2.5)
    assert other["x-ratelimit-remaining-requests"] != "0"  # only a 429 is rate-limited


def test_messages_429_headers_are_anthropics_and_none_of_openais():
    p = plan()
    before = time.time()
    headers = MESSAGES.error_headers(api_error(429, MODEL), p, 30)
    assert headers["request-id"] == p.request_id
    assert headers["anthropic-ratelimit-requests-remaining"] == "0"
    reset = datetime.strptime(headers["anthropic-ratelimit-requests-reset"], "%Y-%m-%dT%H:%M:%S%z").timestamp()
    assert before + 30 - 1 <= reset <= time.time() + 30 + 1
    assert [name for name in headers if name.lower().startswith("x-ratelimit-")] == []
    other = MESSAGES.error_headers(api_error(500, MODEL), p, 30)
    assert "anthropic-ratelimit-requests-reset" not in other


def test_error_bodies_in_each_apis_shape():
    error = api_error(429, MODEL)
    openai_body = CHAT.error_body(error)
    assert set(openai_body) == {"error"}
    assert openai_body["error"]["code"] == "rate_limit_exceeded"
    assert MESSAGES.error_body(error) == {"type": "error", "error": {
        "type": "rate_limit_error", "message": "Number of request tokens has exceeded your per-minute rate limit."}}


# ---------------------------------------------------------------- line endings ---
@pytest.mark.parametrize("ending", ["crlf", "cr"])
@pytest.mark.parametrize("name", STREAMED)
def test_the_line_ending_changes_only_the_framing(name, ending):
    dialect = DIALECTS[name]
    lf_plan = plan({"tokens": TOKENS, "tool_calls": [WEATHER], **PACED}, include_usage=True)
    other_plan = plan({"tokens": TOKENS, "tool_calls": [WEATHER], "line_ending": ending, **PACED},
                      include_usage=True)
    assert other_plan.delivery.line_ending == ending
    assert lf_plan.delivery.line_ending == "lf"
    lf, other = list(dialect.encode(lf_plan)), list(dialect.encode(other_plan))
    assert [(f.due, f.kind) for f in other] == [(f.due, f.kind) for f in lf]
    lf_bytes, other_bytes = body(lf), body(other)
    assert other_bytes != lf_bytes
    eol = {"crlf": b"\r\n", "cr": b"\r"}[ending]
    stray = rb"(?<!\r)\n|\r(?!\n)" if ending == "crlf" else rb"\n"
    assert re.search(stray, other_bytes) is None, "a line ends in something else"
    assert other_bytes.replace(eol, b"\n") == lf_bytes  # the payloads are the same bytes
    assert parse_sse(other_bytes) == parse_sse(lf_bytes)
    error = dialect.error_event(other_plan, Failure("Boom."), 4)
    assert error.replace(eol, b"\n") == dialect.error_event(lf_plan, Failure("Boom."), 4)
    assert error.endswith(eol + eol)


# ---------------------------------------------------------------- the fault hooks on the frames ---
K = 2


def faulted(raw_fault: dict[str, Any], tokens: list[str] = TOKENS) -> tuple[Plan, list[Frame], list[Frame]]:
    """A chat plan with the fault; its plain frames and the frames the fault's hook makes of them."""
    knobs = request_knobs({"tokens": tokens, "fault": raw_fault, **PACED})
    p = make_plan(knobs, Ask(MODEL, True), seed=7, speed=1, scenario="s", fault=knobs["fault"])
    assert p.fault is not None and p.fault.kind == raw_fault["kind"]
    return p, list(CHAT.encode(p)), list(p.fault.frames(CHAT.encode(p), p, CHAT))


def test_error_event_replaces_the_rest_with_the_error_frame():
    p, plain, frames = faulted({"kind": "error_event", "at_token": K, "message": "Upstream broke."})
    assert frames[:1 + K] == plain[:1 + K]  # the role chunk and K tokens
    [error] = frames[1 + K:]
    assert error.kind == TAIL
    assert error.due == plain[1 + K].due  # when the next token was due
    assert error.data == CHAT.error_event(p, Failure("Upstream broke."), 1 + K)
    assert parse_sse(error.data)[0].json["error"]["message"] == "Upstream broke."


def test_truncate_ends_after_k_tokens():
    _, plain, frames = faulted({"kind": "truncate", "at_token": K})
    assert frames == plain[:1 + K]


def test_truncate_at_zero_keeps_only_the_role_chunk():
    _, plain, frames = faulted({"kind": "truncate", "at_token": 0})
    assert frames == plain[:1]


def test_a_fault_beyond_the_answer_strikes_before_the_first_tail_frame():
    _, plain, frames = faulted({"kind": "truncate", "at_token": 99})
    assert frames == plain[:1 + len(TOKENS)]
    assert TAIL not in kinds(frames)


def test_malformed_inserts_one_broken_line_and_the_stream_goes_on():
    _, plain, frames = faulted({"kind": "malformed", "at_token": K})
    assert frames[:1 + K] + frames[2 + K:] == plain  # everything else is unchanged
    broken = frames[1 + K]
    assert broken.due == plain[1 + K].due
    assert broken.data.startswith(b"data: ") and broken.data.endswith(b"\n\n")
    [event] = parse_sse(broken.data)
    with pytest.raises(ValueError):
        json.loads(event.data)
    assert plain[1 + K].data.startswith(broken.data[:-2])  # the struck frame cut short


def test_malformed_with_its_own_data():
    _, _, frames = faulted({"kind": "malformed", "at_token": K, "data": "{not json"})
    assert frames[1 + K].data == b"data: {not json\n\n"


@pytest.mark.parametrize("raw_fault", [
    {"kind": "disconnect", "at_token": K},
    {"kind": "reset", "at_token": K},
    {"kind": "stall", "at_token": K, "ms": 50},
    {"kind": "stall", "at_token": K},
], ids=["disconnect", "reset", "stall-ms", "stall-forever"])
def test_delivery_faults_put_their_marker_just_before_the_struck_frame(raw_fault):
    p, plain, frames = faulted(raw_fault)
    marker = frames[1 + K]
    assert marker.data is p.fault
    assert marker.kind == TAIL
    assert marker.due == plain[1 + K].due
    assert frames[:1 + K] + frames[2 + K:] == plain  # the marker is the only change
    assert callable(marker.data.strike)


@pytest.mark.parametrize("raw_fault", [{"kind": "http_error", "status": 500}, {"kind": "slow_headers", "ms": 5}])
def test_faults_before_the_response_leave_the_frames_alone(raw_fault):
    _, plain, frames = faulted(raw_fault)
    assert frames == plain


def test_a_fault_strikes_every_dialect_after_k_tokens():
    for name in STREAMED:
        dialect = DIALECTS[name]
        knobs = request_knobs({"tokens": TOKENS, "fault": {"kind": "truncate", "at_token": K}})
        p = make_plan(knobs, Ask(MODEL, True), seed=7, speed=1, scenario="s", fault=knobs["fault"])
        frames = list(p.fault.frames(dialect.encode(p), p, dialect))
        assert kinds(frames).count(TOKEN) == K, name
        assert TAIL not in kinds(frames), name


# ---------------------------------------------------------------- the registry ---
def test_the_registry_lists_every_kind_and_is_read_only():
    assert set(faults.KINDS) == {"disconnect", "error_event", "http_error", "malformed", "reset", "slow_headers",
                                 "stall", "truncate"}
    assert all(cls.kind == kind for kind, cls in faults.KINDS.items())
    with pytest.raises(TypeError):
        faults.KINDS["mine"] = faults.Fault  # type: ignore[index]
    with pytest.raises(TypeError):
        del faults.KINDS["truncate"]  # type: ignore[attr-defined]
    assert "mine" not in faults.KINDS and "truncate" in faults.KINDS


def test_a_second_fault_with_a_registered_kind_fails_at_class_creation():
    registered = faults.KINDS["truncate"]
    with pytest.raises(TypeError, match=registered.__name__):

        class AnotherTruncate(faults.Fault):
            kind = "truncate"

    assert faults.KINDS["truncate"] is registered


def test_the_duplicate_kind_error_names_both_classes():
    with pytest.raises(TypeError) as info:

        class AnotherTruncate(faults.Fault):
            kind = "truncate"

    assert "AnotherTruncate" in str(info.value)
    assert faults.KINDS["truncate"].__name__ in str(info.value)


def test_a_delivery_fault_without_strike_fails_at_class_creation():
    with pytest.raises(TypeError, match="strike"):

        class Silent(faults.DeliveryFault):
            kind = "silent-test-kind"

    assert "silent-test-kind" not in faults.KINDS


def test_a_base_class_without_a_kind_is_not_registered():
    before = dict(faults.KINDS)

    class SomeBase(faults.DeliveryFault):  # no kind: a base for kinds, needing no strike() yet
        pass

    assert dict(faults.KINDS) == before


def test_a_parsed_fault_is_its_registered_class():
    fault = faults.parse({"kind": "stall", "at_token": 3, "ms": 10, "probability": 0.5}, "fault")
    assert type(fault) is faults.KINDS["stall"]
    assert (fault.at_token, fault.ms, fault.probability) == (3, 10, 0.5)
    assert faults.describe(fault) == {"kind": "stall", "probability": 0.5, "at_token": 3, "ms": 10}
