"""The JSON Schema (draft 2020-12) of a scenario file, for editors: generated from the validator's own tables.

Every knob's fragment comes from its check (`checks.describe`) or its `Knob.schema`, its description from
`Knob.doc`; the faults from `faults.KINDS` and each kind's `checks`. So the schema cannot disagree with
`schema.parse_scenarios` about names, types, bounds or options. The few rules JSON Schema cannot say are
left to the validator and listed in the schema's `$comment`. The shipped copy is `scenario.schema.json`
beside this module (`mockstream schema > mockstream/plan/scenario.schema.json` regenerates it).
"""

from __future__ import annotations

import copy
import itertools
from typing import Any

from .. import faults
from ..faults.base import PROBABILITY
from . import recording
from .checks import describe
from .rules import DIALECT_NAMES, LAST_ROLES
from .schema import FILE_FIELDS, KNOBS, MATCH_FIELDS, NOT_IN_TURNS, SCENARIO_VERSION, SEQUENCE_ONLY, TEXT_SOURCES

DIALECT = "https://json-schema.org/draft/2020-12/schema"
LEFT_TO_THE_VALIDATOR = (
    "Checked by `mockstream validate` only (JSON Schema cannot say it): scenario names are unique across "
    "a file and across every loaded file; match.model, match.user, match.tool_result, match.system and the string "
    "values of match.body are valid Python regular expressions; a recording's writes are in time order and its "
    "base64 is valid; "
    "a tool call's `arguments` given as a string is JSON text of an object; `locale` is one of Faker's "
    "locales; an integer field rejects 1.0 (JSON Schema counts it as the integer 1)."
)
NEEDS = (("locale", "random_tokens"), ("cycle", "sequence"))  # a knob that applies only beside another


def scenario_schema() -> dict[str, Any]:
    """The schema of a scenario file: one scenario, a list of them, or `{version, scenarios: [...]}`."""
    scenario = {"$ref": "#/$defs/scenario"}
    return {
        "$schema": DIALECT,
        "title": "mockstream scenario file",
        "description": "One scenario, a list of scenarios, or {version: 1, scenarios: [...]}.",
        "$comment": LEFT_TO_THE_VALIDATOR,
        "if": {"type": "object", "required": ["scenarios"]},
        "then": {"$ref": "#/$defs/file"},
        "else": {"anyOf": [scenario, {"type": "array", "items": scenario}]},
        "$defs": {
            "file": {
                "type": "object",
                "properties": {
                    "version": _version(),
                    "scenarios": {"type": "array", "items": scenario, "description": "the scenarios of this file"},
                },
                "required": ["scenarios"],
                "additionalProperties": False,
            },
            "scenario": _scenario(),
            "sequence_entry": _knob_object(
                [name for name in KNOBS if name not in (*SEQUENCE_ONLY, "cycle")],
                "One call's knobs: no nested sequence, no scenario name (cycle belongs beside the sequence).",
            ),
            "turns_entry": _knob_object(
                [name for name in KNOBS if name not in (*NOT_IN_TURNS, "cycle")],
                "The knobs of one turn of the conversation: no sequence, no nested turns, no scenario name.",
            ),
            "match": _match(),
            "recording": _recording(),
            "fault": _fault(),
        },
    }


def _version() -> dict[str, Any]:
    return {"const": SCENARIO_VERSION, "description": f"the file format version (optional; only {SCENARIO_VERSION})"}


def _scenario() -> dict[str, Any]:
    file_fields: dict[str, dict[str, Any]] = {
        "version": _version(),
        "name": {
            "type": "string",
            "minLength": 1,
            "description": "unique across all loaded files; select it by header, knob or model",
        },
        "description": {"type": "string", "description": "what the scenario does and which client bug it exposes"},
        "match": {"$ref": "#/$defs/match"},
        "recording": {"$ref": "#/$defs/recording"},
    }
    assert tuple(file_fields) == FILE_FIELDS, "a file field without a schema"
    knobs = [name for name in KNOBS if name != "scenario"]  # a scenario cannot name another scenario
    schema = _knob_object(knobs, "A named set of knobs, optionally matched to requests.", file_fields)
    schema["required"] = ["name"]
    return schema


