"""OpenAI's vendored schemas as tests/test_conformance.py checks objects against them.

Two views of each schema: *open*, the document as it is (plus the exceptions a test allows), and *closed*,
where every object schema that lists its properties refuses any other (`unevaluatedProperties: false`), so
a misspelt or invented field fails too. An object is checked open first: a part that fails leaves its
fields unevaluated, and the closed view would then blame them instead of the real problem.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

VENDORED = Path(__file__).parent / "openai-schemas.json"
SPEC: dict[str, Any] = json.loads(VENDORED.read_text(encoding="utf-8"))
DEFS: dict[str, Any] = SPEC["$defs"]
COMMIT: str = SPEC["source"]["commit"]


@dataclass(frozen=True)
class Allow:
    """A value the document refuses at `schema` / `path` (property names, `[]` for an array's items) that is
    accepted anyway: `accept` joins the documented schema in an `anyOf` (a field the document lacks gets
    `accept` alone). `example` is such a value: the document must still refuse it, or the exception is stale
    (`stale()`). `why` is the evidence."""

    schema: str
    path: str
    accept: dict[str, Any]
    example: Any
    why: str

    def stale(self) -> str | None:
        """Why this exception is no longer needed (the document now takes its example), else None."""
        assert Draft202012Validator({"$defs": DEFS, **self.accept}).is_valid(self.example), self
        _, last, holders = _holders(DEFS, self)
        for holder in holders:  # none: a field the document does not name at all
            if Draft202012Validator({"$defs": DEFS, **holder["properties"][last]}).is_valid(self.example):
                return f"the document now takes {self.example!r} at {self.schema}/{self.path}: drop the exception"
        return None


class Schemas:
    """Validators for the vendored schemas, with `allow`ed exceptions; `fixes` maps a problem's pattern
    (`<json path>: <message>`) to the change that fixes it, quoted when an object fails."""

    def __init__(self, allow: Iterable[Allow] = (), fixes: Mapping[str, str] | None = None):
        self.allow = tuple(allow)
        self.fixes = dict(fixes or {})
        self._validators: dict[tuple[str, bool], Draft202012Validator] = {}

    @cached_property
    def _open(self) -> dict[str, Any]:
        defs = copy.deepcopy(DEFS)
        for allow in self.allow:
            _apply(defs, allow)
        return defs

    @cached_property
    def _closed(self) -> dict[str, Any]:
        defs = copy.deepcopy(self._open)
        in_all_of = {m["$ref"].rsplit("/", 1)[1] for d in defs.values() for m in d.get("allOf", ()) if "$ref" in m}
        for name, schema in defs.items():
            _close(schema, in_all_of=name in in_all_of)
        return defs

    def validator(self, name: str, closed: bool) -> Draft202012Validator:
        key = (name, closed)
        if key not in self._validators:
            defs = self._closed if closed else self._open
            self._validators[key] = Draft202012Validator({"$defs": defs, "$ref": f"#/$defs/{name}"})
        return self._validators[key]

    @cached_property
    def stream_events(self) -> dict[str, str]:
        """Each Responses event `type` and the member of the `ResponseStreamEvent` union that describes it."""
        members = [m["$ref"].rsplit("/", 1)[1] for m in DEFS["ResponseStreamEvent"]["anyOf"]]
        return {DEFS[m]["properties"]["type"]["enum"][0]: m for m in members}

    def problems(self, name: str, obj: Any) -> list[str]:
        found = sorted({_problem(e) for e in self.validator(name, closed=False).iter_errors(obj)})
        return found or sorted({_problem(e) for e in self.validator(name, closed=True).iter_errors(obj)})

    def conform(self, name: str, obj: Any, where: str) -> None:
        """`obj` is a valid `name`, or the assertion lists every problem and the fix known for it."""
        problems = self.problems(name, obj)
        if not problems:
            return
        fixes = sorted({fix for p in problems for pattern, fix in self.fixes.items() if re.search(pattern, p)})
        lines = [f"{where}: not a valid {name} (openai-openapi {COMMIT[:10]}):", *problems]
        lines += [f"needed fix: {fix}" for fix in fixes]
        lines.append(json.dumps(obj)[:800])
        raise AssertionError("\n".join(lines))


def _problem(error: ValidationError) -> str:
    deepest = best_match([error]) if error.context else error
    return f"{deepest.json_path}: {deepest.message}"


def _branches(defs: dict[str, Any], node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """`node` and every schema it is made of (through $ref, allOf, anyOf, oneOf)."""
    yield node
    if "$ref" in node:
        yield from _branches(defs, defs[node["$ref"].rsplit("/", 1)[1]])
    for key in ("allOf", "anyOf", "oneOf"):
        for branch in node.get(key, ()):
            yield from _branches(defs, branch)


def _naming(defs: dict[str, Any], node: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """The object schemas `node` is made of that name property `name`."""
    return [branch for branch in _branches(defs, node) if name in branch.get("properties", {})]


def _holders(defs: dict[str, Any], allow: Allow) -> tuple[dict[str, Any], str, list[dict[str, Any]]]:
    """The schema `allow.path` leads to, the field's name, and the object schemas there that name it."""
    node = defs[allow.schema]
    *parents, last = allow.path.split("/")
    for name in parents:
        if name == "[]":
            node = node["items"]
            continue
        found = _naming(defs, node, name)
        assert found, f"{allow.schema}/{allow.path}: the document has no {name!r} here"
        node = found[0]["properties"][name]
    return node, last, _naming(defs, node, last)


def _apply(defs: dict[str, Any], allow: Allow) -> None:
    node, last, holders = _holders(defs, allow)
    for holder in holders:
        holder["properties"][last] = {"anyOf": [holder["properties"][last], allow.accept]}
    if not holders:  # a field the document lacks: it joins the first object schema `node` is made of
        holder = next(b for b in _branches(defs, node) if b.get("type") == "object" or "properties" in b)
        holder.setdefault("properties", {})[last] = allow.accept


def _close(node: Any, in_all_of: bool = False) -> None:
    """Refuse properties no schema names (`unevaluatedProperties: false`) on every object schema that lists
    its properties, except the members of an `allOf`: there the whole `allOf` is closed instead."""
    if isinstance(node, list):
        for item in node:
            _close(item)
        return
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        if key == "allOf":
            for member in value:
                _close(member, in_all_of=True)
        elif key in ("properties", "patternProperties", "$defs"):
            for schema in value.values():
                _close(schema)
        elif key not in ("enum", "const", "required"):
            _close(value)
    if ("allOf" in node or ("properties" in node and not in_all_of)) and "additionalProperties" not in node:
        node["unevaluatedProperties"] = False
