"""The plan layer without a server: knobs + a request + a seed -> one concrete, deterministic Plan; the seed of
a request; due times; which scenario answers and which sequence step.

Knobs go through `request_knobs` first, so each plan is built from exactly what the server would pass on.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from mockstream.errors import RequestError
from mockstream.plan import Ask, make_plan, request_seed
from mockstream.plan.content import tokenize
from mockstream.plan.matching import SCENARIO_HEADER, Scenarios, Sequences, merge, resolved
from mockstream.plan.schema import DEFAULT, Scenario, request_knobs
from mockstream.plan.timing import Pacing

TOKENS = ["One", " two", " three", " four", " five"]
WEATHER = {"name": "get_weather", "arguments": {"city": "Zürich", "days": [1, 2]}}
ASK = Ask(model="gpt-4o-mini", stream=True, prompt_tokens=7, last_user="hello")


def plan(raw: dict[str, Any], ask: Ask = ASK, *, seed: int = 1, speed: float = 1.0, scenario: str = "s"):
    return make_plan(request_knobs(raw), ask, seed=seed, speed=speed, scenario=scenario)


def first(iterator, count: int) -> list:
    return list(itertools.islice(iterator, count))


# ---------------------------------------------------------------- make_plan: determinism ---
def test_the_same_seed_gives_the_same_plan():
    raw = {"random_tokens": 30, "tool_calls": [WEATHER], "ttft_ms": 10, "itl_ms": 5, "jitter_ms": 3}
    one, two = plan(raw, seed=42), plan(raw, seed=42)
    assert one == two
    assert first(one.due_times(), 40) == first(two.due_times(), 40)
    assert one.uid.isalnum() and len(one.uid) == 29
    assert one.request_id.startswith("req_") and len(one.request_id) == len("req_") + 32
    assert one.system_fingerprint.startswith("fp_")
    assert 1_700_000_000 <= one.created < 1_760_000_000


def test_another_seed_gives_other_ids_and_other_random_text_but_the_same_scripted_text():
    raw = {"random_tokens": 30, "tool_calls": [WEATHER]}
    one, two = plan(raw, seed=1), plan(raw, seed=2)
    assert one.uid != two.uid
    assert one.request_id != two.request_id
    assert one.created != two.created
    assert one.system_fingerprint != two.system_fingerprint
    assert one.seed != two.seed
    assert one.choices[0].tool_calls[0].id != two.choices[0].tool_calls[0].id
    assert one.choices[0].tokens != two.choices[0].tokens  # seeded Faker text
    scripted_one, scripted_two = plan({"tokens": TOKENS}, seed=1), plan({"tokens": TOKENS}, seed=2)
    assert list(scripted_one.choices[0].tokens) == list(scripted_two.choices[0].tokens) == TOKENS


def test_the_plan_carries_the_request_and_the_scenario():
    p = plan({"content": "Hello there, world."}, scenario="greeting")
    assert p.scenario == "greeting"
    assert p.model == "gpt-4o-mini"
    assert p.ask is ASK
    [choice] = p.choices
    assert choice.index == 0
    assert list(choice.tokens) == tokenize("Hello there, world.")
    assert choice.text == "Hello there, world."
    assert choice.finish_reason == "stop"
    assert p.usage.prompt_tokens == 7
    assert p.usage.completion_tokens == len(choice.tokens)
    assert p.usage.total_tokens == 7 + len(choice.tokens)
    assert p.fault is None
    assert p.done is True
    assert plan({"content": "x", "done": False}).done is False


def test_the_finish_reason_knob_is_kept():
    assert plan({"tokens": TOKENS, "finish_reason": "content_filter"}).choices[0].finish_reason == "content_filter"


# ---------------------------------------------------------------- make_plan: max_tokens ---
def test_max_tokens_cuts_the_text_and_ends_with_length():
    p = plan({"tokens": TOKENS}, Ask("m", True, max_tokens=3))
    [choice] = p.choices
    assert list(choice.tokens) == TOKENS[:3]
    assert choice.finish_reason == "length"
    assert p.usage.completion_tokens == 3


def test_max_tokens_overrides_a_scripted_finish_reason_when_it_cuts():
    p = plan({"tokens": TOKENS, "finish_reason": "content_filter"}, Ask("m", True, max_tokens=2))
    assert p.choices[0].finish_reason == "length"


def test_max_tokens_exactly_the_answer_does_not_cut():
    p = plan({"tokens": TOKENS}, Ask("m", True, max_tokens=len(TOKENS)))
    assert list(p.choices[0].tokens) == TOKENS
    assert p.choices[0].finish_reason == "stop"


def test_max_tokens_cuts_content_first_then_tool_call_arguments():
    full = plan({"tokens": ["Checking", "."], "tool_calls": [WEATHER, {"name": "second", "arguments": {}}]})
    fragments = full.choices[0].tool_calls[0].fragments
    cut = plan({"tokens": ["Checking", "."], "tool_calls": [WEATHER, {"name": "second", "arguments": {}}]},
               Ask("m", True, max_tokens=2 + 3))
    [choice] = cut.choices
    assert list(choice.tokens) == ["Checking", "."]
    [call] = choice.tool_calls  # the second call is past the budget
    assert call.name == "get_weather"
    assert call.fragments == fragments[:3]
    assert call.arguments == "".join(fragments[:3])
    assert call.id == full.choices[0].tool_calls[0].id
    assert choice.finish_reason == "length"
    assert cut.usage.completion_tokens == 5


# ---------------------------------------------------------------- make_plan: tool calls ---
def test_tool_calls_stream_as_the_tokens_of_their_arguments():
    p = plan({"content": "Let me look.", "tool_calls": [WEATHER, {"name": "get_time", "arguments": "{}",
                                                                     "id": "call_mine"}]})
    [choice] = p.choices
    weather, clock = choice.tool_calls
    assert weather.name == "get_weather"
    assert weather.arguments == '{"city": "Zürich", "days": [1, 2]}'
    assert weather.fragments == tuple(tokenize(weather.arguments))
    assert len(weather.fragments) > 5
    assert weather.id.startswith("call_") and len(weather.id) == len("call_") + 24
    assert clock.id == "call_mine"  # a scripted id is kept
    assert clock.fragments == ("{", "}")
    assert choice.finish_reason == "tool_calls"
    assert choice.completion_tokens == len(choice.tokens) + len(weather.fragments) + len(clock.fragments)


def test_tool_calls_alone_have_no_text():
    [choice] = plan({"tool_calls": [WEATHER]}).choices
    assert list(choice.tokens) == []
    assert choice.text == ""
    assert len(choice.tool_calls) == 1


# ---------------------------------------------------------------- make_plan: n ---
def test_n_choices_each_get_the_answer_and_an_index():
    p = plan({"tokens": TOKENS}, Ask("m", True, n=3))
    assert [c.index for c in p.choices] == [0, 1, 2]
    assert all(list(c.tokens) == TOKENS for c in p.choices)
    assert p.usage.completion_tokens == 3 * len(TOKENS)


def test_n_choices_of_random_text_differ_from_each_other():
    p = plan({"random_tokens": 20}, Ask("m", True, n=2))
    one, two = p.choices
    assert len(one.tokens) == len(two.tokens) == 20
    assert list(one.tokens) != list(two.tokens)


def test_n_choices_get_their_own_tool_call_ids():
    p = plan({"tool_calls": [WEATHER]}, Ask("m", True, n=2))
    assert p.choices[0].tool_calls[0].id != p.choices[1].tool_calls[0].id


# ---------------------------------------------------------------- make_plan: pacing and delivery ---
def test_pacing_knobs_become_seconds_divided_by_speed():
    raw = {"tokens": TOKENS, "ttft_ms": 200, "itl_ms": 20, "jitter_ms": 4}
    assert plan(raw, speed=1).pacing == Pacing(0.2, 0.02, 0.004)
    halved = plan(raw, speed=2).pacing
    assert halved.ttft == pytest.approx(0.1) and halved.itl == pytest.approx(0.01)
    assert halved.jitter == pytest.approx(0.002)
    assert plan(raw, speed=0).pacing == Pacing()  # speed 0 removes every delay


def test_delivery_knobs_go_to_the_delivery():
    p = plan({"tokens": TOKENS, "chunk_bytes": 3, "chunk_gap_ms": 7, "events_per_write": 2, "line_ending": "crlf"})
    assert p.delivery.chunk_bytes == 3
    assert p.delivery.chunk_gap == pytest.approx(0.007)
    assert p.delivery.events_per_write == 2
    assert p.delivery.line_ending == "crlf"
    plain = plan({"tokens": TOKENS}).delivery
    assert (plain.chunk_bytes, plain.events_per_write, plain.line_ending) == (None, 1, "lf")


def test_due_times_without_jitter_are_ttft_plus_k_itl():
    p = plan({"tokens": TOKENS, "ttft_ms": 100, "itl_ms": 25})
    assert first(p.due_times(), 6) == pytest.approx([0.1 + k * 0.025 for k in range(6)])


def test_jittered_due_times_are_seeded_monotonic_and_within_the_jitter():
    raw = {"tokens": TOKENS, "ttft_ms": 50, "itl_ms": 10, "jitter_ms": 8}
    times = first(plan(raw, seed=3).due_times(), 300)
    assert times == first(plan(raw, seed=3).due_times(), 300)  # the same seed draws the same jitter
    assert times != first(plan(raw, seed=4).due_times(), 300)
    assert all(b >= a for a, b in itertools.pairwise(times)), "a token is due before the one before it"
    offsets = [t - (0.05 + k * 0.01) for k, t in enumerate(times)]
    assert all(-0.008 - 1e-9 <= off <= 0.008 + 1e-9 for off in offsets), (min(offsets), max(offsets))
    assert max(offsets) - min(offsets) > 0.008, "the jitter was not applied"


def test_the_plan_duration_is_when_the_longest_choice_ends():
    p = plan({"tokens": TOKENS, "ttft_ms": 100, "itl_ms": 10})
    assert p.duration == pytest.approx(0.1 + 4 * 0.01)
    with_call = plan({"tokens": ["a"], "tool_calls": [{"name": "f", "arguments": "{}"}], "ttft_ms": 100,
                      "itl_ms": 10})
    slots = with_call.choices[0].completion_tokens + 1  # a tool call's head takes a slot of its own
    assert with_call.duration == pytest.approx(0.1 + (slots - 1) * 0.01)
    assert plan({"content": ""}).duration == 0.0


# ---------------------------------------------------------------- Pacing ---
def test_pacing_due_times_and_duration():
    pacing = Pacing(ttft=0.5, itl=0.1)
    assert first(pacing.due_times(None), 4) == pytest.approx([0.5, 0.6, 0.7, 0.8])
    assert pacing.duration(0) == 0.0
    assert pacing.duration(1) == pytest.approx(0.5)
    assert pacing.duration(4) == pytest.approx(0.8)
    assert Pacing.from_knobs({"ttft_ms": 500, "itl_ms": 100}, speed=1) == pacing
    assert Pacing.from_knobs({"ttft_ms": 500}, speed=0) == Pacing()


def test_pacing_jitter_never_goes_back_in_time():
    import random

    pacing = Pacing(ttft=0.0, itl=0.001, jitter=0.01)  # jitter ten times the gap
    times = first(pacing.due_times(random.Random(9)), 500)
    assert all(b >= a for a, b in itertools.pairwise(times))
    assert times == first(pacing.due_times(random.Random(9)), 500)
    assert times != first(pacing.due_times(random.Random(10)), 500)


# ---------------------------------------------------------------- request_seed ---
BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": True}


def with_knobs(**knobs: Any) -> dict[str, Any]:
    return {**BODY, "mockstream": knobs}


@pytest.mark.parametrize(("knob", "value"), [
    ("ttft_ms", 500), ("itl_ms", 20), ("jitter_ms", 5), ("chunk_bytes", 1), ("chunk_gap_ms", 3),
    ("events_per_write", 4), ("line_ending", "crlf"), ("fault", {"kind": "truncate", "at_token": 2}),
])
def test_delivery_knobs_stay_out_of_the_seed(knob, value):
    plain = request_seed(0, with_knobs(content="Hello"), "s")
    assert request_seed(0, with_knobs(content="Hello", **{knob: value}), "s") == plain


@pytest.mark.parametrize("knobs", [
    {"content": "Goodbye"}, {"tokens": ["Hello"]}, {"random_tokens": 5},
    {"content": "Hello", "finish_reason": "length"},
    {"content": "Hello", "done": False}, {"content": "Hello", "tool_calls": [WEATHER]},
], ids=["content", "tokens", "random_tokens", "finish_reason", "done", "tool_calls"])
def test_content_knobs_change_the_seed(knobs):
    assert request_seed(0, with_knobs(**knobs), "s") != request_seed(0, with_knobs(content="Hello"), "s")


def test_the_seed_depends_on_the_server_seed_the_scenario_and_the_request():
    base = request_seed(0, BODY, "s")
    assert request_seed(0, dict(BODY), "s") == base
    assert request_seed(0, {**BODY, "messages": [{"role": "user", "content": "other"}]}, "s") != base
    assert request_seed(1, BODY, "s") != base
    assert request_seed(0, BODY, "t") != base
    assert request_seed(0, {**BODY, "model": "gpt-4o"}, "s") != base
    assert 0 <= base < 2**64


def test_the_seed_ignores_the_order_of_keys():
    reordered = {"stream": True, "messages": BODY["messages"], "model": "gpt-4o-mini"}
    assert request_seed(0, reordered, "s") == request_seed(0, BODY, "s")


def test_a_body_that_is_not_an_object_still_has_a_seed():
    assert request_seed(0, [1, 2], "s") == request_seed(0, [1, 2], "s")
    assert request_seed(0, [1, 2], "s") != request_seed(0, [1, 3], "s")


# ---------------------------------------------------------------- Scenarios.choose ---
def scenario(name: str, **raw: Any) -> Scenario:
    return Scenario.from_dict({"name": name, "content": f"I am {name}.", **raw})


def ask(model: str = "gpt-4o-mini", user: str = "hello") -> Ask:
    return Ask(model=model, stream=True, last_user=user)


@pytest.fixture
def scenarios() -> Scenarios:
    """A header target, a knob target, one named like a model, a fallback and two with match rules."""
    loaded = Scenarios([
        scenario("by-header"),
        scenario("by-knob"),
        scenario("gpt-special"),
        scenario("scripted"),
        scenario("matches-weather", match={"user": "weather"}),
        scenario("matches-header", match={"headers": {"X-Team": "blue"}}),
        scenario("matches-weather-too", match={"user": "weather"}),
    ])
    return loaded


def chosen(scenarios: Scenarios, headers: dict | None = None, knobs: dict | None = None, **asked: Any) -> str:
    return scenarios.choose(headers or {}, knobs or {}, ask(**asked)).scenario.name


def test_the_header_wins_over_everything(scenarios):
    scenarios.fallback = "scripted"
    assert chosen(scenarios, {SCENARIO_HEADER: "by-header"}, {"scenario": "by-knob"}, model="gpt-special",
                  user="weather") == "by-header"


def test_the_knob_wins_over_the_model_name(scenarios):
    scenarios.fallback = "scripted"
    assert chosen(scenarios, {}, {"scenario": "by-knob"}, model="gpt-special", user="weather") == "by-knob"


def test_the_model_name_wins_over_the_fallback(scenarios):
    scenarios.fallback = "scripted"
    assert chosen(scenarios, model="gpt-special", user="weather") == "gpt-special"


def test_the_fallback_wins_over_match_rules(scenarios):
    scenarios.fallback = "scripted"
    assert chosen(scenarios, user="what is the weather") == "scripted"


def test_match_rules_win_over_the_default_in_load_order(scenarios):
    assert chosen(scenarios, user="what is the weather") == "matches-weather"
    assert chosen(scenarios, {"x-team": "blue"}) == "matches-header"
    assert chosen(scenarios, {"X-Team": "BLUE"}) == "default"  # header values match exactly


def test_nothing_matches_the_default_answers(scenarios):
    assert scenarios.choose({}, {}, ask()) == (DEFAULT, True)
    replaced = Scenarios([scenario("default")])
    assert replaced.choose({}, {}, ask()).scenario.knobs["content"] == "I am default."


def test_naming_an_unknown_scenario_is_a_404_with_a_hint(scenarios):
    with pytest.raises(RequestError) as info:
        scenarios.choose({SCENARIO_HEADER: "by-heder"}, {}, ask())
    assert info.value.status == 404
    assert info.value.param == SCENARIO_HEADER
    assert "Did you mean 'by-header'?" in info.value.message
    with pytest.raises(RequestError) as info:
        scenarios.choose({}, {"scenario": "nope"}, ask())
    assert info.value.param == "mockstream.scenario"


def test_removing_the_fallback_scenario_clears_the_fallback(scenarios):
    scenarios.fallback = "scripted"
    scenarios.remove("scripted")
    assert scenarios.fallback is None
    assert chosen(scenarios) == "default"
    assert "scripted" not in scenarios and "default" in scenarios


# ---------------------------------------------------------------- resolve and sequences ---
FLAKY = {"name": "flaky", "ttft_ms": 5, "sequence": [{"content": "one"}, {"content": "two"},
                                                     {"content": "three"}]}


def contents(scenario: Scenario, sequences: Sequences, calls: int, knobs: dict | None = None,
             session: str | None = None) -> list[tuple[str, int | None]]:
    out = []
    for _ in range(calls):
        merged, position, _ = resolved(scenario, request_knobs(knobs or {}), session, sequences)
        out.append((merged.get("content"), position))
    return out


def test_a_sequence_steps_then_repeats_its_last_entry():
    flaky, sequences = Scenario.from_dict(FLAKY), Sequences()
    assert contents(flaky, sequences, 5) == [("one", 0), ("two", 1), ("three", 2), ("three", 2), ("three", 2)]
    assert "sequence" in flaky.knobs, "resolving must not change the scenario"


def test_a_cycling_sequence_starts_over():
    cycling, sequences = Scenario.from_dict({**FLAKY, "cycle": True}), Sequences()
    assert [c for c, _ in contents(cycling, sequences, 5)] == ["one", "two", "three", "one", "two"]


def test_sessions_keep_their_own_positions_and_reset_starts_over():
    flaky, sequences = Scenario.from_dict(FLAKY), Sequences()
    assert contents(flaky, sequences, 2, session="a") == [("one", 0), ("two", 1)]
    assert contents(flaky, sequences, 1, session="b") == [("one", 0)]
    assert contents(flaky, sequences, 1, session="a") == [("three", 2)]
    sequences.reset()
    assert contents(flaky, sequences, 1, session="a") == [("one", 0)]


def test_the_scenarios_knobs_apply_under_each_entry_and_the_request_over_them():
    flaky, sequences = Scenario.from_dict(FLAKY), Sequences()
    merged, _, _ = resolved(flaky, request_knobs({"itl_ms": 9}), None, sequences)
    assert (merged["content"], merged["ttft_ms"], merged["itl_ms"]) == ("one", 5, 9)
    assert "sequence" not in merged
    merged, _, _ = resolved(flaky, request_knobs({"tokens": ["mine"]}), None, sequences)
    assert merged["tokens"] == ("mine",) and "content" not in merged  # the request's answer replaces it


def test_an_inline_sequence_in_the_request_steps_on_its_own():
    plain, sequences = Scenario.from_dict({"name": "plain", "content": "base"}), Sequences()
    knobs = {"sequence": [{"content": "a"}, {"content": "b"}]}
    assert contents(plain, sequences, 3, knobs) == [("a", 0), ("b", 1), ("b", 1)]
    other = {"sequence": [{"content": "x"}, {"content": "y"}]}
    assert contents(plain, sequences, 1, other) == [("x", 0)]  # another sequence has its own position
    assert contents(plain, sequences, 1) == [("base", None)]


def test_merge_replaces_the_whole_answer_and_drops_the_scenario_name():
    base = {"content": "text", "tool_calls": ({"name": "f", "arguments": "{}"},), "ttft_ms": 3}
    assert merge(base, {"tool_calls": ({"name": "g", "arguments": "{}"},)}) == {
        "tool_calls": ({"name": "g", "arguments": "{}"},), "ttft_ms": 3}
    assert merge(base, {"itl_ms": 1, "scenario": "x"}) == {**base, "itl_ms": 1}