def _knob_object(names: list[str], description: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """An object of the given knobs (and extra fields), no others, with the rules between knobs that JSON
    Schema can say: one text source at most, `locale` with `random_tokens`, `cycle` with `sequence`."""
    properties = dict(extra or {})
    for name in names:
        properties[name] = {**_knob(name), "description": KNOBS[name].doc}
    schema: dict[str, Any] = {
        "type": "object",
        "description": description,
        "properties": properties,
        "additionalProperties": False,
    }
    sources = [name for name in TEXT_SOURCES if name in names]
    if len(sources) > 1:
        pairs = [{"required": list(pair)} for pair in itertools.combinations(sources, 2)]
        schema["not"] = {"anyOf": pairs, "$comment": f"give only one of {', '.join(TEXT_SOURCES)}"}
    # `dependentRequired` would say it in 2020-12, but editors' YAML servers still read draft-07: if/then
    needs = [{"if": {"required": [name]}, "then": {"required": [needed]}} for name, needed in NEEDS if name in names]
    if needs:
        schema["allOf"] = needs
    return schema


def _knob(name: str) -> dict[str, Any]:
    if name == "fault":
        return {"$ref": "#/$defs/fault"}
    if name in ("sequence", "turns"):
        return {"type": "array", "minItems": 1, "items": {"$ref": f"#/$defs/{name}_entry"}}
    knob = KNOBS[name]
    return copy.deepcopy(dict(knob.schema)) if knob.schema is not None else describe(knob.check)


def _match() -> dict[str, Any]:
    properties: dict[str, dict[str, Any]] = {
        "model": {
            "type": "string",
            "description": "regular expression (Python re) that must match the whole model name",
        },
        "user": {"type": "string", "description": "regular expression searched in the last user message"},
        "headers": {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "description": "header name -> exact value (names are case-insensitive, values are not)",
        },
        "dialect": {"enum": list(DIALECT_NAMES), "description": "the API the request came in on"},
        "turn": {
            "type": "integer",
            "minimum": 0,
            "description": "assistant turns already in the conversation: 0 for the first call of an agent loop",
        },
        "last_role": {
            "enum": list(LAST_ROLES),
            "description": "the role of the newest message (a tool's result is `tool`)",
        },
        "tool_result": {"type": "string", "description": "regular expression searched in the newest tool result"},
        "system": {"type": "string", "description": "regular expression searched in the system prompt / instructions"},
        "tools": {
            "type": "array",
            "items": {"type": "string", "minLength": 1},
            "description": "the names of the tools offered: the set must be exactly this",
        },
        "body": {
            "type": "object",
            "minProperties": 1,
            "description": (
                "dotted path into the request body (a number indexes a list) -> value; a string value is a "
                "regular expression that must match the whole string field, any other value must be equal"
            ),
        },
    }
    assert tuple(properties) == MATCH_FIELDS, "a match field without a schema"
    return {
        "type": "object",
        "description": "When this scenario answers a request that names none: every rule given must hold.",
        "properties": properties,
        "additionalProperties": False,
    }


def _recording() -> dict[str, Any]:
    write = {
        "type": "object",
        "properties": {
            "at_ms": {
                "type": "number",
                "minimum": 0,
                "maximum": recording.MAX_AT_MS,
                "description": "when the upstream made the write, ms from the request's arrival (in time order)",
            },
            "text": {"type": "string", "description": "its bytes, where they are valid UTF-8"},
            "base64": {"type": "string", "description": "its bytes in base64, where a write splits a character"},
        },
        "required": ["at_ms"],
        "oneOf": [{"required": ["text"]}, {"required": ["base64"]}],
        "additionalProperties": False,
    }
    properties: dict[str, dict[str, Any]] = {
        "status": {"type": "integer", "minimum": 100, "maximum": 599, "description": "the HTTP status answered"},
        "headers": {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "description": "the response headers that matter (content type, rate limits, request id...)",
        },
        "writes": {"type": "array", "items": write, "description": "every write the upstream made, in order"},
        "end": {"enum": list(recording.ENDS), "description": "how the answer ended (default completed)"},
        "take": {"type": "integer", "minimum": 1, "description": "the same request recorded again: 2, 3..."},
        "request": {"description": "the request as recorded, secrets redacted: for reading, never matched"},
        "upstream": {"type": "string", "description": "where it was recorded from"},
    }
    assert tuple(properties) == recording.FIELDS, "a recording field without a schema"
    return {
        "type": "object",
        "description": "A recorded exchange: the scenario answers with it byte for byte (`mockstream record`).",
        "properties": properties,
        "required": ["status"],
        "additionalProperties": False,
    }


def _fault() -> dict[str, Any]:
    kinds = sorted(faults.KINDS)
    variants = []
    for kind in kinds:
        cls = faults.KINDS[kind]
        properties: dict[str, Any] = {
            "kind": {"const": kind},
            **{field: describe(check) for field, check in cls.checks.items()},
            "probability": {**describe(PROBABILITY), "description": "chance (0..1) that it strikes (default 1)"},
        }
        variants.append(
            {
                "title": kind,
                "description": (cls.__doc__ or "").strip().splitlines()[0],
                "type": "object",
                "properties": properties,
                "required": ["kind"],
                "additionalProperties": False,
            }
        )
    return {
        "type": "object",
        "description": "How the stream fails: {kind, ...that kind's fields, probability}.",
        "properties": {"kind": {"enum": kinds}},
        "required": ["kind"],
        "oneOf": variants,
    }
