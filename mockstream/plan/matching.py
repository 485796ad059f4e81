"""Pick the scenario that answers a request.

Order: the `X-Mockstream-Scenario` header, then the `scenario` knob, then a scenario named like the
request's model, then what a test scripted, then the first scenario whose `match` rules hold, then the default.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import RequestError
from .plan import Ask
from .schema import DEFAULT, TEXT_SOURCES, Scenario

SCENARIO_HEADER = "X-Mockstream-Scenario"


class Scenarios:
    """The loaded scenarios by name, in load order, with the default last."""

    def __init__(self, scenarios: Iterable[Scenario] = ()):
        self._by_name: dict[str, Scenario] = {}
        self.fallback: str | None = None  # answers requests that name no scenario (a test's script)
        for scenario in scenarios:
            self.add(scenario)

    def add(self, scenario: Scenario) -> None:
        self._by_name[scenario.name] = scenario

    def remove(self, name: str) -> None:
        self._by_name.pop(name, None)
        if self.fallback == name:
            self.fallback = None

    def __iter__(self):
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name or name == DEFAULT.name

    @property
    def default(self) -> Scenario:
        return self._by_name.get(DEFAULT.name, DEFAULT)

    def all(self) -> list[Scenario]:
        """Every scenario a request can name: the loaded ones, then the built-in default unless replaced."""
        return [*self._by_name.values()] + ([] if DEFAULT.name in self._by_name else [DEFAULT])

    def names(self) -> list[str]:
        return [scenario.name for scenario in self.all()]

    def named(self, name: str, param: str) -> Scenario:
        if name == DEFAULT.name:
            return self.default
        try:
            return self._by_name[name]
        except KeyError:
            close = difflib.get_close_matches(name, self.names(), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise RequestError(
                404,
                f"No scenario named {name!r}.{hint} Loaded scenarios: {', '.join(self.names())}.",
                param,
                "scenario_not_found",
            ) from None

    def select(self, headers: Mapping[str, str], knobs: Mapping[str, Any], ask: Ask) -> Scenario:
        if SCENARIO_HEADER in headers:
            return self.named(headers[SCENARIO_HEADER], SCENARIO_HEADER)
        if "scenario" in knobs:
            return self.named(knobs["scenario"], "mockstream.scenario")
        if ask.model in self._by_name:
            return self._by_name[ask.model]
        if self.fallback:
            return self._by_name[self.fallback]
        lowered = {k.lower(): v for k, v in headers.items()}
        for scenario in self._by_name.values():
            if scenario.match(ask.model, ask.last_user, lowered):
                return scenario
        return self.default


ANSWER_KNOBS = (*TEXT_SOURCES, "locale", "tool_calls")


class Sequences:
    """Where each sequence stands. Calls share a position by session header, else by scenario, else by the
    sequence itself; after the last entry the last one repeats, or (cycle) the first comes again."""

    def __init__(self) -> None:
        self._positions: dict[tuple, int] = {}

    def step(self, key: tuple, length: int, cycle: bool) -> int:
        count = self._positions.get(key, 0)
        self._positions[key] = count + 1
        return count % length if cycle else min(count, length - 1)

    def reset(self) -> None:
        self._positions.clear()


def resolve(
    scenario: Scenario, knobs: Mapping[str, Any], session: str | None, sequences: Sequences
) -> tuple[dict[str, Any], int | None]:
    """The knobs that answer this call: scenario < its sequence entry < request knobs < the request's entry.
    Returns them and the sequence position used (None without a sequence)."""
    merged = dict(scenario.knobs)
    position = None
    if "sequence" in merged:
        position, entry = _entry(merged, (session, "scenario", scenario.name), sequences)
        merged = merge(merged, entry)
    request = dict(knobs)
    if "sequence" in request:
        position, entry = _entry(request, (session, "inline", repr(request["sequence"])), sequences)
        request = merge(request, entry)
    return merge(merged, request), position


def _entry(knobs: dict[str, Any], key: tuple, sequences: Sequences) -> tuple[int, dict[str, Any]]:
    sequence = knobs.pop("sequence")
    position = sequences.step(key, len(sequence), knobs.pop("cycle", False))
    return position, sequence[position]


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Request knobs over scenario knobs; an answer (text or tool calls) in the request replaces the whole
    answer of the scenario, so `{"tool_calls": [...]}` alone answers with tool calls only."""
    merged = dict(base)
    if any(key in override for key in ANSWER_KNOBS):
        for key in ANSWER_KNOBS:
            merged.pop(key, None)
    merged.update(override)
    merged.pop("scenario", None)
    return merged
