"""Every knob on every endpoint: one plan, four spellings (Chat, legacy Completions, Responses, Anthropic
Messages), read raw off the socket with httpx where the SDKs would hide the bytes.

"At token K" means exactly K answer deltas reach the client before the fault strikes. The same knobs arrive
in the request body (`mockstream`) or through `X-Mockstream-Scenario` naming a loaded scenario, and the
ready scenario files in `scenarios/` serve every endpoint unchanged.
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
from helpers import anthropic_sdk, async_anthropic_sdk, async_openai_sdk, openai_sdk
from wire import (
    ENDPOINTS,
    FINISH,
    PROMPT,
    RESPONSES_TERMINAL,
    Reply,
    check_framing,
    deltas,
    errors,
    finish,
    finished,
    read,
    request_body,
    text,
    tool_calls,
    transport_error,
)

from mockstream import load_scenarios
from mockstream.faults import describe
from mockstream.plan.content import tokenize
from mockstream.plan.schema import Scenario
from mockstream.testing import MockServer

SCENARIOS = Path(__file__).parent.parent / "scenarios"
TOKENS = ["Alpha", " beta", " gamma", " delta", " epsilon", " zeta"]
K = 3
PAUSE_MS = 200
FAULTS = {
    "error_event": {"kind": "error_event", "at_token": K},
    "disconnect": {"kind": "disconnect", "at_token": K},
    "reset": {"kind": "reset", "at_token": K},
    "truncate": {"kind": "truncate", "at_token": K},
    "stall": {"kind": "stall", "at_token": K, "ms": PAUSE_MS},
    "malformed": {"kind": "malformed", "at_token": K},
    "slow_headers": {"kind": "slow_headers", "ms": PAUSE_MS},
    "http_error": {"kind": "http_error", "status": 429},
}
ANTHROPIC_ERRORS = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                    404: "not_found_error", 429: "rate_limit_error", 500: "api_error", 503: "api_error",
                    529: "overloaded_error"}


@pytest.fixture(scope="module")
def loaded() -> MockServer:
    """A server with every ready scenario file loaded, plus one scenario per fault for the header tests."""
    inline = [Scenario.from_dict({"name": f"matrix-{kind}", "tokens": TOKENS, "fault": fault})
              for kind, fault in FAULTS.items()]
    with MockServer([*load_scenarios(SCENARIOS), *inline], speed=0) as srv:
        yield srv


def check_fault(dialect: str, reply: Reply, tokens: list[str], fault: dict[str, Any]) -> None:
    """What a client reading the raw stream sees when `fault` strikes after `at_token` deltas."""
    kind = fault["kind"]
    at = fault.get("at_token") or 0
    if kind == "http_error":
        assert reply.status == fault["status"]
        assert reply.headers["content-type"].startswith("application/json")
        assert reply.events == []
        body = reply.json()
        if dialect == "messages":  # Anthropic's shape
            assert body["type"] == "error"
            assert body["error"]["type"] == ANTHROPIC_ERRORS[fault["status"]]
            assert body["error"]["message"]
        else:
            assert set(body) == {"error"}
            assert {"message", "type", "param", "code"} <= set(body["error"])
            assert body["error"]["message"]
        return
    assert reply.status == 200
    assert reply.headers["content-type"] == "text/event-stream; charset=utf-8"
    got = deltas(dialect, reply.events)
    if kind in ("stall", "slow_headers", "malformed"):  # the stream goes on: the whole answer arrives
        assert reply.error is None
        assert got == tokens
        assert finished(dialect, reply.events)
        check_framing(dialect, reply)
        pause = (fault.get("ms") or 0) / 1000
        if kind == "stall":
            times = [e.at for e in reply.events if deltas(dialect, [e])]
            gaps = [b - a for a, b in itertools.pairwise(times)]
            assert gaps[at - 1] >= 0.8 * pause, gaps  # silence between delta K and delta K + 1
            assert gaps[at - 1] == max(gaps)
        elif kind == "slow_headers":
            assert reply.headers_at >= 0.8 * pause
        else:
            broken = [i for i, e in enumerate(reply.events) if not e.valid]
            assert len(broken) == 1, [e.data for e in reply.events]
            assert len(deltas(dialect, reply.events[: broken[0]])) == at
        return
    assert got == tokens[:at]
    assert not finished(dialect, reply.events)
    if kind == "disconnect":
        assert isinstance(reply.error, httpx.RemoteProtocolError), reply.error  # FIN mid-body
    elif kind == "reset":
        assert isinstance(reply.error, (httpx.ReadError, httpx.RemoteProtocolError)), reply.error  # RST
    elif kind == "truncate":
        assert reply.error is None  # a clean end of the body: only the missing ending tells
        assert errors(dialect, reply.events) == []
        check_framing(dialect, reply)
    elif kind == "error_event":
        assert reply.error is None
        check_framing(dialect, reply)
        check_error_event(dialect, reply, fault)
    else:  # pragma: no cover
        raise AssertionError(kind)


def check_error_event(dialect: str, reply: Reply, fault: dict[str, Any]) -> None:
    [error] = errors(dialect, reply.events)
    events = reply.events
    payload = error.json
    if dialect in ("chat", "completions"):
        assert events[-1] is error  # then the connection closes: no finish_reason, no [DONE]
        message = payload["error"]["message"]
        assert payload["error"]["type"] == (fault.get("type") or "server_error")
    elif dialect == "responses":
        assert [e.name for e in events[-2:]] == ["error", "response.failed"]
        assert events[0].name == "response.created"
        assert [e.name for e in events if e.name in RESPONSES_TERMINAL] == ["response.failed"]  # the one ending
        assert set(payload) == {"type", "sequence_number", "code", "message", "param"}  # no nested error key
        assert payload["param"] is None
        assert payload["code"] == (fault.get("code") or "server_error")
        message = payload["message"]
        failed = events[-1].json["response"]
        assert failed["status"] == "failed"
        assert failed["error"] == {"code": payload["code"], "message": message}
        assert [e.json["sequence_number"] for e in events] == list(range(len(events)))
    else:
        assert events[-1] is error
        assert set(payload) == {"type", "error"}
        assert payload["type"] == "error"
        assert payload["error"]["type"]
        message = payload["error"]["message"]
    assert message
    if fault.get("message"):
        assert message == fault["message"]


# ---------------------------------------------------------------- faults, body knobs and header ---
@pytest.mark.parametrize("via", ["body", "header"])
@pytest.mark.parametrize("kind", list(FAULTS))
@pytest.mark.parametrize("dialect", ENDPOINTS)
def test_each_fault_on_each_endpoint(loaded, dialect, kind, via):
    if via == "body":
        reply = read(loaded.url, dialect, request_body(dialect, {"tokens": TOKENS, "fault": FAULTS[kind]}))
    else:  # no knob in the body: the loaded scenario named by the header answers
        reply = read(loaded.url, dialect, request_body(dialect), headers={"X-Mockstream-Scenario": f"matrix-{kind}"})
    check_fault(dialect, reply, TOKENS, FAULTS[kind])


@pytest.mark.parametrize("dialect", ENDPOINTS)
def test_scenario_knob_in_the_body_names_a_loaded_scenario(loaded, dialect):
    reply = read(loaded.url, dialect, request_body(dialect, {"scenario": "matrix-truncate"}))
    check_fault(dialect, reply, TOKENS, FAULTS["truncate"])
    assert reply.headers["x-mockstream-scenario"] == "matrix-truncate"


@pytest.mark.parametrize("dialect", ENDPOINTS)
def test_fault_fields_are_spelled_in_each_api(loaded, dialect):
    fault = {"kind": "error_event", "at_token": 1, "message": "Custom failure text.", "code": "server_error"}
    reply = read(loaded.url, dialect, request_body(dialect, {"tokens": TOKENS, "fault": fault}))
    check_fault(dialect, reply, TOKENS, fault)


@pytest.mark.parametrize("dialect", ENDPOINTS)
def test_a_fault_beyond_the_answer_strikes_before_its_ending(server, dialect):
    reply = read(server.url, dialect, request_body(dialect, {"tokens": TOKENS, "fault": {"kind": "truncate",
                                                                                          "at_token": 99}}))
    assert deltas(dialect, reply.events) == TOKENS
    assert not finished(dialect, reply.events)
    assert finish(dialect, reply.events) is None


# ---------------------------------------------------------------- scenario files, unchanged ---
FILES = [
    "fault-error-event",
    "fault-truncate",
    "fault-malformed",
    "fault-disconnect",
    "fault-reset",
    "fault-http-error",
    "tool-call",
    "parallel-tool-calls",
    "length-cutoff",
    "content-filter",
    "chinese",
    "empty-answer",
    "reasoning-model",
]


@pytest.mark.parametrize("dialect", ENDPOINTS)
@pytest.mark.parametrize("name", FILES)
def test_scenario_files_serve_every_endpoint(loaded, name, dialect):
    [scenario] = load_scenarios(SCENARIOS / f"{name}.yaml")
    knobs = scenario.knobs
    reply = read(loaded.url, dialect, request_body(dialect), headers={"X-Mockstream-Scenario": name})
    tokens = list(knobs["tokens"]) if "tokens" in knobs else tokenize(knobs.get("content", ""))
    if "fault" in knobs:
        check_fault(dialect, reply, tokens, describe(knobs["fault"]))
        return
    assert reply.status == 200, reply.raw
    assert reply.error is None
    check_framing(dialect, reply)
    assert finished(dialect, reply.events)
    assert text(dialect, reply.events) == "".join(tokens)
    calls = [(c["name"], json.loads(c["arguments"])) for c in knobs.get("tool_calls", ())]
    got = [(name, json.loads(arguments)) for name, arguments in tool_calls(dialect, reply.events)]
    assert got == ([] if dialect == "completions" else calls)  # legacy completions have no tool calls
    reason = knobs.get("finish_reason") or ("tool_calls" if calls else "stop")
    assert finish(dialect, reply.events) == FINISH[reason][dialect]


# ---------------------------------------------------------------- finish reasons ---
@pytest.mark.parametrize("reason", list(FINISH))
@pytest.mark.parametrize("dialect", ENDPOINTS)
def test_each_finish_reason_in_each_dialect(server, dialect, reason):
    reply = read(server.url, dialect, request_body(dialect, {"tokens": TOKENS, "finish_reason": reason}))
    assert deltas(dialect, reply.events) == TOKENS
    assert finished(dialect, reply.events)
    assert finish(dialect, reply.events) == FINISH[reason][dialect]


LIMITS = {"chat": "max_tokens", "completions": "max_tokens", "responses": "max_output_tokens",
          "messages": "max_tokens"}


@pytest.mark.parametrize("dialect", ENDPOINTS)
def test_the_requests_token_limit_ends_with_length(server, dialect):
    tokens = [f" w{i}" for i in range(20)]
    reply = read(server.url, dialect, request_body(dialect, {"tokens": tokens}, **{LIMITS[dialect]: 16}))
    assert deltas(dialect, reply.events) == tokens[:16]
    assert finish(dialect, reply.events) == FINISH["length"][dialect]
    exact = read(server.url, dialect, request_body(dialect, {"tokens": tokens}, **{LIMITS[dialect]: 20}))
    assert finish(dialect, exact.events) == FINISH["stop"][dialect]


# ---------------------------------------------------------------- one-byte writes ---
@pytest.mark.parametrize("dialect", ENDPOINTS)
def test_chunk_bytes_one_cuts_every_endpoint_into_single_bytes(server, dialect):
    knobs = {"content": "Héllo wörld — 你好，世界！ 😀", "tool_calls": [{"name": "f", "arguments": {"q": "ü"}}]}
    whole = read(server.url, dialect, request_body(dialect, knobs))
    cut = read(server.url, dialect, request_body(dialect, {**knobs, "chunk_bytes": 1, "chunk_gap_ms": 0}))
    assert cut.error is None
    assert set(cut.pieces) == {1}  # every read is one byte: lines and UTF-8 characters arrive split
    assert len(cut.pieces) == len(cut.raw)
    check_framing(dialect, cut)
    assert [e.name for e in cut.events] == [e.name for e in whole.events]
    assert deltas(dialect, cut.events) == deltas(dialect, whole.events)
    assert text(dialect, cut.events) == knobs["content"]
    assert finished(dialect, cut.events)
    assert len(whole.pieces) < len(whole.raw) / 20  # without the knob, events are written whole


@pytest.mark.parametrize("dialect", ENDPOINTS)
def test_events_per_write_groups_events_on_every_endpoint(server, dialect):
    reply = read(server.url, dialect, request_body(dialect, {"tokens": TOKENS, "events_per_write": 4}))
    assert deltas(dialect, reply.events) == TOKENS
    assert finished(dialect, reply.events)
    assert len(reply.pieces) <= len(reply.events) // 4 + 1


# ---------------------------------------------------------------- the same faults through each API's SDK ---
# What an application sees: openai-python for the OpenAI routes, the anthropic SDK for Messages. Each reads
# the stream as most applications do (Messages through the SDK's `stream()` helper).
SDK_PAUSE_MS = 250
SDK_FAULTS = {
    "error_event": {"kind": "error_event", "at_token": K},
    "error_event_message": {"kind": "error_event", "at_token": K, "message": "Upstream failed."},
    "disconnect": {"kind": "disconnect", "at_token": K},
    "reset": {"kind": "reset", "at_token": K},
    "truncate": {"kind": "truncate", "at_token": K},
    "malformed": {"kind": "malformed", "at_token": K},
    "stall": {"kind": "stall", "at_token": K, "ms": SDK_PAUSE_MS},
    "stall_forever": {"kind": "stall", "at_token": K},  # until the client's read timeout
}
ENDED = {"chat": "stop", "completions": "stop", "responses": "response.completed", "messages": "end_turn"}
USER = [{"role": "user", "content": PROMPT}]


@dataclass
class Seen:
    """What the SDK gave the application: text deltas (and when), how it said the answer ended, every
    object it yielded, and what it raised."""

    deltas: list[str] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    endings: list[str | None] = field(default_factory=list)
    events: list[Any] = field(default_factory=list)
    error: BaseException | None = None

    def took(self, item: Any, delta: str | None = None, ending: str | None = None) -> None:
        self.events.append(item)
        if delta:
            self.deltas.append(delta)
            self.times.append(time.monotonic())
        if ending:
            self.endings.append(ending)

    @property
    def types(self) -> list[str]:
        return [getattr(e, "type", None) for e in self.events]


def sdk_for(dialect: str, srv: MockServer, **options: Any):
    return anthropic_sdk(srv, **options) if dialect == "messages" else openai_sdk(srv, **options)


def async_sdk_for(dialect: str, srv: MockServer, **options: Any):
    return async_anthropic_sdk(srv, **options) if dialect == "messages" else async_openai_sdk(srv, **options)


def sdk_read(dialect: str, client: Any, knobs: dict[str, Any]) -> Seen:
    seen = Seen()
    extra = {"extra_body": {"mockstream": knobs}}
    try:
        if dialect == "chat":
            for chunk in client.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True, **extra):
                choice = chunk.choices[0] if chunk.choices else None
                seen.took(chunk, choice and choice.delta.content, choice and choice.finish_reason)
        elif dialect == "completions":
            for chunk in client.completions.create(model="gpt-3.5-turbo-instruct", prompt=PROMPT, stream=True,
                                                   **extra):
                choice = chunk.choices[0] if chunk.choices else None
                seen.took(chunk, choice and choice.text, choice and choice.finish_reason)
        elif dialect == "responses":
            with client.responses.create(model="gpt-4o-mini", input=PROMPT, stream=True, **extra) as stream:
                for event in stream:
                    seen.took(event, event.delta if event.type == "response.output_text.delta" else None,
                              event.type if event.type in RESPONSES_TERMINAL else None)
        else:
            with client.messages.stream(model="claude-test-model", max_tokens=1024, messages=USER, **extra) as stream:
                for event in stream:
                    text_delta = event.type == "content_block_delta" and event.delta.type == "text_delta"
                    seen.took(event, event.delta.text if text_delta else None)
                seen.endings.append(stream.get_final_message().stop_reason)  # None when no message_delta came
    except Exception as exc:
        seen.error = exc
    return seen


async def async_sdk_read(dialect: str, client: Any, knobs: dict[str, Any]) -> Seen:
    seen = Seen()
    extra = {"extra_body": {"mockstream": knobs}}
    try:
        if dialect == "chat":
            stream = await client.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True, **extra)
            async for chunk in stream:
                choice = chunk.choices[0] if chunk.choices else None
                seen.took(chunk, choice and choice.delta.content, choice and choice.finish_reason)
        elif dialect == "completions":
            stream = await client.completions.create(model="gpt-3.5-turbo-instruct", prompt=PROMPT, stream=True,
                                                     **extra)
            async for chunk in stream:
                choice = chunk.choices[0] if chunk.choices else None
                seen.took(chunk, choice and choice.text, choice and choice.finish_reason)
        elif dialect == "responses":
            stream = await client.responses.create(model="gpt-4o-mini", input=PROMPT, stream=True, **extra)
            async with stream:
                async for event in stream:
                    seen.took(event, event.delta if event.type == "response.output_text.delta" else None,
                              event.type if event.type in RESPONSES_TERMINAL else None)
        else:
            async with client.messages.stream(model="claude-test-model", max_tokens=1024, messages=USER,
                                              **extra) as stream:
                async for event in stream:
                    text_delta = event.type == "content_block_delta" and event.delta.type == "text_delta"
                    seen.took(event, event.delta.text if text_delta else None)
                seen.endings.append((await stream.get_final_message()).stop_reason)
    except Exception as exc:
        seen.error = exc
    return seen


def connection_error(dialect: str, exc: BaseException | None) -> bool:
    """openai-python wraps a cut connection in APIConnectionError; the anthropic SDK does not wrap errors
    while iterating, so there the HTTP library's own error reaches the caller."""
    if dialect == "messages":
        return isinstance(exc, anthropic.APIConnectionError) or (exc is not None and transport_error(exc))
    return isinstance(exc, openai.APIConnectionError) and not isinstance(exc, openai.APITimeoutError)


