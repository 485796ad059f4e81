"""A scenario's `match` rules: when it answers a request that names no scenario. Every rule given must hold.

Each rule reads the request alone (what `Ask` says of the conversation, the headers, the JSON body, the
dialect's name), so matching is stateless: the same request matches the same way in every test, worker and
replica. `Match.holds` is the check each request pays for; `Match.failures` says which rules failed and with
what values, for the report of a request that nothing matched.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from ..errors import Problem
from .checks import Invalid, closest, string, type_name
from .plan import Ask

# The names `dialect` may take (the dialects' own names; plan/ cannot import dialects/, a test keeps them equal).
DIALECT_NAMES = (
    "chat",
    "completions",
    "responses",
    "messages",
    "eventsource",
    "embeddings",
    "gemini",
    "gemini_embed",
    "gemini_batch_embed",
)
LAST_ROLES = ("user", "tool", "assistant", "system")
MATCH_FIELDS = ("model", "user", "headers", "dialect", "turn", "last_role", "tool_result", "system", "tools", "body")
_ABSENT = object()


@dataclass(frozen=True, slots=True)
class Failed:
    """A rule that did not hold: its name (`turn`, `headers.x-team`, `body.temperature`), what it wanted (a
    regex rule: its pattern) and what the request had (None: nothing)."""

    rule: str
    wanted: Any
    got: Any

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "wanted": self.wanted, "got": self.got}


@dataclass(frozen=True, slots=True)
class BodyRule:
    """One `body` rule: a dotted path into the request body (`a.b.0.c`; a number indexes a list) and the value
    wanted there: a regex `fullmatch`ed against a string field, any other value compared with ==."""

    path: str
    wanted: Any
    pattern: re.Pattern | None = None

    def got(self, body: Any) -> Any:
        """The value at the path, or _ABSENT."""
        value = body
        for part in self.path.split("."):
            if isinstance(value, dict):
                value = value.get(part, _ABSENT)
            elif isinstance(value, list) and part.isdecimal() and int(part) < len(value):
                value = value[int(part)]
            else:
                return _ABSENT
            if value is _ABSENT:
                return _ABSENT
        return value

    def holds(self, body: Any) -> bool:
        got = self.got(body)
        if self.pattern is not None:
            return isinstance(got, str) and self.pattern.fullmatch(got) is not None
        return got is not _ABSENT and _same(got, self.wanted)


def _given(match: Match, name: str) -> bool:
    """Is the rule `name` given? (`tools: []` is: no tools offered; `headers` and `body` are when not empty.)"""
    value = getattr(match, name)
    return value is not None and (name == "tools" or value != ())


def _same(got: Any, wanted: Any) -> bool:
    """JSON equality: true is not 1, and 1 is 1.0."""
    if isinstance(wanted, bool) or isinstance(got, bool):
        return type(got) is type(wanted) and got == wanted
    return bool(got == wanted)


@dataclass(frozen=True)
class Match:
    """When a scenario answers a request that names none: all given rules must hold (none given: never)."""

    model: str | None = None  # regex, fullmatch
    user: re.Pattern | None = None  # regex searched in the last user message
    headers: tuple[tuple[str, str], ...] = ()  # lower-case name, exact value
    dialect: str | None = None
    turn: int | None = None
    last_role: str | None = None
    tool_result: re.Pattern | None = None
    system: re.Pattern | None = None
    tools: tuple[str, ...] | None = None  # the offered set, exactly: sorted, each once (as `Ask.tools` is)
    body: tuple[BodyRule, ...] = ()
    empty: bool = field(init=False, repr=False, compare=False)
    _model: re.Pattern | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_model", None if self.model is None else re.compile(self.model))
        object.__setattr__(self, "empty", not any(_given(self, name) for name in MATCH_FIELDS))

    def holds(self, ask: Ask, headers: Mapping[str, str], body: Any = None, dialect: str = "") -> bool:
        """Do all rules hold? `headers` with lower-case names; `body` the request's JSON object."""
        if self.empty:
            return False
        if self._model is not None and not self._model.fullmatch(ask.model):
            return False
        if self.dialect is not None and dialect != self.dialect:
            return False
        if self.turn is not None and ask.turn != self.turn:
            return False
        if self.last_role is not None and ask.last_role != self.last_role:
            return False
        if self.user is not None and not self.user.search(ask.last_user):
            return False
        if self.tool_result is not None and not self.tool_result.search(ask.tool_result):
            return False
        if self.system is not None and not self.system.search(ask.system):
            return False
        if self.tools is not None and ask.tools != self.tools:
            return False
        if not all(headers.get(name) == value for name, value in self.headers):
            return False
        return all(rule.holds(body) for rule in self.body)

    def failures(self, ask: Ask, headers: Mapping[str, str], body: Any = None, dialect: str = "") -> list[Failed]:
        """The rules that do not hold, in MATCH_FIELDS order, with what each wanted and what the request had."""
        failed: list[Failed] = []

        def check(rule: str, wanted: Any, got: Any, ok: bool) -> None:
            if not ok:
                failed.append(Failed(rule, wanted, got))

        if self.model is not None:
            check("model", self.model, ask.model, self._model is not None and bool(self._model.fullmatch(ask.model)))
        if self.user is not None:
            check("user", self.user.pattern, ask.last_user, bool(self.user.search(ask.last_user)))
        for name, value in self.headers:
            check(f"headers.{name}", value, headers.get(name), headers.get(name) == value)
        if self.dialect is not None:
            check("dialect", self.dialect, dialect, dialect == self.dialect)
        if self.turn is not None:
            check("turn", self.turn, ask.turn, ask.turn == self.turn)
        if self.last_role is not None:
            check("last_role", self.last_role, ask.last_role, ask.last_role == self.last_role)
        for name, pattern, text in (
            ("tool_result", self.tool_result, ask.tool_result),
            ("system", self.system, ask.system),
        ):
            if pattern is not None:
                check(name, pattern.pattern, text, bool(pattern.search(text)))
        if self.tools is not None:
            check("tools", list(self.tools), list(ask.tools), ask.tools == self.tools)
        for rule in self.body:
            got = rule.got(body)
            check(f"body.{rule.path}", rule.wanted, None if got is _ABSENT else got, rule.holds(body))
        return failed

    def to_dict(self) -> dict[str, Any]:
        """The rules as a scenario file writes them (what `parse_match` reads back)."""
        out: dict[str, Any] = {}
        for name in MATCH_FIELDS:
            if not _given(self, name):
                continue
            value = getattr(self, name)
            if isinstance(value, re.Pattern):
                value = value.pattern
            elif name == "headers":
                value = dict(value)
            elif name == "tools":
                value = list(value)
            elif name == "body":
                value = {rule.path: rule.wanted for rule in value}
            out[name] = value
        return out

    @cached_property
    def key(self) -> str:
        """The same for the same rules: recordings of one request share it (and answer in take order)."""
        return json.dumps(self.to_dict(), sort_keys=True, ensure_ascii=False, default=repr)


