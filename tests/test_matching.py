"""Conversation-aware, stateless matching: the match rules, `turns:`, recorded takes, the X-Mockstream-Knobs
header, and the report of a request nothing matched (strict mode, `on_miss`, the proxy hook), on a real socket
with real clients."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
from aiohttp import web
from helpers import anthropic_sdk, journal, openai_sdk, settled
from jsonschema import Draft7Validator, Draft202012Validator

from mockstream import Scenario, ScenarioError, load_scenarios
from mockstream.dialects.registry import DIALECTS
from mockstream.errors import Unmatched
from mockstream.plan import Ask
from mockstream.plan.json_schema import scenario_schema
from mockstream.plan.matching import Scenarios, Sequences, resolved
from mockstream.plan.rules import DIALECT_NAMES, MATCH_FIELDS, Match, parse_match
from mockstream.plan.schema import parse_scenarios, request_knobs
from mockstream.server.state import Settings
from mockstream.testing import MockServer

KNOBS_HEADER = "X-Mockstream-Knobs"
SESSION = "X-Mockstream-Session"
USER = [{"role": "user", "content": "What is the weather in Paris?"}]


def chat(http: httpx.Client, srv: MockServer, messages: list[dict] | None = None, *,
         headers: dict[str, str] | None = None, **fields: Any) -> httpx.Response:
    body = {"model": "gpt-4o-mini", "messages": messages or USER, **fields}
    return http.post(f"{srv.base_url}/chat/completions", json=body, headers=headers or {})


def text(response: httpx.Response) -> str | int:
    """The assistant's text of a Chat answer, or the error status."""
    if response.status_code != 200:
        return response.status_code
    return response.json()["choices"][0]["message"]["content"]


def ask(**fields: Any) -> Ask:
    return Ask(**{"model": "gpt-4o-mini", "stream": False, **fields})


def rules(raw: dict[str, Any]) -> Match:
    match, problems = parse_match(raw, "match")
    assert problems == []
    return match


# ---------------------------------------------------------------- each rule, on constructed asks ---
RULE_CASES = {
    "model": ({"model": r"gpt-4o.*"}, {"model": "gpt-4o-mini"}, {"model": "o3-mini"}),
    "user": ({"user": r"(?i)weather"}, {"last_user": "The WEATHER?"}, {"last_user": "hello"}),
    "turn": ({"turn": 2}, {"turn": 2}, {"turn": 1}),
    "last_role": ({"last_role": "tool"}, {"last_role": "tool"}, {"last_role": "user"}),
    "tool_result": ({"tool_result": r'"temp": 21'}, {"tool_result": '{"temp": 21}'}, {"tool_result": '{"temp": 5}'}),
    "system": ({"system": r"\Apirate"}, {"system": "pirate talk"}, {"system": "no pirate"}),
    "tools": ({"tools": ["search", "get_weather"]}, {"tools": ("get_weather", "search")}, {"tools": ("search",)}),
    "no tools": ({"tools": []}, {"tools": ()}, {"tools": ("search",)}),
}


@pytest.mark.parametrize(("raw", "hit", "miss"), RULE_CASES.values(), ids=RULE_CASES.keys())
def test_each_rule_holds_for_its_request_and_fails_for_another(raw, hit, miss):
    match = rules(raw)
    assert match.holds(ask(**hit), {})
    assert not match.holds(ask(**miss), {})
    assert match.failures(ask(**hit), {}) == []
    [failed] = match.failures(ask(**miss), {})
    assert failed.rule == next(iter(raw))


def test_the_dialect_headers_and_body_rules_read_what_the_server_passes():
    match = rules({"dialect": "messages", "headers": {"X-Team": "blue"}, "body": {"temperature": 0}})
    assert match.holds(ask(), {"x-team": "blue"}, {"temperature": 0}, "messages")
    assert not match.holds(ask(), {"x-team": "blue"}, {"temperature": 0}, "chat")
    assert not match.holds(ask(), {"x-team": "red"}, {"temperature": 0}, "messages")
    assert not match.holds(ask(), {"x-team": "blue"}, {"temperature": 0.5}, "messages")
    failed = match.failures(ask(), {}, {"temperature": 1}, "chat")
    assert [f.to_json() for f in failed] == [
        {"rule": "headers.x-team", "wanted": "blue", "got": None},
        {"rule": "dialect", "wanted": "messages", "got": "chat"},
        {"rule": "body.temperature", "wanted": 0, "got": 1},
    ]


