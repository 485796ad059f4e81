"""The scenario schema: files in YAML and JSON, and errors that name the file, the field and the choices."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest
from helpers import MOCKSTREAM

from mockstream import Scenario, ScenarioError, load_scenarios
from mockstream.plan import Ask
from mockstream.plan.rules import Match
from mockstream.plan.schema import FINISH_REASONS, load_file, parse_scenarios

REPO_SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"
SHIPPED = sorted(p for p in REPO_SCENARIOS.glob("*") if p.suffix in (".yaml", ".yml", ".json"))


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def load_error(*paths: Path) -> ScenarioError:
    with pytest.raises(ScenarioError) as info:
        load_scenarios(*paths)
    return info.value


# ---------------------------------------------------------------- valid files ---
SINGLE = {"version": 1, "name": "hello", "description": "says hello", "content": "Hello!", "itl_ms": 20}
LIST = [{"name": "one", "tokens": ["你", "好"]}, {"name": "two", "random_tokens": 5, "locale": "de_DE"}]
WRAPPED = {"version": 1, "scenarios": [{"name": "three", "finish_reason": "length"},
                                        {"name": "four", "tool_calls": [{"name": "f", "arguments": {"a": 1}}]}]}


def _yaml(document) -> str:
    import yaml

    return yaml.safe_dump(document, allow_unicode=True)


@pytest.mark.parametrize(("suffix", "dump"), [(".yaml", _yaml), (".yml", _yaml), (".json", json.dumps)])
def test_a_file_holds_one_scenario(tmp_path, suffix, dump):
    path = write(tmp_path, "hello" + suffix, dump(SINGLE))
    [scenario] = load_scenarios(path)
    assert scenario.name == "hello"
    assert scenario.description == "says hello"
    assert scenario.knobs == {"content": "Hello!", "itl_ms": 20.0}
    assert scenario.source == str(path)


@pytest.mark.parametrize(("suffix", "dump"), [(".yaml", _yaml), (".json", json.dumps)])
def test_a_file_holds_a_list(tmp_path, suffix, dump):
    path = write(tmp_path, "list" + suffix, dump(LIST))
    one, two = load_scenarios(path)
    assert (one.name, two.name) == ("one", "two")
    assert one.knobs["tokens"] == ("你", "好")
    assert two.knobs == {"random_tokens": 5, "locale": "de_DE"}


@pytest.mark.parametrize(("suffix", "dump"), [(".yaml", _yaml), (".json", json.dumps)])
def test_a_file_holds_version_and_scenarios(tmp_path, suffix, dump):
    path = write(tmp_path, "wrapped" + suffix, dump(WRAPPED))
    three, four = load_scenarios(path)
    assert three.knobs == {"finish_reason": "length"}
    assert four.knobs["tool_calls"] == ({"name": "f", "arguments": '{"a": 1}'},)


def test_a_directory_loads_its_scenario_files_in_name_order(tmp_path):
    write(tmp_path, "b.json", json.dumps(SINGLE))
    write(tmp_path, "a.yaml", _yaml(LIST))
    write(tmp_path, "c.yml", _yaml(WRAPPED))
    write(tmp_path, "README.md", "not a scenario: ignored")
    assert [s.name for s in load_scenarios(tmp_path)] == ["one", "two", "hello", "three", "four"]


def test_match_rules_are_parsed(tmp_path):
    path = write(tmp_path, "m.yaml", """
name: weather
match: {model: "gpt-4o.*", user: "(?i)weather", headers: {X-Tenant: acme}}
content: sunny
""")
    [scenario] = load_scenarios(path)
    match = scenario.match

    def holds(model: str, user: str, headers: dict[str, str], rules: Match = match) -> bool:
        return rules.holds(Ask(model, stream=False, last_user=user), headers)

    assert holds("gpt-4o-mini", "What's the WEATHER like?", {"x-tenant": "acme"})
    assert not holds("gpt-3.5-turbo", "weather", {"x-tenant": "acme"})  # model is a full match
    assert not holds("gpt-4o", "hello", {"x-tenant": "acme"})
    assert not holds("gpt-4o", "weather", {"x-tenant": "other"})
    assert not holds("gpt-4o", "weather", {}, Scenario.from_dict({"name": "no-rules"}).match)


# ---------------------------------------------------------------- errors ---
def test_a_bad_file_lists_every_problem_with_file_field_and_choices(tmp_path):
    path = write(tmp_path, "slow.yaml", """
