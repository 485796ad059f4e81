"""The one schema for scenario files and per-request knobs: parse, validate, merge.

A scenario file is the same object a test puts under `"mockstream"` in a request body, plus
`name`, `description` and `match`. One validator serves both, and reports every problem at once.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import faults
from ..errors import Problem, RequestError, ScenarioError
from . import recording as recorded
from .checks import Invalid, boolean, choice, closest, integer, number, reject_unknown, string, type_name
from .rules import MATCH_FIELDS as MATCH_FIELDS  # re-exported: the rules' names
from .rules import Match, parse_match

FINISH_REASONS = ("stop", "length", "content_filter", "tool_calls")
LINE_ENDINGS = ("lf", "crlf", "cr")
TEXT_SOURCES = ("content", "tokens", "random_tokens")
REASONING_SOURCES = ("reasoning", "reasoning_tokens")
REASONING_FIELDS = ("reasoning_content", "reasoning")
SCENARIO_VERSION = 1


def _tokens(value: Any, path: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise Invalid(path, "expected an array of strings")
    if any(t == "" for t in value):
        raise Invalid(path, "tokens must not be empty strings (an empty delta is not a token)")
    return tuple(value)


def _locale(value: Any, path: str) -> str:
    from .content import available_locales

    locales = available_locales()
    if not isinstance(value, str) or value not in locales:
        raise Invalid(path, f"unknown locale {value!r}{closest(str(value), locales)}")
    return value


def _tool_calls(value: Any, path: str) -> tuple[dict, ...]:
    if not isinstance(value, list) or not value:
        raise Invalid(path, "expected a non-empty array of {name, arguments}")
    calls = []
    for i, call in enumerate(value):
        where = f"{path}[{i}]"
        if not isinstance(call, dict):
            raise Invalid(where, f"expected an object, got {type_name(call)}")
        reject_unknown(call, ("name", "arguments", "id"), where)
        name = string(call.get("name"), f"{where}.name") if "name" in call else None
        if not name:
            raise Invalid(f"{where}.name", "a tool call needs a function name")
        arguments = call.get("arguments", {})
        if isinstance(arguments, str):
            try:
                parsed = json.loads(arguments)
            except ValueError as exc:
                raise Invalid(f"{where}.arguments", f"not valid JSON text: {exc}") from None
            if not isinstance(parsed, dict):
                raise Invalid(f"{where}.arguments", "function arguments must be a JSON object")
        elif isinstance(arguments, dict):
            arguments = json.dumps(arguments, ensure_ascii=False)
        else:
            raise Invalid(f"{where}.arguments", "expected an object or a JSON string")
        entry = {"name": name, "arguments": arguments}
        if "id" in call:
            entry["id"] = string(call["id"], f"{where}.id")
        calls.append(entry)
    return tuple(calls)


def _scenario_name(value: Any, path: str) -> str:
    if not isinstance(value, str) or not value:
        raise Invalid(path, "expected a non-empty string")
    return value


@dataclass(frozen=True)
class Knob:
    """One knob: its check, the line the README shows for it, and (for a check of its own, which cannot
    describe itself) the JSON Schema fragment of what it accepts; the others come from `checks.describe`."""

    check: Callable[[Any, str], Any]
    doc: str
    schema: Mapping[str, Any] | None = None


KNOBS: dict[str, Knob] = {
    "content": Knob(string, "the assistant's text; the server splits it into tokens"),
    "tokens": Knob(
        _tokens,
        "exact deltas, one content chunk each (nothing re-split)",
        {"type": "array", "items": {"type": "string", "minLength": 1}},
    ),
    "random_tokens": Knob(integer(0, 1_000_000), "seeded Faker text of N tokens"),
    "locale": Knob(
        _locale,
        "Faker locale for random_tokens and reasoning_tokens (default en_US)",
        {"type": "string", "examples": ["en_US", "de_DE", "fr_FR", "ja_JP", "zh_CN"]},
    ),
    "reasoning": Knob(string, "the model's reasoning, streamed before the answer; split into tokens like content"),
    "reasoning_tokens": Knob(integer(0, 1_000_000), "seeded Faker reasoning of N tokens, streamed before the answer"),
    "reasoning_field": Knob(
        choice(REASONING_FIELDS),
        "Chat's delta field for reasoning: reasoning_content (vLLM, DeepSeek; default) or reasoning (OpenRouter)",
    ),
    "redacted_thinking": Knob(
        boolean, "Anthropic: the reasoning arrives as one redacted_thinking block (encrypted), not as thinking"
    ),
    "finish_reason": Knob(choice(FINISH_REASONS), "how the answer ends"),
    "tool_calls": Knob(
        _tool_calls,
        "tool calls [{name, arguments}] after any content",
        {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "minLength": 1, "description": "the function's name"},
                    "arguments": {
                        "type": ["object", "string"],
                        "description": "an object, or JSON text of one (default {})",
                    },
                    "id": {"type": "string", "description": "the call's id (default: a seeded one)"},
                },
                "required": ["name"],
                "additionalProperties": False,
            },
        },
    ),
    "ttft_ms": Knob(number(0, 3_600_000), "time to the first content token, ms"),
    "itl_ms": Knob(number(0, 3_600_000), "gap between tokens, ms"),
    "jitter_ms": Knob(number(0, 3_600_000), "seeded random +/- around each gap, ms"),
    "chunk_bytes": Knob(integer(1), "cut the body into writes of at most N bytes"),
    "chunk_gap_ms": Knob(number(0, 60_000), "pause between the writes of chunk_bytes (default 1 ms)"),
    "events_per_write": Knob(integer(1), "coalesce N SSE events into one write"),
    "line_ending": Knob(choice(LINE_ENDINGS), "how SSE lines end: lf (default), crlf or cr"),
    "done": Knob(boolean, "end Chat and Completions streams with `data: [DONE]` (default true)"),
    "seed": Knob(integer(0, 2**63 - 1), "per-request seed"),
    "fault": Knob(faults.parse, "make the stream fail: {kind, ...fields, probability} (see Faults)"),
    "sequence": Knob(lambda value, path: value, "successive calls get successive entries (knob objects)"),
    "cycle": Knob(boolean, "with sequence: start over after the last entry (default: the last repeats)"),
    "turns": Knob(
        lambda value, path: value,
        "the conversation's turn picks the entry (knob objects): turn 0 the first; past the end the last repeats",
    ),
    "scenario": Knob(_scenario_name, "use a loaded scenario by name", {"type": "string", "minLength": 1}),
    "replay_speed": Knob(number(0, 1_000_000), "a recording replays this many times faster (default 1; 0: at once)"),
}
FILE_FIELDS = ("version", "name", "description", "match", "recording")
# What the answer says: given anew, it replaces all of it.
ANSWER_KNOBS = (*TEXT_SOURCES, *REASONING_SOURCES, "locale", "tool_calls")
KNOBS_HEADER = "X-Mockstream-Knobs"  # the knob object as JSON, for clients that can set headers but not body fields


def check_knobs(raw: Any, path: str = "", allowed_extra: Iterable[str] = ()) -> tuple[dict, list[Problem]]:
    """Validate a knob mapping; returns (clean knobs, problems). Never raises for bad input."""
    if not isinstance(raw, Mapping):
        return {}, [Problem(path, f"expected an object, got {type_name(raw)}")]
    problems: list[Problem] = []
    clean: dict[str, Any] = {}
    extra = tuple(allowed_extra)
    valid = (*KNOBS, *extra)
    for key, value in raw.items():
        where = f"{path}.{key}" if path else str(key)
        if key in extra:
            continue
        knob = KNOBS.get(key)
        if knob is None:
            problems.append(
                Problem(where, f"unknown knob{closest(str(key), valid)}; expected one of: {', '.join(valid)}")
            )
            continue
        if key in ("sequence", "turns"):
            clean[key], entry_problems = _entries(value, where, key)
            problems.extend(entry_problems)
            continue
        try:
            clean[key] = knob.check(value, where)
        except Invalid as exc:
            problems.append(exc.problem)
    if "cycle" in clean and "sequence" not in clean:
        problems.append(Problem(f"{path}.cycle" if path else "cycle", "cycle applies to a sequence only"))
    given = [k for k in TEXT_SOURCES if k in clean]
    if len(given) > 1:
        problems.append(
            Problem(
                f"{path}.{given[1]}" if path else given[1],
                f"give only one of {', '.join(TEXT_SOURCES)} (got {' and '.join(given)})",
            )
        )
    reasoning = [k for k in REASONING_SOURCES if k in clean]
    if len(reasoning) > 1:
        where = f"{path}.reasoning_tokens" if path else "reasoning_tokens"
        problems.append(Problem(where, "give only one of reasoning and reasoning_tokens"))
    if "locale" in clean and "random_tokens" not in clean and "reasoning_tokens" not in clean:
        problems.append(
            Problem(f"{path}.locale" if path else "locale", "locale applies to random_tokens and reasoning_tokens only")
        )
    return clean, problems


def request_knobs(raw: Any, header: str | None = None) -> dict[str, Any]:
    """A request's `mockstream` object, validated, over the knobs of its X-Mockstream-Knobs header (the JSON
    text of a knob object): a 400 naming the first bad field. The body wins field by field, and an answer in
    the body (text or tool calls) replaces the header's whole answer."""
    knobs = _valid(raw, "mockstream")
    if header is None:
        return knobs
    try:
        given = json.loads(header)
    except ValueError as exc:
        message = f"Invalid {KNOBS_HEADER} header: not valid JSON ({exc}); send a JSON object of knobs."
        raise RequestError(400, message, KNOBS_HEADER, "invalid_mockstream_knob") from None
    from_header = _valid(given, KNOBS_HEADER)
    if any(key in knobs for key in ANSWER_KNOBS):
        from_header = {key: value for key, value in from_header.items() if key not in ANSWER_KNOBS}
    return {**from_header, **knobs}