def timed_out(dialect: str, exc: BaseException | None) -> bool:
    if dialect == "messages":
        return isinstance(exc, anthropic.APITimeoutError) or (
            exc is not None and transport_error(exc) and "Timeout" in type(exc).__name__)
    return isinstance(exc, openai.APITimeoutError)


def check_sdk_fault(dialect: str, seen: Seen, kind: str) -> None:
    """What the application sees when the fault strikes after K deltas."""
    fault = SDK_FAULTS[kind]
    ended = [e for e in seen.endings if e]
    if kind == "stall":  # the whole answer, with a silence between delta K and delta K + 1
        assert seen.error is None, repr(seen.error)
        assert seen.deltas == TOKENS
        assert ended == [ENDED[dialect]]
        gaps = [b - a for a, b in itertools.pairwise(seen.times)]
        assert gaps[K - 1] >= 0.8 * SDK_PAUSE_MS / 1000, gaps
        assert gaps[K - 1] == max(gaps)
        return
    assert seen.deltas == TOKENS[:K]
    if kind in ("error_event", "error_event_message"):
        message = fault.get("message")
        if dialect in ("chat", "completions"):
            assert type(seen.error) is openai.APIError, repr(seen.error)  # plain APIError: a 200 has no status
            assert seen.error.message
            if message:
                assert message in seen.error.message
            assert ended == []
        elif dialect == "responses":  # yielded, not raised: the error event, then the one terminal event
            assert seen.error is None, repr(seen.error)
            assert seen.types[-2:] == ["error", "response.failed"]
            assert seen.events[-2].code == "server_error"
            assert seen.events[-2].message == (message or seen.events[-1].response.error.message)
            assert seen.events[-1].response.status == "failed"
            assert ended == ["response.failed"]
        else:  # the SDK picks the class by HTTP status, and the stream's status is 200: a generic APIStatusError
            assert type(seen.error) is anthropic.APIStatusError, repr(seen.error)
            assert seen.error.status_code == 200
            expected = {"type": "api_error", "message": message} if message else {
                "type": "overloaded_error", "message": "Overloaded"}
            assert seen.error.body == {"type": "error", "error": expected}
            assert ended == []  # no final message
    elif kind in ("disconnect", "reset"):
        assert connection_error(dialect, seen.error), repr(seen.error)
        if kind == "reset" and dialect != "messages":
            assert seen.error.__cause__ is not None and transport_error(seen.error.__cause__)
        assert ended == []
    elif kind == "truncate":  # a clean end of the body: only the missing ending tells
        assert seen.error is None, repr(seen.error)
        assert ended == []
        assert not {"message_stop", "message_delta", "error"} & set(seen.types)
    elif kind == "malformed":
        assert isinstance(seen.error, json.JSONDecodeError), repr(seen.error)  # not the SDK's own error class
    elif kind == "stall_forever":
        assert timed_out(dialect, seen.error), repr(seen.error)
        assert ended == []
    else:  # pragma: no cover
        raise AssertionError(kind)