name: slow
chunk_byte: 4
finish_reason: stopp
ttft_ms: -5
tokens: "not a list"
match:
  modle: gpt-4o
  user: "(unclosed"
""")
    error = load_error(path)
    lines = str(error).splitlines()
    assert all(line.startswith(f"{path}: ") for line in lines), lines
    text = str(error)
    assert "chunk_byte: unknown knob (did you mean 'chunk_bytes'?); expected one of: content, tokens" in text
    assert f"finish_reason: unknown value 'stopp'; expected one of: {', '.join(FINISH_REASONS)}" in text
    assert "ttft_ms: must be between 0 and" in text
    assert "tokens: expected an array of strings" in text
    assert "match.modle: unknown field (did you mean 'model'?); expected one of: model, user, headers" in text
    assert "match.user: not a valid regular expression" in text
    assert len(lines) == 6, lines


def test_problems_in_a_list_name_the_item(tmp_path):
    path = write(tmp_path, "list.json", json.dumps([
        {"name": "ok", "content": "fine"},
        {"name": "bad", "events_per_write": 0},
        {"content": "no name", "random_tokens": 3},
    ]))
    text = str(load_error(path))
    assert f"{path}: [1].events_per_write: must be at least 1, got 0" in text
    assert f"{path}: [2].name: every scenario needs a non-empty string name" in text
    assert f"{path}: [2].random_tokens: give only one of content, tokens, random_tokens" in text


def test_problems_under_scenarios_name_the_item(tmp_path):
    path = write(tmp_path, "wrapped.yaml", "version: 1\nscenarios:\n  - {name: a}\n  - {name: b, seed: -1}\n")
    assert f"{path}: scenarios[1].seed: must be between 0 and" in str(load_error(path))


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("version: 2\nname: a\n", "version"),
        ("version: '1'\nname: a\n", "version"),
        ("version: 2\nscenarios: [{name: a}]\n", "version"),
        ("- {version: 3, name: a}\n", "[0].version"),
    ],
)
def test_an_unknown_version_is_rejected_by_name(tmp_path, text, field):
    path = write(tmp_path, "v.yaml", text)
    message = str(load_error(path))
    assert f"{path}: {field}: unsupported version" in message
    assert "version 1" in message


def test_typos_get_the_closest_valid_name(tmp_path):
    path = write(tmp_path, "typos.yaml", "name: t\nitl: 5\nrandom_token: 3\ndescripton: x\n")
    text = str(load_error(path))
    assert "random_token: unknown knob (did you mean 'random_tokens'?)" in text
    assert "descripton: unknown knob (did you mean 'description'?)" in text
    assert "itl: unknown knob" in text


def test_a_typo_with_no_close_name_still_lists_the_choices(tmp_path):
    path = write(tmp_path, "far.yaml", "name: t\nzzzzzz: 1\n")
    text = str(load_error(path))
    assert "did you mean" not in text
    assert "zzzzzz: unknown knob; expected one of: content, tokens, random_tokens" in text


def test_an_unknown_locale_is_rejected_with_a_suggestion(tmp_path):
    path = write(tmp_path, "locale.yaml", "name: t\nrandom_tokens: 3\nlocale: zh_XX\n")
    assert "locale: unknown locale 'zh_XX' (did you mean" in str(load_error(path))


@pytest.mark.parametrize(
    ("match", "field", "message"),
    [
        ("{user: '[a-'}", "match.user", "not a valid regular expression"),
        ("{model: '*gpt'}", "match.model", "not a valid regular expression"),
        ("{headers: {x-a: 1}}", "match.headers", "expected an object of header name -> string value"),
        ("gpt-4o", "match", "expected an object, got string"),
    ],
)
def test_match_rules_are_validated(tmp_path, match, field, message):
    path = write(tmp_path, "match.yaml", f"name: t\nmatch: {match}\n")
    assert f"{path}: {field}: {message}" in str(load_error(path))


def test_duplicate_names_across_files_name_both_files(tmp_path):
    first = write(tmp_path, "a.yaml", "name: twin\ncontent: a\n")
    second = write(tmp_path, "b.json", '{"name": "twin", "content": "b"}')
    text = str(load_error(tmp_path))
    assert str(first) in text and str(second) in text
    assert "'twin'" in text


def test_duplicate_names_in_one_file_name_the_item(tmp_path):
    path = write(tmp_path, "dup.yaml", "- {name: twin}\n- {name: twin}\n")
    assert f"{path}: [1].name: duplicate scenario name 'twin'" in str(load_error(path))


def test_every_bad_file_is_reported_at_once(tmp_path):
    write(tmp_path, "a.yaml", "name: a\nchunk_bytes: 0\n")
    write(tmp_path, "b.yaml", "name: b\nfinish_reason: nope\n")
    write(tmp_path, "c.yaml", "name: c\ncontent: fine\n")
    text = str(load_error(tmp_path))
    assert "a.yaml: chunk_bytes: must be at least 1" in text
    assert "b.yaml: finish_reason: unknown value 'nope'" in text
    assert "c.yaml" not in text


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("broken.yaml", "name: [unclosed\n", "not valid YAML"),
        ("broken.json", '{"name": "a",}', "not valid JSON"),
        ("scalar.yaml", "just a string\n", "expected a scenario object, got string"),
        ("empty.yaml", "", "expected a scenario object"),
    ],
)
def test_unreadable_documents_name_the_file(tmp_path, name, text, message):
    path = write(tmp_path, name, text)
    error = load_error(path)
    assert str(error).startswith(f"{path}: ")
    assert message in str(error)


def test_yaml_is_loaded_safely(tmp_path):
    path = write(tmp_path, "unsafe.yaml", "name: !!python/object/apply:os.getcwd []\n")
    assert "not valid YAML" in str(load_error(path))


def test_a_scenario_cannot_name_another(tmp_path):
    path = write(tmp_path, "s.yaml", "name: a\nscenario: b\n")
    assert f"{path}: scenario: a scenario cannot name another scenario" in str(load_error(path))


def test_inline_scenarios_use_the_same_validator():
    with pytest.raises(ScenarioError) as info:
        Scenario.from_dict({"name": "x", "chunk_byte": 1}, source="conftest.py")
    assert str(info.value).startswith("conftest.py: chunk_byte: unknown knob (did you mean 'chunk_bytes'?); "
                                      "expected one of: content, tokens, random_tokens")
    assert parse_scenarios({"name": "x", "chunk_bytes": 2}, "inline")[0].knobs == {"chunk_bytes": 2}


# ---------------------------------------------------------------- the shipped scenarios ---
def test_the_repository_ships_scenario_files():
    assert SHIPPED, f"no *.yaml, *.yml or *.json files in {REPO_SCENARIOS}"


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_every_shipped_file_loads_and_explains_itself(path):
    scenarios = load_file(path)
    assert scenarios
    for scenario in scenarios:
        assert len(scenario.description.split()) >= 5, f"{path}: {scenario.name} needs a description"


def test_the_shipped_scenarios_load_together_and_answer(make_server):
    scenarios = load_scenarios(REPO_SCENARIOS)
    assert len(scenarios) >= len(SHIPPED)
    server = make_server(scenarios, speed=0)
    answering = [s for s in scenarios if not {"fault", "sequence"} & set(s.knobs)]  # faults fail on purpose
    assert answering
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        for scenario in answering:
            response = client.post("/chat/completions", json={
                "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}],
                "mockstream": {"scenario": scenario.name}})
            assert response.status_code == 200, (scenario.name, response.text)
            choice = response.json()["choices"][0]
            assert choice["finish_reason"] in FINISH_REASONS, scenario.name


# ---------------------------------------------------------------- mockstream validate ---
def test_validate_prints_an_ok_line_per_scenario(tmp_path):
    write(tmp_path, "a.yaml", _yaml(LIST))
    write(tmp_path, "b.json", json.dumps(SINGLE))
    result = subprocess.run([MOCKSTREAM, "validate", str(tmp_path)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 3, lines
    for line, (name, file) in zip(lines, [("one", "a.yaml"), ("two", "a.yaml"), ("hello", "b.json")]):
        assert line.startswith("ok") and name in line.split() and line.endswith(str(tmp_path / file)), line


def test_validate_exits_2_with_every_problem(tmp_path):
    bad = write(tmp_path, "bad.yaml", "name: b\nchunk_byte: 1\nfinish_reason: nope\n")
    result = subprocess.run([MOCKSTREAM, "validate", str(bad)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert result.stdout == ""
    assert f"{bad}: chunk_byte: unknown knob (did you mean 'chunk_bytes'?)" in result.stderr
    assert f"{bad}: finish_reason: unknown value 'nope'; expected one of: stop" in result.stderr