def parse_match(raw: Any, path: str) -> tuple[Match, list[Problem]]:
    """Validate a `match` object; every problem names its field (`match.turn`)."""
    if not isinstance(raw, Mapping):
        return Match(), [Problem(path, f"expected an object, got {type_name(raw)}")]
    problems = []
    for key in raw:
        if key not in MATCH_FIELDS:
            problems.append(
                Problem(
                    f"{path}.{key}",
                    f"unknown field{closest(str(key), MATCH_FIELDS)}; expected one of: {', '.join(MATCH_FIELDS)}",
                )
            )
    rules: dict[str, Any] = {}
    for key, value in raw.items():
        where = f"{path}.{key}"
        try:
            if key == "model":
                re.compile(string(value, where))
                rules[key] = value
            elif key in ("user", "tool_result", "system"):
                rules[key] = re.compile(string(value, where))
            elif key == "headers":
                if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
                    raise Invalid(where, "expected an object of header name -> string value")
                rules[key] = tuple((str(k).lower(), v) for k, v in value.items())
            elif key == "dialect":
                rules[key] = _one_of(value, DIALECT_NAMES, where, "dialect")
            elif key == "last_role":
                rules[key] = _one_of(value, LAST_ROLES, where, "role")
            elif key == "turn":
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise Invalid(where, f"expected an integer >= 0, got {_shown(value)}")
                rules[key] = value
            elif key == "tools":
                if not isinstance(value, list) or not all(isinstance(name, str) and name for name in value):
                    raise Invalid(where, "expected an array of tool names (an empty array: no tools offered)")
                rules[key] = tuple(sorted(set(value)))
            elif key == "body":
                rules[key] = _body(value, where, problems)
        except re.error as exc:
            problems.append(Problem(where, f"not a valid regular expression: {exc}"))
        except Invalid as exc:
            problems.append(exc.problem)
    return Match(**rules), problems


def _one_of(value: Any, options: tuple[str, ...], where: str, noun: str) -> str:
    if value not in options:
        hint = closest(str(value), options)
        raise Invalid(where, f"unknown {noun} {value!r}{hint}; expected one of: {', '.join(options)}")
    return value


def _shown(value: Any) -> str:
    return repr(value) if isinstance(value, (int, float, str)) else type_name(value)


def _body(raw: Any, path: str, problems: list[Problem]) -> tuple[BodyRule, ...]:
    if not isinstance(raw, Mapping) or not raw:
        raise Invalid(path, "expected an object of dotted path -> value (a string value is a regex)")
    rules = []
    for key, wanted in raw.items():
        where = f"{path}.{key}"
        if not isinstance(key, str) or not all(key.split(".")):
            problems.append(Problem(where, "expected a dotted path such as response_format.type or messages.0.role"))
            continue
        try:
            json.dumps(wanted)
        except (TypeError, ValueError):
            problems.append(Problem(where, f"expected a JSON value, got {type_name(wanted)}"))
            continue
        pattern = None
        if isinstance(wanted, str):
            try:
                pattern = re.compile(wanted)
            except re.error as exc:
                problems.append(Problem(where, f"not a valid regular expression: {exc}"))
                continue
        rules.append(BodyRule(key, wanted, pattern))
    return tuple(rules)
