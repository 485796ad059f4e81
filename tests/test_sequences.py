"""Sequences: successive calls get successive entries (first call 429, second succeeds), on a real socket."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest
from helpers import journal, openai_sdk

from mockstream import Scenario
from mockstream.testing import MockServer

MESSAGES = [{"role": "user", "content": "Again, please."}]
SESSION = "X-Mockstream-Session"
ONE_TWO_THREE = [{"content": "one"}, {"content": "two"}, {"content": "three"}]


def ask(http: httpx.Client, srv: MockServer, knobs: dict[str, Any] | None = None, *, stream: bool = False,
        headers: dict[str, str] | None = None, model: str = "gpt-4o-mini") -> httpx.Response:
    body: dict[str, Any] = {"model": model, "messages": MESSAGES, "stream": stream}
    if knobs is not None:
        body["mockstream"] = knobs
    return http.post(f"{srv.base_url}/chat/completions", json=body, headers=headers or {})


def answer(response: httpx.Response) -> str | int:
    """The assistant's text, or the error status."""
    if response.status_code != 200:
        return response.status_code
    return response.json()["choices"][0]["message"]["content"]


# ---------------------------------------------------------------- order ---
def test_successive_calls_get_successive_entries_then_the_last_repeats(srv, http):
    knobs = {"sequence": ONE_TWO_THREE}
    assert [answer(ask(http, srv, knobs)) for _ in range(5)] == ["one", "two", "three", "three", "three"]
    assert [e["sequence_index"] for e in journal(srv)] == [0, 1, 2, 2, 2]


def test_cycle_starts_over(srv, http):
    knobs = {"sequence": ONE_TWO_THREE, "cycle": True}
    assert [answer(ask(http, srv, knobs)) for _ in range(7)] == ["one", "two", "three", "one", "two", "three", "one"]
    assert [e["sequence_index"] for e in journal(srv)] == [0, 1, 2, 0, 1, 2, 0]


def test_a_one_entry_sequence_always_answers_with_it(srv, http):
    assert [answer(ask(http, srv, {"sequence": [{"content": "same"}]})) for _ in range(3)] == ["same"] * 3


def test_streamed_calls_advance_the_sequence_too(srv, http):
    knobs = {"sequence": [{"tokens": ["a", "b"]}, {"tokens": ["c"]}]}
    bodies = [ask(http, srv, knobs, stream=True).text for _ in range(3)]
    assert all(b.rstrip().endswith("data: [DONE]") for b in bodies)
    assert ['"content":"a"' in b and '"content":"b"' in b for b in bodies] == [True, False, False]
    assert ['"content":"c"' in b for b in bodies] == [False, True, True]


def test_knobs_next_to_the_sequence_are_defaults_for_every_entry(srv, http):
    knobs = {
        "content": "the default answer",
        "finish_reason": "length",
        "sequence": [
            {"fault": {"kind": "http_error", "status": 503}},
            {},
            {"content": "my own answer"},
            {"finish_reason": "stop"},
        ],
    }
    responses = [ask(http, srv, knobs) for _ in range(4)]
    assert [answer(r) for r in responses] == [503, "the default answer", "my own answer", "the default answer"]
    finishes = [r.json()["choices"][0]["finish_reason"] for r in responses[1:]]
    assert finishes == ["length", "length", "stop"]


def test_different_inline_sequences_keep_their_own_positions(srv, http):
    first = {"sequence": [{"content": "a1"}, {"content": "a2"}]}
    second = {"sequence": [{"content": "b1"}, {"content": "b2"}]}
    got = [answer(ask(http, srv, knobs)) for knobs in (first, second, first, second)]
    assert got == ["a1", "b1", "a2", "b2"]


def test_a_rejected_request_does_not_use_up_an_entry(srv, http):
    knobs = {"sequence": ONE_TWO_THREE}
    assert answer(ask(http, srv, knobs)) == "one"
    bad = http.post(f"{srv.base_url}/chat/completions", json={"model": 5, "messages": MESSAGES, "mockstream": knobs})
    assert bad.status_code == 400
    assert answer(ask(http, srv, knobs)) == "two"


# ---------------------------------------------------------------- sessions and reset ---
def test_each_session_has_its_own_position(srv, http):
    knobs = {"sequence": ONE_TWO_THREE}
    calls = ["alice", "alice", "bob", "alice", None, "bob", None]
    got = [answer(ask(http, srv, knobs, headers={SESSION: s} if s else None)) for s in calls]
    assert got == ["one", "two", "one", "three", "one", "two", "two"]
    alice = journal(srv, session="alice")
    assert [e["sequence_index"] for e in alice] == [0, 1, 2]
    assert {e["session"] for e in alice} == {"alice"}
    assert [e["sequence_index"] for e in journal(srv, session="bob")] == [0, 1]


