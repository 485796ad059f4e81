"""The JSON Schema of scenario files (for editors) agrees with the validator: the ready scenarios and the README's
examples pass both, and bad documents fail both. The shipped `scenario.schema.json` is what `mockstream schema`
prints (regenerate it with `mockstream schema > mockstream/plan/scenario.schema.json`)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import MOCKSTREAM, clean_env
from jsonschema import Draft7Validator, Draft202012Validator

import mockstream
from mockstream import ScenarioError, load_scenarios
from mockstream.faults import KINDS
from mockstream.plan import checks
from mockstream.plan.json_schema import scenario_schema
from mockstream.plan.schema import FILE_FIELDS, KNOBS, MATCH_FIELDS, parse_scenarios

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = Path(mockstream.__file__).parent / "plan" / "scenario.schema.json"
SCENARIO_FILES = sorted((ROOT / "scenarios").glob("*.yaml"))
SCHEMA_LINE = "# yaml-language-server: $schema=../mockstream/plan/scenario.schema.json"
YAML_BLOCK = re.compile(r"^```ya?ml[ \t]*\n(.*?)^```", re.MULTILINE | re.DOTALL)


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    return Draft202012Validator(scenario_schema())


def schema_errors(validator: Draft202012Validator, document: Any) -> list[str]:
    return [error.message for error in validator.iter_errors(document)]


def validator_problems(document: Any) -> list[str]:
    try:
        parse_scenarios(document, "<test>")
    except ScenarioError as exc:
        return exc.lines
    return []


def test_the_schema_is_a_valid_draft_2020_12_schema():
    schema = scenario_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


def test_the_shipped_file_is_the_generated_schema():
    assert json.loads(SHIPPED.read_text(encoding="utf-8")) == scenario_schema(), (
        "stale: run `mockstream schema > mockstream/plan/scenario.schema.json`"
    )


def test_mockstream_schema_prints_the_shipped_file():
    done = subprocess.run([MOCKSTREAM, "schema"], capture_output=True, text=True, env=clean_env(), timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert json.loads(done.stdout) == scenario_schema()
    assert done.stdout == SHIPPED.read_text(encoding="utf-8"), (
        "stale: run `mockstream schema > mockstream/plan/scenario.schema.json`"
    )


def test_building_the_schema_imports_nothing_heavy():
    code = (
        "import sys; from mockstream.plan.json_schema import scenario_schema; scenario_schema(); "
        "print([m for m in ('faker', 'aiohttp', 'yaml', 'jsonschema') if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_schema_names_exactly_the_validators_fields():
    defs = scenario_schema()["$defs"]
    scenario = defs["scenario"]["properties"]
    assert set(scenario) == (set(KNOBS) - {"scenario"}) | set(FILE_FIELDS)
    assert set(defs["sequence_entry"]["properties"]) == set(KNOBS) - {"scenario", "sequence", "cycle"}
    assert set(defs["match"]["properties"]) == set(MATCH_FIELDS)
    for name, knob in KNOBS.items():
        if name in scenario:
            assert scenario[name]["description"] == knob.doc, name
    variants = {v["properties"]["kind"]["const"]: v for v in defs["fault"]["oneOf"]}
    assert set(variants) == set(KINDS)
    assert defs["fault"]["properties"]["kind"]["enum"] == sorted(KINDS)
    for kind, cls in KINDS.items():
        assert set(variants[kind]["properties"]) == {"kind", "probability", *cls.checks}, kind
        assert variants[kind]["additionalProperties"] is False


def test_every_check_describes_itself_and_an_undescribed_one_is_refused():
    assert checks.describe(checks.number(0, 10)) == {"type": "number", "minimum": 0, "maximum": 10}
    assert checks.describe(checks.number(0.5)) == {"type": "number", "minimum": 0.5}
    assert checks.describe(checks.integer(1)) == {"type": "integer", "minimum": 1}
    assert checks.describe(checks.integer(400, 599)) == {"type": "integer", "minimum": 400, "maximum": 599}
    assert checks.describe(checks.choice(["a", "b"])) == {"enum": ["a", "b"]}
    assert checks.describe(checks.optional(checks.string)) == {"type": ["string", "null"]}
    assert checks.describe(checks.optional(checks.choice(["a"]))) == {"anyOf": [{"enum": ["a"]}, {"type": "null"}]}
    fragment = checks.describe(checks.boolean)
    fragment["type"] = "changed"  # a copy: the caller cannot change the check's own description
    assert checks.describe(checks.boolean) == {"type": "boolean"}
    with pytest.raises(TypeError, match="no JSON Schema description"):
        checks.describe(lambda value, path: value)


def test_the_checks_still_check():
    with pytest.raises(checks.Invalid):
        checks.optional(checks.number(0, 1))(2, "p")
    assert checks.optional(checks.number(0, 1))(None, "p") is None
    assert checks.integer(1)(3, "n") == 3


@pytest.mark.parametrize("path", SCENARIO_FILES, ids=lambda path: path.name)
def test_every_ready_scenario_passes_the_schema_and_the_validator(validator, path):
    assert path.read_text(encoding="utf-8").splitlines()[0] == SCHEMA_LINE
    assert (path.parent / SCHEMA_LINE.partition("$schema=")[2]).resolve() == SHIPPED.resolve()
    assert schema_errors(validator, yaml.safe_load(path.read_text(encoding="utf-8"))) == []
    assert load_scenarios(path)


def test_there_are_ready_scenarios():
    assert len(SCENARIO_FILES) >= 10


def _is_scenario_document(document: Any) -> bool:
    """The rule for README blocks: `{scenarios: ...}`, or a mapping with `name` and at least one other scenario
    field (a knob, version, description or match), or a non-empty list of such mappings. Anything else (a CI
    workflow, a compose file, a lone knob fragment) is not a scenario document."""
    if isinstance(document, dict) and "scenarios" in document:
        return True
    if isinstance(document, list):
        return bool(document) and all(_is_scenario_document(item) for item in document)
    fields = set(KNOBS) | set(FILE_FIELDS)
    return isinstance(document, dict) and "name" in document and bool((set(document) - {"name"}) & fields)


def readme_scenarios() -> list[tuple[str, Any]]:
    """The scenario documents among the yaml blocks of the README and the docs pages, with where they are."""
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        text = path.read_text(encoding="utf-8")
        for m in YAML_BLOCK.finditer(text):
            document = yaml.safe_load(m.group(1))
            if _is_scenario_document(document):
                found.append((f"{path.relative_to(ROOT)} line {text.count(chr(10), 0, m.start()) + 1}", document))
    return found


def test_the_readme_rule_tells_scenarios_from_other_yaml():
    assert _is_scenario_document({"name": "a", "content": "x"})
    assert _is_scenario_document({"version": 1, "scenarios": []})
    assert _is_scenario_document([{"name": "a", "itl_ms": 1}])
    assert not _is_scenario_document({"name": "tests", True: ["push"], "jobs": {}})  # a GitHub workflow
    assert not _is_scenario_document({"fault": {"kind": "stall"}})
    assert not _is_scenario_document([])


def test_every_readme_scenario_passes_the_schema_and_the_validator(validator):
    found = readme_scenarios()
    assert found, "no scenario document among the yaml blocks of the README and the docs"
    for where, document in found:
        assert schema_errors(validator, document) == [], where
        assert validator_problems(document) == [], where


GOOD = {
    "a list": [{"name": "a", "content": "hi"}, {"name": "b", "random_tokens": 3, "locale": "ja_JP"}],
    "an empty file form": {"version": 1, "scenarios": []},
    "a sequence with cycle": {
        "name": "a",
        "cycle": True,
        "sequence": [{"tokens": ["x"]}, {"fault": {"kind": "truncate"}}],
    },
    "null optional fault fields": {
        "name": "a",
        "fault": {"kind": "stall", "ms": None, "at_token": 2, "probability": 0.5},
    },
    "an http error": {"name": "a", "fault": {"kind": "http_error", "status": 429, "retry_after": 1, "code": "x"}},
    "tool calls": {"name": "a", "tool_calls": [{"name": "f", "arguments": '{"a": 1}', "id": "c1"}, {"name": "g"}]},
    "every match rule": {"name": "a", "match": {"model": "gpt-.*", "user": "hi", "headers": {"X-App": "1"}}},
    "delivery knobs": {
        "name": "a",
        "chunk_bytes": 1,
        "chunk_gap_ms": 0,
        "events_per_write": 2,
        "line_ending": "crlf",
        "done": False,
        "seed": 7,
        "ttft_ms": 0.5,
        "itl_ms": 3600000,
        "jitter_ms": 1,
    },
}


@pytest.mark.parametrize("document", GOOD.values(), ids=GOOD.keys())
def test_good_documents_pass_both(validator, document):
    assert schema_errors(validator, document) == []
    assert validator_problems(document) == []


BASE = {"version": 1, "name": "bad", "content": "hello"}
BAD: dict[str, Any] = {
    "unknown knob": {**BASE, "chunk_byte": 4},
    "misspelt fault kind": {**BASE, "fault": {"kind": "disconect"}},
    "fault without a kind": {**BASE, "fault": {"at_token": 1}},
    "another kind's fault field": {**BASE, "fault": {"kind": "disconnect", "status": 500}},
    "out-of-range number": {**BASE, "ttft_ms": -1},
    "out-of-range probability": {**BASE, "fault": {"kind": "reset", "probability": 1.5}},
    "out-of-range status": {**BASE, "fault": {"kind": "http_error", "status": 200}},
    "out-of-range integer": {**BASE, "chunk_bytes": 0},
    "wrong type": {**BASE, "done": "yes"},
    "wrong type of tokens": {"name": "bad", "tokens": "abc"},
    "an empty token": {"name": "bad", "tokens": ["a", ""]},
    "unknown finish reason": {**BASE, "finish_reason": "done"},
    "unknown match field": {**BASE, "match": {"modle": "gpt-4o"}},
    "a header value not a string": {**BASE, "match": {"headers": {"X-App": 1}}},
    "extra top-level key with scenarios": {"version": 1, "name": "x", "scenarios": [{"name": "a"}]},
    "scenarios not a list": {"scenarios": {"name": "a"}},
    "no name": {"content": "hello"},
    "an empty name": {"name": "", "content": "hello"},
    "unsupported version": {**BASE, "version": 2},
    "two text sources": {**BASE, "tokens": ["a"]},
    "locale without random_tokens": {**BASE, "locale": "ja_JP"},
    "cycle without sequence": {**BASE, "cycle": True},
    "a scenario naming a scenario": {**BASE, "scenario": "other"},
    "an empty sequence": {"name": "bad", "sequence": []},
    "a nested sequence": {"name": "bad", "sequence": [{"sequence": [{"content": "a"}]}]},
    "a scenario in a sequence entry": {"name": "bad", "sequence": [{"scenario": "other"}]},
    "a description in a sequence entry": {"name": "bad", "sequence": [{"description": "x"}]},
    "a bad knob in a sequence entry": {"name": "bad", "sequence": [{"itl_ms": "fast"}]},
    "a tool call without a name": {**BASE, "tool_calls": [{"arguments": {}}]},
    "an unknown tool call field": {**BASE, "tool_calls": [{"name": "f", "argument": {}}]},
    "no tool calls": {**BASE, "tool_calls": []},
    "a bad scenario in a list": [{"name": "a"}, {"name": "b", "itl_ms": -5}],
    "not a scenario at all": "hello",
    "an empty document": None,
}


@pytest.mark.parametrize("document", BAD.values(), ids=BAD.keys())
def test_bad_documents_fail_both(validator, document):
    assert schema_errors(validator, document) != []
    assert validator_problems(document) != []


def test_a_bad_document_fails_the_schema_where_it_is_bad(validator):
    document = {"version": 1, "scenarios": [{"name": "a", "sequence": [{"fault": {"kind": "stal"}}]}]}
    paths = [list(error.absolute_path) for error in validator.iter_errors(document)]
    assert ["scenarios", 0, "sequence", 0, "fault"] in [path[:5] for path in paths]


def test_a_draft_07_reader_judges_the_same():
    """VS Code's YAML extension (yaml-language-server) still validates with draft-07 semantics: the schema uses
    nothing it would ignore, so the editor flags what the validator flags."""
    schema = {key: value for key, value in scenario_schema().items() if key != "$schema"}
    draft_07 = Draft7Validator(schema)
    assert [name for name, document in BAD.items() if not schema_errors(draft_07, document)] == []
    assert [name for name, document in GOOD.items() if schema_errors(draft_07, document)] == []
    files = [path.name for path in SCENARIO_FILES if schema_errors(draft_07, yaml.safe_load(path.read_text()))]
    assert files == []