def _valid(raw: Any, path: str) -> dict[str, Any]:
    knobs, problems = check_knobs(raw, path)
    if problems:
        message = "Invalid mockstream knobs: " + "; ".join(str(p) for p in problems)
        raise RequestError(400, message, problems[0].path, "invalid_mockstream_knob")
    return knobs


# What may not appear inside an entry: a sequence entry may hold `turns` (that call answers by the turn), a
# turns entry holds neither a sequence nor turns; neither names a scenario.
SEQUENCE_ONLY = ("sequence", "scenario")
NOT_IN_TURNS = ("sequence", "turns", "scenario")


def _entries(raw: Any, path: str, kind: str) -> tuple[tuple[dict, ...], list[Problem]]:
    """A `sequence` or `turns`: each entry is a knob object of its own."""
    if not isinstance(raw, list) or not raw:
        return (), [Problem(path, "expected a non-empty array of knob objects")]
    forbidden, named = (SEQUENCE_ONLY, "a sequence entry") if kind == "sequence" else (NOT_IN_TURNS, "a turns entry")
    entries, problems = [], []
    for i, item in enumerate(raw):
        entry, entry_problems = check_knobs(item, f"{path}[{i}]")
        for key in forbidden:
            if key in entry:
                entry_problems.append(Problem(f"{path}[{i}].{key}", f"{key} cannot appear inside {named}"))
        problems.extend(entry_problems)
        entries.append(entry)
    return tuple(entries), problems