BODY = {
    "temperature": 0,
    "stream": True,
    "response_format": {"type": "json_schema", "json_schema": {"name": "weather"}},
    "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
}


@pytest.mark.parametrize(
    ("path", "wanted", "holds"),
    [
        ("temperature", 0, True),
        ("temperature", 0.0, True),  # JSON numbers: 0 is 0.0
        ("temperature", False, False),  # but false is not 0
        ("stream", True, True),
        ("stream", 1, False),
        ("response_format.type", "json_.*", True),
        ("response_format.type", "json", False),  # a regex must match the whole field
        ("response_format.json_schema", {"name": "weather"}, True),
        ("messages.0.role", "system", True),
        ("messages.1.content", "hi", True),
        ("messages.2.role", "user", False),  # past the end of the list
        ("messages.role", "user", False),  # a list is indexed by number only
        ("temperature.x", 0, False),
        ("top_p", None, False),  # absent is not null
        ("temperature", "0", False),  # a regex matches strings only
    ],
)
def test_body_rules_follow_dotted_paths(path, wanted, holds):
    assert rules({"body": {path: wanted}}).holds(ask(), {}, BODY) is holds


def test_a_path_part_that_is_a_digit_but_not_decimal_indexes_nothing(make_server, http):
    """"²" is a digit to str.isdigit but no int(): it is no list index (and no 500)."""
    assert rules({"body": {"messages.².role": "user"}}).holds(ask(), {}, {"messages": [{"role": "user"}]}) is False
    srv = make_server([Scenario.from_dict({"name": "odd", "match": {"body": {"messages.²": "x"}}, "content": "odd"})])
    assert chat(http, srv, HELLO).status_code == 200
    assert settled(srv)[0]["miss"][0]["failed"] == [{"rule": "body.messages.²", "wanted": "x", "got": None}]


def test_a_tools_rule_is_the_offered_set_in_any_order():
    match = rules({"tools": ["b", "a", "a"]})
    assert match.holds(ask(tools=("a", "b")), {}) and not match.holds(ask(tools=("a",)), {})
    assert match.to_dict() == {"tools": ["a", "b"]}
    assert rules({"tools": []}).holds(ask(), {}) and not rules({"tools": []}).empty


def test_no_rules_never_hold_and_the_old_rules_still_work():
    assert Match().empty and not Match().holds(ask(), {})
    match = rules({"model": "gpt-4o.*", "user": "weather", "headers": {"X-Tenant": "acme"}})
    assert not match.empty
    assert match.holds(ask(model="gpt-4o-mini", last_user="the weather"), {"x-tenant": "acme"})
    assert not match.holds(ask(model="gpt-4o-mini", last_user="the weather"), {"x-tenant": "other"})


def test_the_dialect_rule_knows_every_dialect():
    assert set(DIALECT_NAMES) == set(DIALECTS)


def test_the_rules_round_trip_through_their_file_form():
    raw = {"model": r"gpt\-4o", "user": r"\Ahi\Z", "headers": {"x-a": "1"}, "dialect": "chat", "turn": 1,
           "last_role": "tool", "tool_result": "21", "system": "brief", "tools": ["a", "b"],
           "body": {"temperature": 0, "response_format.type": "json_.*"}}
    assert set(raw) == set(MATCH_FIELDS)
    match = rules(raw)
    assert match.to_dict() == raw
    assert rules(match.to_dict()) == match
    assert rules(dict(reversed(raw.items()))).key == match.key
    assert rules({**raw, "turn": 2}).key != match.key