@pytest.mark.parametrize("kind", list(SDK_FAULTS))
@pytest.mark.parametrize("dialect", ENDPOINTS)
def test_each_fault_through_each_sdk(server, dialect, kind):
    timeout = 0.5 if kind == "stall_forever" else 10
    with sdk_for(dialect, server, timeout=timeout) as client:
        seen = sdk_read(dialect, client, {"tokens": TOKENS, "fault": SDK_FAULTS[kind]})
    check_sdk_fault(dialect, seen, kind)


@pytest.mark.parametrize("kind", ["error_event", "disconnect"])
@pytest.mark.parametrize("dialect", ENDPOINTS)
async def test_each_async_sdk_sees_the_fault(server, dialect, kind):
    async with async_sdk_for(dialect, server) as client:
        seen = await async_sdk_read(dialect, client, {"tokens": TOKENS, "fault": SDK_FAULTS[kind]})
    check_sdk_fault(dialect, seen, kind)


@pytest.mark.parametrize("dialect", ENDPOINTS)
def test_slow_headers_trip_an_sdks_short_timeout_but_not_a_long_one(server, dialect):
    knobs = {"tokens": TOKENS, "fault": {"kind": "slow_headers", "ms": 400}}
    with sdk_for(dialect, server, timeout=0.15) as impatient:
        seen = sdk_read(dialect, impatient, knobs)
    assert timed_out(dialect, seen.error), repr(seen.error)
    assert seen.events == []
    with sdk_for(dialect, server, timeout=5) as patient:
        started = time.monotonic()
        seen = sdk_read(dialect, patient, knobs)
    assert seen.error is None, repr(seen.error)
    assert time.monotonic() - started >= 0.35
    assert seen.deltas == TOKENS
    assert [e for e in seen.endings if e] == [ENDED[dialect]]