# ---------------------------------------------------------------- scenarios ---
@dataclass(frozen=True)
class Scenario:
    """A named set of knobs, optionally matched to requests by its `match` rules (see plan/rules.py)."""

    name: str
    knobs: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    match: Match = field(default_factory=Match)
    source: str = "<inline>"
    recording: recorded.Recording | None = None  # a recorded exchange answers (see plan/recording.py)

    @classmethod
    def from_dict(cls, raw: Any, source: str = "<inline>") -> Scenario:
        """Validate one scenario object; raises ScenarioError naming the source and every field."""
        scenario, problems = _parse_scenario(raw, "")
        if problems or scenario is None:
            raise ScenarioError(source, problems)
        return _with_source(scenario, source)


def _with_source(scenario: Scenario, source: str) -> Scenario:
    return dataclasses.replace(scenario, source=source)


def _parse_scenario(raw: Any, path: str) -> tuple[Scenario | None, list[Problem]]:
    if not isinstance(raw, Mapping):
        return None, [Problem(path, f"expected a scenario object, got {type_name(raw)}")]
    knobs, problems = check_knobs(raw, path, allowed_extra=FILE_FIELDS)
    if "scenario" in knobs:
        problems.append(Problem(f"{path}.scenario" if path else "scenario", "a scenario cannot name another scenario"))

    def at(key: str) -> str:
        return f"{path}.{key}" if path else key

    version = raw.get("version", SCENARIO_VERSION)
    if version != SCENARIO_VERSION:
        problems.append(Problem(at("version"), f"unsupported version {version!r}; this mockstream reads version 1"))
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        problems.append(Problem(at("name"), "every scenario needs a non-empty string name"))
    description = raw.get("description", "")
    if not isinstance(description, str):
        problems.append(Problem(at("description"), "expected a string"))
        description = ""
    match = Match()
    if "match" in raw:
        match, match_problems = parse_match(raw["match"], at("match"))
        problems.extend(match_problems)
    recording = None
    if "recording" in raw:
        recording, recording_problems = recorded.parse(raw["recording"], at("recording"))
        problems.extend(recording_problems)
    if problems or not isinstance(name, str):
        return None, problems
    return Scenario(name=name, knobs=knobs, description=description, match=match, recording=recording), []


