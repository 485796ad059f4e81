"""Every knob on every endpoint: one plan, four spellings (Chat, legacy Completions, Responses, Anthropic
Messages), read raw off the socket with httpx where the SDKs would hide the bytes.

"At token K" means exactly K answer deltas reach the client before the fault strikes. The same knobs arrive
in the request body (`mockstream`) or through `X-Mockstream-Scenario` naming a loaded scenario, and the
ready scenario files in `scenarios/` serve every endpoint unchanged.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from wire import (
    ENDPOINTS,
    FINISH,
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
ANTHROPIC_ERRORS = {401: "authentication_error", 429: "rate_limit_error", 500: "api_error", 529: "overloaded_error"}


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
        assert "error" not in payload  # no nested error key
        assert payload["code"] == (fault.get("code") or "server_error")
        message = payload["message"]
        failed = events[-1].json["response"]
        assert failed["status"] == "failed"
        assert failed["error"]["message"] == message
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
