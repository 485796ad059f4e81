"""Small validators shared by the scenario schema and the fault catalogue.

Each check takes (value, path) and returns the cleaned value or raises `Invalid` naming the path. Each also
describes itself as a JSON Schema fragment (`describe(check)`), so the published schema of scenario files is
generated from the very checks that validate them.
"""

from __future__ import annotations

import copy
import difflib
import math
import re
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from ..errors import Problem


class Invalid(Exception):
    def __init__(self, path: str, message: str):
        self.problem = Problem(path, message)


F = TypeVar("F", bound=Callable[..., Any])

# check -> its JSON Schema fragment; weak, so a check made on the fly does not live on because it was described
_SCHEMAS: weakref.WeakKeyDictionary[Callable[..., Any], dict[str, Any]] = weakref.WeakKeyDictionary()


def described(fragment: dict[str, Any]) -> Callable[[F], F]:
    """Decorate a check with the JSON Schema fragment that says what it accepts."""

    def attach(check: F) -> F:
        _SCHEMAS[check] = fragment
        return check

    return attach


def describe(check: Callable[..., Any]) -> dict[str, Any]:
    """The JSON Schema fragment of a check (a fresh copy); TypeError for a check that does not describe itself."""
    try:
        return copy.deepcopy(_SCHEMAS[check])
    except (KeyError, TypeError):
        raise TypeError(f"check {check!r} has no JSON Schema description: give it one with described()") from None


def type_name(value: Any) -> str:
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object"}.get(
        type(value), type(value).__name__
    )


@described({"type": "string"})
def string(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise Invalid(path, f"expected a string, got {type_name(value)}")
    return value


def number(low: float = 0.0, high: float = math.inf) -> Callable[[Any, str], float]:
    def check(value: Any, path: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise Invalid(path, f"expected a number, got {type_name(value)}")
        if not low <= value <= high:
            raise Invalid(path, f"must be between {_plain(low)} and {_plain(high)}, got {_plain(value)}")
        return float(value)

    fragment: dict[str, Any] = {"type": "number", "minimum": _json_number(low)}
    if math.isfinite(high):
        fragment["maximum"] = _json_number(high)
    return described(fragment)(check)


def integer(low: int = 0, high: int | None = None) -> Callable[[Any, str], int]:
    def check(value: Any, path: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid(path, f"expected an integer, got {type_name(value)}")
        if value < low or (high is not None and value > high):
            bound = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise Invalid(path, f"must be {bound}, got {value}")
        return value

    fragment: dict[str, Any] = {"type": "integer", "minimum": low}
    if high is not None:
        fragment["maximum"] = high
    return described(fragment)(check)


def choice(options: Iterable[str]) -> Callable[[Any, str], str]:
    options = tuple(options)

    def check(value: Any, path: str) -> str:
        if value not in options:
            raise Invalid(path, f"unknown value {value!r}; expected one of: {', '.join(options)}")
        return value

    return described({"enum": list(options)})(check)


def closest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def reject_unknown(obj: Mapping, allowed: Iterable[str], path: str) -> None:
    allowed = tuple(allowed)
    for key in obj:
        if key not in allowed:
            where = f"{path}.{key}" if path else str(key)
            raise Invalid(where, f"unknown field{closest(str(key), allowed)}; expected one of: {', '.join(allowed)}")


@described({"type": "boolean"})
def boolean(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise Invalid(path, f"expected true or false, got {type_name(value)}")
    return value


def optional(check: Callable[[Any, str], Any]) -> Callable[[Any, str], Any]:
    fragment = describe(check)
    if isinstance(fragment.get("type"), str) and not {"enum", "const"} & set(fragment):
        fragment["type"] = [fragment["type"], "null"]
    else:
        fragment = {"anyOf": [fragment, {"type": "null"}]}
    return described(fragment)(lambda value, path: None if value is None else check(value, path))


def _json_number(number: float) -> float | int:
    """0.0 -> 0 in the schema (what a person writes); 0.5 stays 0.5."""
    return int(number) if float(number).is_integer() else number


def _plain(number: float) -> str:
    """3600000.0 -> '3600000', 0.5 -> '0.5' (never '3.6e+06' in a message meant for people)."""
    return str(int(number)) if float(number).is_integer() else repr(number)


_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_surrogates(value: Any) -> Any:
    """A JSON value with every lone surrogate (JSON allows "\\ud800", UTF-8 cannot carry it) as U+FFFD, so an
    answer that echoes it, or a file that keeps it, can be encoded. Recursive: give it a value of bounded depth."""
    if isinstance(value, str):
        return value if value.isascii() else _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {clean_surrogates(k): clean_surrogates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean_surrogates(v) for v in value]
    return value
