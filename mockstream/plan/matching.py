"""Pick the scenario that answers a request, and the knobs of this call.

Order: the `X-Mockstream-Scenario` header, then the `scenario` knob, then a scenario named like the
request's model, then what a test scripted, then the first scenario whose `match` rules hold, then the default.
Recordings of the same request (the same rules) answer in take order, one take per call. A request that
none of these chose, and that carries no answer of its own, is a *miss*: `Scenarios.report` says which loaded
scenarios came closest and why each failed.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from ..errors import RequestError, Unmatched
from .plan import Ask
from .schema import ANSWER_KNOBS, DEFAULT, REASONING_SOURCES, TEXT_SOURCES, Scenario

SCENARIO_HEADER = "X-Mockstream-Scenario"
# Knobs that say what to answer: a request carrying one scripted itself, so falling to the default is no miss.
# (Timing, cutting, faults and the rest shape whatever answers: a replay takes them too.)
SCRIPTING_KNOBS = (*TEXT_SOURCES, *REASONING_SOURCES, "tool_calls", "sequence", "turns")
CLOSEST = 3  # scenarios a miss report names


class Selection(NamedTuple):
    """The scenario that answers, and whether the request was a miss (nothing chose it, the default answers).
    (A tuple, not a dataclass: every request makes one.)"""

    scenario: Scenario
    missed: bool = False


class Scenarios:
    """The loaded scenarios by name, in load order, with the default last."""

    def __init__(self, scenarios: Iterable[Scenario] = ()):
        self._by_name: dict[str, Scenario] = {}
        self.fallback: str | None = None  # answers requests that name no scenario (a test's script)
        self._matchable: list[Scenario] | None = None  # those with match rules, in load order (built when asked)
        self._takes: dict[str, list[Scenario]] = {}  # recordings by their rules' key, in take order
        for scenario in scenarios:
            self.add(scenario)

    def add(self, scenario: Scenario) -> None:
        self._by_name[scenario.name] = scenario
        self._matchable = None

    def remove(self, name: str) -> None:
        self._by_name.pop(name, None)
        self._matchable = None
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

    def matchable(self) -> list[Scenario]:
        """The scenarios with match rules, in load order."""
        if self._matchable is None:
            self._matchable = [s for s in self._by_name.values() if not s.match.empty]
            takes: dict[str, list[Scenario]] = {}
            for scenario in self._matchable:
                if scenario.recording is not None:
                    takes.setdefault(scenario.match.key, []).append(scenario)
            for group in takes.values():
                group.sort(key=lambda s: s.recording.take if s.recording is not None else 0)  # stable: load order
            self._takes = {key: group for key, group in takes.items() if len(group) > 1}
        return self._matchable

    def choose(
        self,
        headers: Mapping[str, str],
        knobs: Mapping[str, Any],
        ask: Ask,
        body: Any = None,
        dialect: str = "",
        *,
        session: str | None = None,
        sequences: Sequences | None = None,
    ) -> Selection:
        """Which scenario answers a request: its headers, its knobs, what it asks, its JSON body and its
        dialect's name. Recordings of the same request take turns through `sequences` (kept by session)."""
        if SCENARIO_HEADER in headers:
            return Selection(self.named(headers[SCENARIO_HEADER], SCENARIO_HEADER))
        if "scenario" in knobs:
            return Selection(self.named(knobs["scenario"], "mockstream.scenario"))
        by_name = self._by_name
        if ask.model in by_name:
            return Selection(by_name[ask.model])
        if self.fallback:
            return Selection(by_name[self.fallback])
        matchable = self.matchable()
        if matchable:
            lowered = {k.lower(): v for k, v in headers.items()}
            for scenario in matchable:
                if scenario.match.holds(ask, lowered, body, dialect):
                    return Selection(self._take(scenario, session, sequences))
        missed = DEFAULT.name not in by_name and (not knobs or knobs.keys().isdisjoint(SCRIPTING_KNOBS))
        return Selection(self.default, missed)

    def _take(self, scenario: Scenario, session: str | None, sequences: Sequences | None) -> Scenario:
        """A recording recorded more than once answers with its next take (then the last one repeats)."""
        if scenario.recording is None or sequences is None or not self._takes:
            return scenario
        key = scenario.match.key
        group = self._takes.get(key)
        if group is None:
            return scenario
        return group[sequences.step((session, "takes", key), len(group), False)]

    def report(
        self,
        ask: Ask,
        headers: Mapping[str, str],
        body: Any = None,
        dialect: str = "",
        among: Sequence[Scenario] | None = None,
    ) -> list[dict]:
        """The miss report: the scenarios with match rules that came closest (fewest failed rules, then load
        order; at most CLOSEST), each with the rules that failed: `[{scenario, failed: [{rule, wanted, got}]}]`.
        `among`: the scenarios to judge (`matchable()` as it was when the request came, for a report built
        later); the loaded ones by default."""
        lowered = {k.lower(): v for k, v in headers.items()}
        scored = []
        for order, scenario in enumerate(self.matchable() if among is None else among):
            failed = scenario.match.failures(ask, lowered, body, dialect)
            if failed:
                scored.append((len(failed), order, scenario.name, failed))
        scored.sort(key=lambda item: item[:2])
        return [
            {"scenario": name, "failed": [_shortened(f.to_json()) for f in failed]}
            for _, _, name, failed in scored[:CLOSEST]
        ]

    def unmatched(self, report: list[dict]) -> Unmatched:
        """The 404 of a miss in a strict server: the report in words."""
        if report:
            closest = "; ".join(f"{item['scenario']} ({_failures(item['failed'])})" for item in report)
            message = f"No scenario matched this request. Closest: {closest}."
        else:
            loaded = ", ".join(s.name for s in self._by_name.values()) or "none"
            message = f"No scenario matched this request: no loaded scenario has match rules (loaded: {loaded})."
        return Unmatched(message, report)


