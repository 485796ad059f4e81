"""Request -> Plan: what the body asks, which scenario answers, its sequence step and fault roll, the Plan.

What a body asks and its Plan are pure, so a body seen recently (a load test repeats one) is neither read
nor planned again (`recent.py`); choosing the scenario, stepping a sequence and rolling a fault happen for
every request. A request no scenario matched (a miss) gets its report in the journal, and is answered by
the default, refused (strict, or `on_miss` "error") or left to the proxy (`on_miss` "proxy").
"""

from __future__ import annotations

import dataclasses
import json
from functools import partial
from typing import Any

from ..dialects import Asked, Dialect, RequestView
from ..dialects.conversation import keeps
from ..errors import RequestError
from ..faults import Fault
from ..plan import Ask, Plan, make_plan, request_seed
from ..plan.checks import clean_surrogates
from ..plan.matching import resolved
from ..plan.schema import KNOBS_HEADER, request_knobs
from .journal import Entry
from .recent import keyable
from .state import State

# How deep a body may nest. No API request comes near it (a tool's JSON schema nests a few dozen levels);
# much deeper, every recursive step after the decoder (hashing the body, the journal's JSON, a dialect
# echoing a field) would meet Python's recursion limit, so the decoder's answer is the only one.
MAX_DEPTH = 128
TOO_DEEP = RequestError(
    400,
    f"We could not parse the JSON body of your request. (It nests deeper than {MAX_DEPTH} levels.)",
    code="invalid_json",
)


def parse_json(raw: bytes) -> dict[str, Any]:
    """The JSON object of a request body; a 400 in the API's words otherwise."""
    body = load_json(raw)
    if not isinstance(body, dict):
        raise RequestError(400, "The request body must be a JSON object.", code="invalid_json")
    return body


def load_json(raw: bytes) -> Any:
    """Any JSON value no deeper than MAX_DEPTH; a 400 invalid_json otherwise."""
    try:
        value = json.loads(raw)
    except RecursionError:
        raise TOO_DEEP from None
    except ValueError as exc:
        raise RequestError(
            400, f"We could not parse the JSON body of your request. ({exc})", code="invalid_json"
        ) from None
    # Only a body with enough brackets can nest that deep: counting them costs far less than walking it.
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH and _depth(value) > MAX_DEPTH:
        raise TOO_DEEP
    return value