def parse_scenarios(document: Any, source: str) -> list[Scenario]:
    """A document holds one scenario, a list of them, or `{version, scenarios: [...]}`."""
    if isinstance(document, Mapping) and "scenarios" in document:
        extra = set(document) - {"version", "scenarios"}
        if extra:
            raise ScenarioError(
                source, [Problem(sorted(extra)[0], "a file with `scenarios:` may only also hold `version`")]
            )
        version = document.get("version", SCENARIO_VERSION)
        items = document["scenarios"]
        if version != SCENARIO_VERSION:
            raise ScenarioError(
                source, [Problem("version", f"unsupported version {version!r}; this mockstream reads version 1")]
            )
        prefix = "scenarios"
    elif isinstance(document, list):
        items, prefix = document, ""
    else:
        items, prefix = [document], None
    if not isinstance(items, list):
        raise ScenarioError(source, [Problem(prefix or "", "expected a list of scenarios")])
    scenarios, problems, seen = [], [], {}
    for i, item in enumerate(items):
        path = "" if prefix is None else f"{prefix}[{i}]"
        scenario, item_problems = _parse_scenario(item, path)
        problems.extend(item_problems)
        if scenario is not None:
            if scenario.name in seen:
                problems.append(Problem(f"{path}.name", f"duplicate scenario name {scenario.name!r}"))
            seen[scenario.name] = True
            scenarios.append(_with_source(scenario, source))
    if problems:
        raise ScenarioError(source, problems)
    return scenarios


def read_yaml(text: str) -> Any:
    """YAML as `yaml.safe_load` reads it, through libyaml when PyYAML was built with it: about ten times
    faster, which a directory of recordings (hundreds of kB of writes) shows at every start."""
    import yaml

    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def load_file(path: str | Path) -> list[Scenario]:
    """Read one YAML or JSON scenario file."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(str(path), [Problem("", f"cannot read: {exc}")]) from None
    try:
        document = json.loads(text) if path.suffix == ".json" else read_yaml(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ScenarioError(str(path), [Problem("", f"not valid {path.suffix.lstrip('.').upper()}: {exc}")]) from None
    if document is None and path.suffix != ".json":  # YAML reads nothing (or only comments) as None
        empty = "the file is empty: expected a scenario object, a list of them or {scenarios: [...]}"
        raise ScenarioError(str(path), [Problem("", empty)])
    return parse_scenarios(document, str(path))


SCENARIO_SUFFIXES = (".yaml", ".yml", ".json")


def load_scenarios(*paths: str | Path) -> list[Scenario]:
    """Load scenario files and directories (their *.yaml, *.yml, *.json, sorted); names must be unique."""
    scenarios: list[Scenario] = []
    errors: list[str] = []
    for path in map(Path, paths):
        files = sorted(p for p in path.iterdir() if p.suffix in SCENARIO_SUFFIXES) if path.is_dir() else [path]
        for file in files:
            try:
                scenarios.extend(load_file(file))
            except ScenarioError as exc:
                errors.extend(exc.lines)
    by_name: dict[str, Scenario] = {}
    for scenario in scenarios:
        if scenario.name in by_name:
            errors.append(
                f"{scenario.source}: name: scenario {scenario.name!r} is already defined in "
                f"{by_name[scenario.name].source}"
            )
        by_name[scenario.name] = scenario
    if errors:
        raise ScenarioError.merged(errors)
    return scenarios


DEFAULT_TEXT = (
    "Hello! This is mockstream, a mock server for OpenAI-style streaming APIs. "
    "Every token you see arrived as its own server-sent event, paced like a real model. "
    'Script the text, the timing, the chunking and the faults with the "mockstream" knobs, '
    "and watch your client cope."
)
DEFAULT = Scenario(
    name="default",
    knobs={"content": DEFAULT_TEXT, "ttft_ms": 250.0, "itl_ms": 33.0},
    description="The built-in answer: a few sentences at about 30 tokens/s.",
    source="<built-in>",
)