# ---------------------------------------------------------------- each rule, end to end ---
def tool_round(result: str) -> list[dict[str, Any]]:
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    return [*USER, {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": result}]


def offered(*names: str) -> list[dict[str, Any]]:
    return [{"type": "function", "function": {"name": n, "parameters": {"type": "object"}}} for n in names]


E2E = {
    "turn": ({"turn": 1}, {"messages": tool_round("21")}, {}),
    "last_role": ({"last_role": "tool"}, {"messages": tool_round("21")}, {}),
    "tool_result": ({"tool_result": r"\A21\Z"}, {"messages": tool_round("21")}, {"messages": tool_round("210")}),
    "system": ({"system": "(?i)pirate"},
               {"messages": [{"role": "system", "content": "Talk like a PIRATE."}, *USER]},
               {"messages": [{"role": "system", "content": "Talk like a clerk."}, *USER]}),
    "tools": ({"tools": ["get_weather", "search"]}, {"tools": offered("search", "get_weather")},
              {"tools": offered("get_weather")}),
    "dialect": ({"dialect": "chat"}, {}, None),
    "body": ({"body": {"temperature": 0, "response_format.type": "json_object"}},
             {"temperature": 0, "response_format": {"type": "json_object"}},
             {"temperature": 0, "response_format": {"type": "text"}}),
    "headers": ({"headers": {"X-Team": "blue"}}, {"headers": {"x-team": "blue"}}, {"headers": {"x-team": "red"}}),
}


@pytest.mark.parametrize(("raw", "hit", "miss"), E2E.values(), ids=E2E.keys())
def test_each_rule_selects_and_rejects_a_real_request(make_server, http, raw, hit, miss):
    srv = make_server([Scenario.from_dict({"name": "ruled", "match": raw, "content": "matched"})])
    hit = dict(hit)
    assert text(chat(http, srv, hit.pop("messages", None), headers=hit.pop("headers", None), **hit)) == "matched"
    if miss is None:  # the dialect rule: the same words on another API
        with anthropic_sdk(srv) as client:
            reply = client.messages.create(model="claude-test", max_tokens=64, messages=USER)
        assert reply.content[0].text != "matched"
        return
    miss = dict(miss)
    answered = chat(http, srv, miss.pop("messages", None), headers=miss.pop("headers", None), **miss)
    assert text(answered) not in ("matched", 404)
    assert [e["scenario"] for e in journal(srv)] == ["ruled", "default"]


def test_anthropic_tool_results_match_by_role_turn_and_content(make_server):
    srv = make_server([
        Scenario.from_dict({"name": "after-tool", "content": "It is 21 degrees.",
                            "match": {"dialect": "messages", "turn": 1, "last_role": "tool", "tool_result": "21"}}),
    ])
    history = [
        *USER,
        {"role": "assistant", "content": [{"type": "tool_use", "id": "tu_1", "name": "get_weather", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "tu_1", "content": '{"temp": 21}'}]},
    ]
    with anthropic_sdk(srv) as client:
        reply = client.messages.create(model="claude-test", max_tokens=64, messages=history)
        other = client.messages.create(model="claude-test", max_tokens=64, messages=USER)
    assert reply.content[0].text == "It is 21 degrees."
    assert other.content[0].text != "It is 21 degrees."


# ---------------------------------------------------------------- turns ---
TOOLS = offered("get_weather")
LOOP = {
    "name": "weather-loop",
    "description": "two tool rounds, then the answer: one scenario, no sequence state",
    "match": {"tools": ["get_weather"]},
    "itl_ms": 0,
    "turns": [
        {"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]},
        {"tool_calls": [{"name": "get_weather", "arguments": {"city": "Rome"}}]},
        {"content": "Paris 21, Rome 25."},
    ],
}


def chat_loop(client: openai.OpenAI) -> tuple[list[str], str | None]:
    """An agent loop: call, run the tools it asks for, send their results, until it answers."""
    messages: list[Any] = [{"role": "user", "content": "Weather in Paris, then Rome?"}]
    cities = []
    for _ in range(6):
        reply = client.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=TOOLS)
        message = reply.choices[0].message
        if not message.tool_calls:
            return cities, message.content
        messages.append(message.model_dump(exclude_none=True))
        for call in message.tool_calls:
            city = json.loads(call.function.arguments)["city"]
            cities.append(city)
            messages.append({"role": "tool", "tool_call_id": call.id, "content": json.dumps({"city": city})})
    raise AssertionError(f"the loop never ended: {cities}")


def responses_loop(client: openai.OpenAI) -> tuple[list[str], str]:
    items: list[Any] = [{"role": "user", "content": "Weather in Paris, then Rome?"}]
    tools: Any = [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}]
    cities = []
    for _ in range(6):
        response = client.responses.create(model="gpt-4o-mini", input=items, tools=tools)
        calls = [item for item in response.output if item.type == "function_call"]
        if not calls:
            return cities, response.output_text
        for call in calls:
            cities.append(json.loads(call.arguments)["city"])
            items.append({"type": "function_call", "call_id": call.call_id, "name": call.name,
                          "arguments": call.arguments})
            items.append({"type": "function_call_output", "call_id": call.call_id, "output": '{"temp": 21}'})
    raise AssertionError(f"the loop never ended: {cities}")


@pytest.mark.parametrize("loop", [chat_loop, responses_loop], ids=["chat", "responses"])
def test_turns_drive_a_tool_loop_twice_with_no_reset(make_server, loop):
    srv = make_server([Scenario.from_dict(LOOP)])
    with openai_sdk(srv) as client:
        first = loop(client)
        second = loop(client)
    assert first == second == (["Paris", "Rome"], "Paris 21, Rome 25.")
    entries = journal(srv)
    assert [e["turn"] for e in entries] == [0, 1, 2, 0, 1, 2]
    assert {e["scenario"] for e in entries} == {"weather-loop"}
    assert all("miss" not in e and "sequence_index" not in e for e in entries)


def test_request_turns_past_the_end_repeat_the_last_entry(srv, http):
    knobs = {"turns": [{"content": "first"}, {"content": "later"}]}
    longer = [*tool_round("1"), {"role": "assistant", "content": "ok"}, {"role": "user", "content": "more"}]
    got = [text(chat(http, srv, messages, mockstream=knobs)) for messages in (USER, tool_round("1"), longer)]
    assert got == ["first", "later", "later"]
    assert [e["turn"] for e in journal(srv)] == [0, 1, 1]


def test_a_sequence_entry_may_answer_by_turn():
    scenario = Scenario.from_dict({"name": "s", "content": "base", "sequence": [
        {"fault": {"kind": "http_error", "status": 429}},
        {"turns": [{"content": "zero"}, {"content": "one"}]},
    ]})
    sequences = Sequences()
    first = resolved(scenario, {}, None, sequences, turn=1)
    assert (first.knobs["fault"].status, first.position, first.turn) == (429, 0, None)
    second = resolved(scenario, request_knobs({"itl_ms": 3}), None, sequences, turn=1)
    assert (second.knobs["content"], second.knobs["itl_ms"], second.position, second.turn) == ("one", 3.0, 1, 1)
    assert "turns" not in second.knobs and "sequence" not in second.knobs


def test_request_turns_win_over_the_scenario_turns():
    scenario = Scenario.from_dict({"name": "s", "turns": [{"content": "a", "itl_ms": 7}, {"content": "b"}]})
    done = resolved(scenario, request_knobs({"turns": [{"tokens": ["x"]}]}), None, Sequences(), turn=0)
    assert (done.knobs["tokens"], done.knobs["itl_ms"], "content" in done.knobs) == (("x",), 7.0, False)


# ---------------------------------------------------------------- recorded takes ---
def take(name: str, number: int, rules: dict[str, Any] | None = None) -> Scenario:
    body = {"id": "chatcmpl-x", "object": "chat.completion", "model": "gpt-4o-mini",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": name}, "finish_reason": "stop"}]}
    return Scenario.from_dict({
        "name": name,
        "match": rules or {"dialect": "chat", "model": r"gpt\-4o\-mini", "turn": 0, "user": r"\AWhat is the"},
        "recording": {"status": 200, "headers": {"content-type": "application/json"}, "take": number,
                      "writes": [{"at_ms": 0, "text": json.dumps(body)}]},
    })


def test_takes_of_one_request_answer_in_take_order_then_the_last_repeats(make_server, http):
    # loaded out of order, with an unrelated recording in between
    srv = make_server([take("rec-2", 2), take("other", 1, {"user": "nothing like it"}), take("rec-3", 3),
                       take("rec-1", 1)])
    answers = [text(chat(http, srv)) for _ in range(4)]
    answers.append(text(chat(http, srv, headers={SESSION: "s1"})))
    assert answers == ["rec-1", "rec-2", "rec-3", "rec-3", "rec-1"]  # each take replays its own recorded body
    assert [e["scenario"] for e in journal(srv)] == ["rec-1", "rec-2", "rec-3", "rec-3", "rec-1"]
    http.post(f"{srv.url}/_mockstream/reset").raise_for_status()
    chat(http, srv)
    assert [e["scenario"] for e in journal(srv)] == ["rec-1"]


def test_only_recordings_take_turns():
    plain = [Scenario.from_dict({"name": n, "match": {"user": "hi"}, "content": n}) for n in ("a", "b")]
    scenarios, sequences = Scenarios(plain), Sequences()
    got = [scenarios.choose({}, {}, ask(last_user="hi"), sequences=sequences).scenario.name for _ in range(3)]
    assert got == ["a", "a", "a"]
    scenarios.add(take("t2", 2, {"user": "hi"}))
    scenarios.add(take("t1", 1, {"user": "hi"}))
    scenarios.remove("a")
    scenarios.remove("b")
    got = [scenarios.choose({}, {}, ask(last_user="hi"), sequences=sequences).scenario.name for _ in range(3)]
    assert got == ["t1", "t2", "t2"]


# ---------------------------------------------------------------- X-Mockstream-Knobs ---
def test_the_knobs_header_scripts_a_client_that_cannot_set_body_fields(srv):
    knobs = {"content": "from the header", "finish_reason": "length"}
    with openai_sdk(srv, default_headers={KNOBS_HEADER: json.dumps(knobs)}) as client:
        reply = client.chat.completions.create(model="gpt-4o-mini", messages=USER)
        body_wins = client.chat.completions.create(model="gpt-4o-mini", messages=USER,
                                                   extra_body={"mockstream": {"tokens": ["from ", "the body"]}})
    assert (reply.choices[0].message.content, reply.choices[0].finish_reason) == ("from the header", "length")
    # the body's answer replaces the header's; the header's other knobs still apply
    assert (body_wins.choices[0].message.content, body_wins.choices[0].finish_reason) == ("from the body", "length")


def test_the_same_body_with_another_header_is_planned_anew(srv, http):
    got = [text(chat(http, srv, headers={KNOBS_HEADER: json.dumps({"content": word})})) for word in ("a", "b", "a")]
    assert got == ["a", "b", "a"]
    assert text(chat(http, srv, headers={KNOBS_HEADER: '{"content": "x"}'}, mockstream={"content": "y"})) == "y"


def test_the_knobs_header_works_on_the_anthropic_route(srv):
    with anthropic_sdk(srv, default_headers={KNOBS_HEADER: '{"content": "ahoy"}'}) as client:
        reply = client.messages.create(model="claude-test", max_tokens=64, messages=USER)
    assert reply.content[0].text == "ahoy"


@pytest.mark.parametrize(
    ("header", "param", "words"),
    [
        ('{"itl_ms": "fast"}', "X-Mockstream-Knobs.itl_ms", "expected a number"),
        ('{"contnet": "x"}', "X-Mockstream-Knobs.contnet", "did you mean 'content'"),
        ('{"turns": [{"sequence": [{}]}]}', "X-Mockstream-Knobs.turns[0].sequence", "inside a turns entry"),
        ('["content"]', "X-Mockstream-Knobs", "expected an object"),
        ("{content: x}", "X-Mockstream-Knobs", "not valid JSON"),
    ],
)
def test_a_bad_knobs_header_is_a_400_naming_the_field(srv, http, header, param, words):
    response = chat(http, srv, headers={KNOBS_HEADER: header})
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["param"], error["code"]) == (param, "invalid_mockstream_knob")
    assert words in error["message"]


# ---------------------------------------------------------------- misses: strict, on_miss, the report ---
NEAR = [
    Scenario.from_dict({"name": "far", "match": {"dialect": "responses", "user": "nope", "turn": 3}}),
    Scenario.from_dict({"name": "greeting", "match": {"user": r"\Ahi\Z", "turn": 1}, "content": "hello"}),
    Scenario.from_dict({"name": "team", "match": {"headers": {"X-Team": "blue"}, "user": "x"}}),
    Scenario.from_dict({"name": "fourth", "match": {"model": "gpt-4o-mini", "user": "y", "turn": 2}}),
    Scenario.from_dict({"name": "plain", "content": "no rules: never in a report"}),
]
HELLO = [{"role": "user", "content": "hello"}]


def test_strict_refuses_a_miss_in_the_chat_shape_naming_the_closest(make_server):
    srv = make_server(NEAR, strict=True)
    with openai_sdk(srv) as client, pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    error = info.value.body
    assert isinstance(error, dict)
    assert error["code"] == "no_scenario_matched"
    message = error["message"]
    assert message.startswith("No scenario matched this request. Closest: greeting (user: wanted '\\\\Ahi\\\\Z', "
                              "got 'hello'; turn: wanted 1, got 0); team (")
    assert "far" not in message  # three failed rules: not among the closest three
    assert "plain" not in message
    [entry] = settled(srv)
    assert (entry["status"], entry["outcome"]) == (404, "unmatched")
    assert [item["scenario"] for item in entry["miss"]] == ["greeting", "team", "fourth"]
    assert entry["miss"][0]["failed"] == [
        {"rule": "user", "wanted": r"\Ahi\Z", "got": "hello"},
        {"rule": "turn", "wanted": 1, "got": 0},
    ]


def test_strict_refuses_a_miss_in_the_anthropic_shape(make_server, http):
    srv = make_server(NEAR, on_miss="error")
    with anthropic_sdk(srv) as client, pytest.raises(anthropic.NotFoundError) as info:
        client.messages.create(model="gpt-4o-mini", max_tokens=64, messages=HELLO)
    body = info.value.body
    assert isinstance(body, dict) and body["type"] == "error"
    assert body["error"]["type"] == "not_found_error"
    assert "Closest: greeting (user: wanted" in body["error"]["message"]
    assert "dialect: wanted 'responses', got 'messages'" not in body["error"]["message"]  # far is not among them
    why = [{"role": "user", "content": "why"}]
    response = http.post(f"{srv.url}/v1/messages", json={"model": "gpt-4o-mini", "max_tokens": 5, "messages": why})
    assert response.status_code == 404
    assert response.json()["error"]["message"].startswith("No scenario matched this request. Closest: fourth "
                                                          "(turn: wanted 2, got 0); ")


def test_strict_still_answers_what_is_named_scripted_or_matched(make_server, http):
    srv = make_server(NEAR, strict=True)
    hi = [*tool_round("1")[:2], {"role": "user", "content": "hi"}]
    assert text(chat(http, srv, hi)) == "hello"
    assert text(chat(http, srv, HELLO, headers={"X-Mockstream-Scenario": "plain"})) == "no rules: never in a report"
    assert text(chat(http, srv, HELLO, mockstream={"content": "scripted"})) == "scripted"
    assert text(chat(http, srv, HELLO, mockstream={"itl_ms": 0})) == 404  # timing alone scripts no answer
    unknown = chat(http, srv, HELLO, headers={"X-Mockstream-Scenario": "greting"})
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "scenario_not_found"
    assert "Did you mean 'greeting'?" in unknown.json()["error"]["message"]
    outcomes = [(e["scenario"], e["outcome"], "miss" in e) for e in journal(srv)]
    assert outcomes == [("greeting", "completed", False), ("plain", "completed", False),
                        ("default", "completed", False), (None, "unmatched", True), (None, "rejected", False)]


def test_without_strict_the_default_answers_and_the_journal_keeps_the_report(make_server, http):
    srv = make_server(NEAR)
    answered = chat(http, srv, HELLO)
    assert answered.status_code == 200
    [entry] = settled(srv)
    assert (entry["scenario"], entry["outcome"]) == ("default", "completed")
    assert entry["miss"][0] == {"scenario": "greeting", "failed": [
        {"rule": "user", "wanted": r"\Ahi\Z", "got": "hello"}, {"rule": "turn", "wanted": 1, "got": 0}]}
    [kept] = srv.call(lambda: list(srv.state.journal))
    assert kept.miss == entry["miss"]


def test_a_report_left_for_later_judges_the_scenarios_loaded_when_the_request_came(make_server, http):
    srv = make_server(NEAR)
    chat(http, srv, HELLO)
    [kept] = srv.call(lambda: list(srv.state.journal))
    copy = srv.call(lambda: replace(kept))  # what the pytest plugin hands a test
    srv.call(lambda: srv.state.scenarios.remove("greeting"))
    assert copy.miss is not None and copy.miss[0]["scenario"] == "greeting"
    assert kept.miss == copy.miss
    assert settled(srv)[0]["miss"] == copy.miss


def test_a_server_with_no_rules_marks_a_fall_through_with_an_empty_report(srv, http):
    chat(http, srv)
    chat(http, srv, mockstream={"content": "scripted"})
    first, second = journal(srv)
    assert first["miss"] == [] and "miss" not in second


def test_a_strict_server_with_no_rules_says_so(make_server, http):
    srv = make_server([Scenario.from_dict({"name": "plain", "content": "x"})], strict=True)
    response = chat(http, srv)
    assert response.status_code == 404
    assert response.json()["error"]["message"] == (
        "No scenario matched this request: no loaded scenario has match rules (loaded: plain)."
    )


def test_a_long_text_is_shortened_in_the_report():
    scenarios = Scenarios(NEAR)
    report = scenarios.report(ask(last_user="z" * 1000), {})
    got = report[0]["failed"][0]["got"]
    assert got.startswith("zzz") and len(got) < 250
    error = scenarios.unmatched(report)
    assert isinstance(error, Unmatched) and error.status == 404 and error.report is report
    assert len(error.message) < 1000


class Upstream:
    """A stand-in for the recording proxy: answers every request it is handed, and keeps what it saw."""

    def __init__(self, srv: MockServer):
        self.srv = srv
        self.seen: list[tuple[str, bytes | None, str, Any]] = []

    async def forward(self, request: web.Request, raw: bytes | None, dialect: Any, entry: Any) -> web.StreamResponse:
        self.seen.append((request.path, raw, dialect.name, entry.extra.get("miss")))
        self.srv.state.journal.close(entry, 299, "proxied", 0.0)
        return web.json_response({"from": "upstream"}, status=299)


def test_on_miss_proxy_hands_a_miss_to_the_proxy(make_server, http):
    srv = make_server(NEAR, on_miss="proxy")
    assert text(chat(http, srv, HELLO)) != 299  # no proxy set: the default answers
    upstream = srv.state.proxy = Upstream(srv)
    missed = chat(http, srv, HELLO)
    assert (missed.status_code, missed.json()) == (299, {"from": "upstream"})
    assert text(chat(http, srv, [{"role": "user", "content": "hi"}], mockstream={"turns": [{"content": "t"}]})) == "t"
    [(path, raw, dialect, miss)] = upstream.seen
    assert (path, dialect, miss[0]["scenario"]) == ("/v1/chat/completions", "chat", "greeting")
    assert raw is not None and json.loads(raw)["messages"] == HELLO
    assert [e["outcome"] for e in journal(srv)] == ["completed", "proxied", "completed"]


def test_record_all_sends_every_api_request_to_the_proxy_unread(make_server, http):
    srv = make_server(NEAR, record_all=True, strict=True)
    upstream = srv.state.proxy = Upstream(srv)
    matched = chat(http, srv, [{"role": "user", "content": "hi"}])
    odd = http.post(f"{srv.base_url}/chat/completions", content=b"not json", headers={"content-type": "text/plain"})
    assert (matched.status_code, odd.status_code) == (299, 299)
    assert [(raw, miss) for _, raw, _, miss in upstream.seen][1] == (b"not json", None)
    assert journal(srv)[1]["body"] == "not json"
    assert http.get(f"{srv.url}/_mockstream/requests").status_code == 200  # admin routes are not proxied


def test_on_miss_is_checked_by_name():
    with pytest.raises(ValueError, match=r"on_miss: unknown value 'prxy' \(did you mean 'proxy'\?\); expected one of"):
        Settings(on_miss="prxy")
    with pytest.raises(ValueError, match="on_miss"):
        MockServer(on_miss="never")


# ---------------------------------------------------------------- validation ---
def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def problems(path: Path) -> str:
    with pytest.raises(ScenarioError) as info:
        load_scenarios(path)
    return str(info.value)


@pytest.mark.parametrize(
    ("match", "line"),
    [
        ("{turn: -1}", "match.turn: expected an integer >= 0, got -1"),
        ("{turn: 'one'}", "match.turn: expected an integer >= 0, got 'one'"),
        ("{turn: true}", "match.turn: expected an integer >= 0, got True"),
        ("{trun: 1}", "match.trun: unknown field (did you mean 'turn'?); expected one of: model, user, headers, "
                      "dialect, turn, last_role, tool_result, system, tools, body"),
        ("{last_role: tools}", "match.last_role: unknown role 'tools' (did you mean 'tool'?); expected one of: "
                               "user, tool, assistant, system"),
        ("{dialect: caht}", "match.dialect: unknown dialect 'caht' (did you mean 'chat'?)"),
        ("{tool_result: '(unclosed'}", "match.tool_result: not a valid regular expression"),
        ("{system: '*x'}", "match.system: not a valid regular expression"),
        ("{tools: get_weather}", "match.tools: expected an array of tool names"),
        ("{tools: ['']}", "match.tools: expected an array of tool names"),
        ("{body: {response_format.type: '[json'}}", "match.body.response_format.type: not a valid regular expression"),
        ("{body: {'a..b': 1}}", "match.body.a..b: expected a dotted path"),
        ("{body: []}", "match.body: expected an object of dotted path -> value"),
    ],
)
def test_bad_rules_name_the_file_and_field(tmp_path, match, line):
    path = write(tmp_path, f"name: t\nmatch: {match}\n")
    assert f"{path}: {line}" in problems(path)


def test_every_bad_rule_and_turn_is_reported_at_once(tmp_path):
    path = write(tmp_path, """
name: t
match: {turn: -2, last_role: bot, system: '(', body: {x: '['}}
turns:
  - {content: a}
  - {sequence: [{content: b}], turns: [{content: c}], scenario: other}
  - {itl_ms: fast}
""")
    lines = problems(path).splitlines()
    assert all(line.startswith(f"{path}: ") for line in lines)
    fields = [line.removeprefix(f"{path}: ").partition(":")[0] for line in lines]
    assert sorted(fields) == sorted([
        "match.turn", "match.last_role", "match.system", "match.body.x",
        "turns[1].sequence", "turns[1].turns", "turns[1].scenario", "turns[2].itl_ms",
    ])
    assert f"{path}: turns[1].turns: turns cannot appear inside a turns entry" in lines


@pytest.mark.parametrize("turns", ["[]", "{content: a}", "[{cycle: true}]"])
def test_turns_must_be_a_list_of_knob_objects(tmp_path, turns):
    path = write(tmp_path, f"name: t\nturns: {turns}\n")
    assert f"{path}: turns" in problems(path)


# ---------------------------------------------------------------- the JSON Schema agrees ---
WRITES = [{"at_ms": 0, "text": "data: {}\n\n"}, {"at_ms": 12.5, "base64": "4p4="}]
RECORDING = {"status": 200, "headers": {"content-type": "text/event-stream"}, "end": "upstream_closed", "take": 2,
             "upstream": "https://api.openai.com", "writes": WRITES, "request": {"model": "gpt-4o-mini"}}
SCHEMA_GOOD = {
    "every new rule": {"name": "a", "match": {
        "dialect": "responses", "turn": 0, "last_role": "tool", "tool_result": "21", "system": "x", "tools": [],
        "body": {"temperature": 0, "response_format.type": "json_.*", "n": None}}},
    "turns": {"name": "a", "turns": [{"tool_calls": [{"name": "f"}]}, {"content": "done", "itl_ms": 1}]},
    "turns in a sequence entry": {"name": "a", "sequence": [{"turns": [{"content": "x"}]}, {}]},
    "a recording": {"name": "a", "match": {"dialect": "chat", "turn": 0}, "recording": RECORDING,
                    "replay_speed": 2},
}
SCHEMA_BAD = {
    "a negative turn": {"name": "a", "match": {"turn": -1}},
    "an unknown role": {"name": "a", "match": {"last_role": "bot"}},
    "an unknown dialect": {"name": "a", "match": {"dialect": "caht"}},
    "tools not a list": {"name": "a", "match": {"tools": "f"}},
    "an empty body rule": {"name": "a", "match": {"body": {}}},
    "empty turns": {"name": "a", "turns": []},
    "turns in turns": {"name": "a", "turns": [{"turns": [{}]}]},
    "a sequence in turns": {"name": "a", "turns": [{"sequence": [{}]}]},
    "cycle in turns": {"name": "a", "turns": [{"cycle": True}]},
    "a write with text and base64": {"name": "a", "recording": {"status": 200, "writes": [
        {"at_ms": 0, "text": "x", "base64": "eA=="}]}},
    "a write with neither": {"name": "a", "recording": {"status": 200, "writes": [{"at_ms": 0}]}},
    "a recording without a status": {"name": "a", "recording": {"writes": []}},
    "an unknown ending": {"name": "a", "recording": {"status": 200, "end": "finished"}},
    "an unknown recording field": {"name": "a", "recording": {"status": 200, "bytes": []}},
}


def _schema_errors(document: Any) -> tuple[list[str], list[str]]:
    schema = scenario_schema()
    draft_07 = {key: value for key, value in schema.items() if key != "$schema"}
    return ([e.message for e in Draft202012Validator(schema).iter_errors(document)],
            [e.message for e in Draft7Validator(draft_07).iter_errors(document)])


def _validator_problems(document: Any) -> list[str]:
    try:
        parse_scenarios(document, "<test>")
    except ScenarioError as exc:
        return exc.lines
    return []


@pytest.mark.parametrize("document", SCHEMA_GOOD.values(), ids=SCHEMA_GOOD.keys())
def test_new_fields_pass_the_schema_and_the_validator(document):
    assert _schema_errors(document) == ([], [])
    assert _validator_problems(document) == []


@pytest.mark.parametrize("document", SCHEMA_BAD.values(), ids=SCHEMA_BAD.keys())
def test_bad_new_fields_fail_the_schema_and_the_validator(document):
    latest, draft_07 = _schema_errors(document)
    assert latest and draft_07
    assert _validator_problems(document) != []