def test_reset_starts_every_sequence_over(srv, http):
    knobs = {"sequence": ONE_TWO_THREE}
    assert [answer(ask(http, srv, knobs)) for _ in range(2)] == ["one", "two"]
    assert answer(ask(http, srv, knobs, headers={SESSION: "s1"})) == "one"
    assert http.post(f"{srv.url}/_mockstream/reset").json() == {"reset": True}
    assert journal(srv) == []
    assert answer(ask(http, srv, knobs)) == "one"
    assert answer(ask(http, srv, knobs, headers={SESSION: "s1"})) == "one"


# ---------------------------------------------------------------- sequences in scenarios ---
FLAKY = {
    "version": 1,
    "name": "flaky",
    "description": "rate limited once, then fine",
    "itl_ms": 5,
    "content": "fine now",
    "sequence": [{"fault": {"kind": "http_error", "status": 429, "retry_after": 0.2}}, {}],
}


def test_a_scenario_sequence_is_shared_by_every_way_of_naming_the_scenario(make_server, http):
    srv = make_server([Scenario.from_dict(FLAKY)])
    by_header = ask(http, srv, headers={"X-Mockstream-Scenario": "flaky"})
    by_model = ask(http, srv, model="flaky")
    by_knob = ask(http, srv, {"scenario": "flaky"})
    assert [answer(r) for r in (by_header, by_model, by_knob)] == [429, "fine now", "fine now"]
    assert by_header.headers["retry-after"] == "0.2"
    entries = journal(srv, scenario="flaky")
    assert [e["outcome"] for e in entries] == ["fault:http_error", "completed", "completed"]
    assert [e["sequence_index"] for e in entries] == [0, 1, 1]


def test_a_scenario_sequence_with_sessions(make_server, http):
    srv = make_server([Scenario.from_dict(FLAKY)])
    got = [answer(ask(http, srv, model="flaky", headers={SESSION: s})) for s in ("a", "b", "a", "b", "c")]
    assert got == [429, 429, "fine now", "fine now", 429]


def test_request_knobs_apply_over_every_entry_of_a_scenario_sequence(make_server, http):
    scenario = Scenario.from_dict({"name": "steps", "sequence": [{"content": "first"}, {"content": "second"}]})
    srv = make_server([scenario])
    responses = [ask(http, srv, {"finish_reason": "content_filter"}, model="steps") for _ in range(2)]
    assert [answer(r) for r in responses] == ["first", "second"]
    assert {r.json()["choices"][0]["finish_reason"] for r in responses} == {"content_filter"}


def test_the_sdk_retries_through_a_scenario_sequence(make_server):
    srv = make_server([Scenario.from_dict(FLAKY)])
    with openai_sdk(srv, max_retries=2) as client:
        stream = client.chat.completions.create(model="flaky", messages=MESSAGES, stream=True)
        text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == "fine now"
    first, second = journal(srv)
    assert (first["status"], second["status"]) == (429, 200)
    assert second["time"] - first["time"] >= 0.18


def test_a_disconnect_then_success_sequence_with_the_sdk(srv):
    knobs = {"tokens": ["ok"], "sequence": [{"fault": {"kind": "disconnect", "at_token": 0}}, {}]}
    with openai_sdk(srv, max_retries=2) as client:
        def stream_text() -> str:
            stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True,
                                                    extra_body={"mockstream": knobs})
            return "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)

        with pytest.raises(openai.APIConnectionError):  # a 200 stream that started is never retried
            stream_text()
        assert stream_text() == "ok"
    assert [e["outcome"] for e in journal(srv)] == ["fault:disconnect", "completed"]


# ---------------------------------------------------------------- validation ---
@pytest.mark.parametrize(
    ("knobs", "param"),
    [
        ({"sequence": []}, "mockstream.sequence"),
        ({"sequence": {"content": "x"}}, "mockstream.sequence"),
        ({"sequence": [{"content": "x"}, {"contnet": "y"}]}, "mockstream.sequence[1].contnet"),
        ({"sequence": [{"fault": {"kind": "stal"}}]}, "mockstream.sequence[0].fault.kind"),
        ({"sequence": [{"sequence": [{}]}]}, "mockstream.sequence[0].sequence"),
        ({"cycle": True}, "mockstream.cycle"),
        ({"sequence": [{}], "cycle": "yes"}, "mockstream.cycle"),
    ],
)
def test_bad_sequences_are_a_400_naming_the_field(srv, http, knobs, param):
    response = ask(http, srv, knobs)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == param
    assert param.removeprefix("mockstream.") in error["message"]


def test_a_bad_scenario_sequence_names_the_entry():
    with pytest.raises(ValueError, match=r"sequence\[1\]\.fault\.status"):
        Scenario.from_dict({"name": "x", "sequence": [{}, {"fault": {"kind": "http_error", "status": 99}}]})