def _depth(value: Any) -> int:
    """How deep a parsed JSON value nests (iterative: a deep value must not recurse)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = item.values()
        elif not isinstance(item, list):
            continue
        deepest = max(deepest, depth)
        if deepest > MAX_DEPTH:
            return deepest
        stack.extend((child, depth + 1) for child in item)
    return deepest


def _asked(
    dialect: Dialect, request: RequestView, raw: bytes | None, header: str | None
) -> tuple[Asked, dict[str, Any]]:
    asked = dialect.parse(request)
    # Lone surrogates ("\ud800", which JSON allows and UTF-8 cannot carry) become U+FFFD in what the
    # request asks and in its knobs, so an answer that echoes them can be encoded; the seed still hashes the
    # body as sent. Only an escape or the bytes of an encoded surrogate can hold one: most bodies skip this.
    if (raw is None or b"\\u" in raw or b"\xed" in raw) and _has_surrogate(asked.request):
        ask = asked.ask
        cleaned = {f.name: clean_surrogates(getattr(ask, f.name)) for f in dataclasses.fields(ask)}
        asked = Asked(dataclasses.replace(ask, **cleaned), clean_surrogates(asked.knobs), asked.request)
    return asked, request_knobs(asked.knobs, header)


def _has_surrogate(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if not item.isascii():
                try:
                    item.encode()
                except UnicodeEncodeError:
                    return True
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def answer_id(plan: Plan, dialect: str) -> str | None:
    """The id a later request names to continue this answer: the one the dialect spells from the plan, or
    the one a recorded answer holds."""
    if plan.replay is not None:
        return plan.replay.recording.answer_id
    return ("resp_" if dialect == "responses" else "msg_") + plan.uid


class Planner:
    """Plans each request against the server's state."""

    def __init__(self, state: State):
        self.state = state

    def body(self, raw: bytes) -> dict[str, Any]:
        """The parsed body; shared with earlier requests of the same bytes, so nothing downstream changes it."""
        return self.state.recent.cached(keyable(raw), lambda: parse_json(raw))

    def plan(self, dialect: Dialect, request: RequestView, raw: bytes | None, entry: Entry) -> Plan | None:
        """The request's Plan; what the journal keeps of the planning goes into `entry` (the sequence step,
        the turn, a miss). None: the proxy answers this request (a miss, `on_miss` "proxy"). `raw` is the
        body's bytes (None for a request without one: nothing is then cached)."""
        state = self.state
        recent, body = state.recent, keyable(raw)
        header = request.headers.get(KNOBS_HEADER)
        key = None if body is None else (dialect.name, request.path, request.query_string, header, body)
        asked, knobs = recent.cached(key, lambda: _asked(dialect, request, raw, header))
        if raw is None:
            entry.source = asked.request  # the JSON request a query string stands for
        ask = state.conversations.resolve(asked.ask, dialect.name)  # a request naming earlier turns sees them all
        scenario, missed = state.scenarios.choose(
            request.headers, knobs, ask, asked.request, dialect.name, session=entry.session, sequences=state.sequences
        )
        if missed and self._missed(entry, request, ask, asked.request, dialect):
            return None
        merged, position, turn = resolved(scenario, knobs, entry.session, state.sequences, ask.turn)
        if position is not None:
            entry.extra["sequence_index"] = position
        if turn is not None:
            entry.extra["turn"] = turn
        settings = state.settings
        fault = self._roll(merged.get("fault"))

        def planned() -> tuple[object, Plan, str | None]:  # the entry keeps its scenario, so no other takes its id
            base_seed = merged.get("seed", settings.seed)
            seed = request_seed(base_seed, asked.request, f"{scenario.name}\0{position}")
            plan = make_plan(
                merged,
                ask,
                seed=seed,
                speed=settings.speed,
                scenario=scenario.name,
                fault=fault,
                recording=scenario.recording,
                source=scenario.source,
                vector_seed=base_seed,
            )
            # The API keeps this answer (a later request may continue it): under this id.
            kept = answer_id(plan, dialect.name) if keeps(dialect.name, asked.request) else None
            return scenario, plan, kept

        # What a Plan depends on besides the request: the scenario object (its id, the cached entry keeps it
        # alive), the sequence step, the server's seed and speed, whether the fault struck, the earlier turns.
        plan_key = None
        if key is not None:
            resolved_ask = None if ask is asked.ask else ask
            plan_key = (key, id(scenario), position, settings.seed, settings.speed, fault is not None, resolved_ask)
        _, plan, kept = recent.cached(plan_key, planned)
        if kept is not None:
            state.conversations.remember(kept, ask)
        return plan

    def _missed(self, entry: Entry, request: RequestView, ask: Ask, body: Any, dialect: Dialect) -> bool:
        """A miss: its report goes into the journal; True when the proxy answers it, Unmatched when the server
        is strict (or `on_miss` is "error"), False when the default answers. The default answering, the report
        is built only if someone reads it (`Entry.miss`): against the scenarios loaded now."""
        state = self.state
        settings, scenarios = state.settings, state.scenarios
        matchable = scenarios.matchable()
        proxied = settings.on_miss == "proxy" and state.proxy is not None
        if proxied or settings.strict or settings.on_miss == "error":
            report = scenarios.report(ask, request.headers, body, dialect.name) if matchable else []
            entry.extra["miss"] = report
            if proxied:
                return True
            raise scenarios.unmatched(report)
        if matchable:
            entry.missed(partial(scenarios.report, ask, request.headers, body, dialect.name, matchable))
        else:
            entry.missed(list)  # no loaded scenario has match rules: an empty report
        return False

    def _roll(self, fault: Fault | None) -> Fault | None:
        """Does the fault strike this call? Rolled from the server seed, so the same seed gives the same hits."""
        if fault is None or fault.probability >= 1:
            return fault
        return fault if self.state.rolls.random() < fault.probability else None
