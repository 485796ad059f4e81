"""Small validators shared by the scenario schema and the fault catalogue.

Each check takes (value, path) and returns the cleaned value or raises `Invalid` naming the path.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..errors import Problem


class Invalid(Exception):
    def __init__(self, path: str, message: str):
        self.problem = Problem(path, message)


def type_name(value: Any) -> str:
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object"}.get(
        type(value), type(value).__name__
    )


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

    return check


def integer(low: int = 0, high: int | None = None) -> Callable[[Any, str], int]:
    def check(value: Any, path: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid(path, f"expected an integer, got {type_name(value)}")
        if value < low or (high is not None and value > high):
            bound = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise Invalid(path, f"must be {bound}, got {value}")
        return value

    return check


def choice(options: Iterable[str]) -> Callable[[Any, str], str]:
    options = tuple(options)

    def check(value: Any, path: str) -> str:
        if value not in options:
            raise Invalid(path, f"unknown value {value!r}; expected one of: {', '.join(options)}")
        return value

    return check


def closest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def reject_unknown(obj: Mapping, allowed: Iterable[str], path: str) -> None:
    allowed = tuple(allowed)
    for key in obj:
        if key not in allowed:
            where = f"{path}.{key}" if path else str(key)
            raise Invalid(where, f"unknown field{closest(str(key), allowed)}; expected one of: {', '.join(allowed)}")


def boolean(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise Invalid(path, f"expected true or false, got {type_name(value)}")
    return value


def optional(check: Callable[[Any, str], Any]) -> Callable[[Any, str], Any]:
    return lambda value, path: None if value is None else check(value, path)


def _plain(number: float) -> str:
    """3600000.0 -> '3600000', 0.5 -> '0.5' (never '3.6e+06' in a message meant for people)."""
    return str(int(number)) if float(number).is_integer() else repr(number)
