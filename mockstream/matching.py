"""Pick the scenario that answers a request.

Order: the `X-Mockstream-Scenario` header, then the `scenario` knob, then a scenario named like the
request's model, then the first scenario whose `match` rules hold, then the default.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from .errors import RequestError
from .plan import Ask
from .scenario import DEFAULT, TEXT_SOURCES, Scenario

SCENARIO_HEADER = "X-Mockstream-Scenario"


class Scenarios:
    """The loaded scenarios by name, in load order, with the default last."""

    def __init__(self, scenarios: Iterable[Scenario] = ()):
        self._by_name: dict[str, Scenario] = {}
        for scenario in scenarios:
            self.add(scenario)

    def add(self, scenario: Scenario) -> None:
        self._by_name[scenario.name] = scenario

    def __iter__(self):
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name or name == DEFAULT.name

    @property
    def default(self) -> Scenario:
        return self._by_name.get(DEFAULT.name, DEFAULT)

    def names(self) -> list[str]:
        return list(dict.fromkeys([*self._by_name, DEFAULT.name]))

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
        lowered = {k.lower(): v for k, v in headers.items()}
        for scenario in self._by_name.values():
            if scenario.match(ask.model, ask.last_user, lowered):
                return scenario
        return self.default


ANSWER_KNOBS = (*TEXT_SOURCES, "locale", "tool_calls")


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