SHOWN = 200  # characters of a text a report keeps (a user message can be long)


def _shortened(failed: dict[str, Any]) -> dict[str, Any]:
    got = failed["got"]
    if isinstance(got, str) and len(got) > SHOWN:
        failed["got"] = got[:SHOWN] + "…"
    return failed


def _failures(failed: list[dict[str, Any]]) -> str:
    return "; ".join(f"{f['rule']}: wanted {_shown(f['wanted'])}, got {_shown(f['got'])}" for f in failed)


def _shown(value: Any) -> str:
    if value is None:
        return "nothing"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


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


class Resolved(NamedTuple):
    """The knobs of one call, the sequence position used (None without a sequence) and the `turns` entry
    used (None without turns). (A tuple: every request makes one.)"""

    knobs: dict[str, Any]
    position: int | None
    turn: int | None


def resolved(
    scenario: Scenario, knobs: Mapping[str, Any], session: str | None, sequences: Sequences, turn: int = 0
) -> Resolved:
    """The knobs that answer a call at conversation turn `turn`: scenario < its sequence entry < its turns
    entry < request knobs < the request's sequence entry < the request's turns entry."""
    merged = dict(scenario.knobs)
    position = used = None
    if "sequence" in merged:
        position, entry = _entry(merged, (session, "scenario", scenario.name), sequences)
        merged = merge(merged, entry)
    if "turns" in merged:
        used, entry = _turn(merged, turn)
        merged = merge(merged, entry)
    request = dict(knobs)
    if "sequence" in request:
        position, entry = _entry(request, (session, "inline", repr(request["sequence"])), sequences)
        request = merge(request, entry)
    if "turns" in request:
        used, entry = _turn(request, turn)
        request = merge(request, entry)
    return Resolved(merge(merged, request), position, used)


def _entry(knobs: dict[str, Any], key: tuple, sequences: Sequences) -> tuple[int, dict[str, Any]]:
    sequence = knobs.pop("sequence")
    position = sequences.step(key, len(sequence), knobs.pop("cycle", False))
    return position, sequence[position]


def _turn(knobs: dict[str, Any], turn: int) -> tuple[int, dict[str, Any]]:
    """The turns entry of a call at `turn` (past the end, the last one): no state, the request says it."""
    turns = knobs.pop("turns")
    used = min(turn, len(turns) - 1)
    return used, turns[used]


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