OPENAI_CLASSES = {400: openai.BadRequestError, 401: openai.AuthenticationError, 403: openai.PermissionDeniedError,
                  404: openai.NotFoundError, 429: openai.RateLimitError, 500: openai.InternalServerError,
                  503: openai.InternalServerError, 529: openai.InternalServerError}
ANTHROPIC_CLASSES = {400: anthropic.BadRequestError, 401: anthropic.AuthenticationError,
                     403: anthropic.PermissionDeniedError, 404: anthropic.NotFoundError, 429: anthropic.RateLimitError,
                     500: anthropic.InternalServerError, 503: anthropic.InternalServerError,
                     529: anthropic.OverloadedError}


@pytest.mark.parametrize("status", list(OPENAI_CLASSES))
@pytest.mark.parametrize("dialect", ENDPOINTS)
def test_http_error_statuses_raise_the_sdk_class_in_the_apis_shape(server, dialect, status):
    fault = {"kind": "http_error", "status": status}
    with sdk_for(dialect, server) as client:
        seen = sdk_read(dialect, client, {"tokens": TOKENS, "fault": fault})
    expected = (ANTHROPIC_CLASSES if dialect == "messages" else OPENAI_CLASSES)[status]
    assert isinstance(seen.error, expected), repr(seen.error)
    assert seen.error.status_code == status
    assert seen.events == []
    if dialect == "messages":
        body = seen.error.body
        assert body["type"] == "error"
        assert body["error"]["type"] == ANTHROPIC_ERRORS[status]
        assert body["error"]["message"]
        assert "openai" not in body["error"]["message"].lower()  # Anthropic's words, not OpenAI's
    else:
        assert {"message", "type", "param", "code"} <= set(seen.error.body)  # the SDK's body is the inner error
        assert seen.error.message
    check_fault(dialect, read(server.url, dialect, request_body(dialect, {"tokens": TOKENS, "fault": fault})),
                TOKENS, fault)
