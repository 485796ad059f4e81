"""Request -> Plan: what the body asks, which scenario answers, its sequence step and fault roll, the Plan.

What a body asks and its Plan are pure, so a body seen recently (a load test repeats one) is neither read
nor planned again (`recent.py`); choosing the scenario, stepping a sequence and rolling a fault happen for
every request.
"""

from __future__ import annotations

import json
from typing import Any

from ..dialects import Asked, Dialect, RequestView
from ..errors import RequestError
from ..faults import Fault
from ..plan import Plan, make_plan, request_seed
from ..plan.matching import resolve
from ..plan.schema import request_knobs
from .recent import keyable
from .state import State

# The Plan, the sequence step taken (None without a sequence) and the JSON object the request stands for.
Planned = tuple[Plan, int | None, Any]


def parse_json(raw: bytes) -> dict[str, Any]:
    """The JSON object of a request body; a 400 in the API's words otherwise."""
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise RequestError(
            400, f"We could not parse the JSON body of your request. ({exc})", code="invalid_json"
        ) from None
    if not isinstance(body, dict):
        raise RequestError(400, "The request body must be a JSON object.", code="invalid_json")
    return body


def _asked(dialect: Dialect, request: RequestView) -> tuple[Asked, dict[str, Any]]:
    asked = dialect.parse(request)
    return asked, request_knobs(asked.knobs)


class Planner:
    """Plans each request against the server's state."""

    def __init__(self, state: State):
        self.state = state

    def body(self, raw: bytes) -> dict[str, Any]:
        """The parsed body; shared with earlier requests of the same bytes, so nothing downstream changes it."""
        return self.state.recent.cached(keyable(raw), lambda: parse_json(raw))

    def plan(self, dialect: Dialect, request: RequestView, raw: bytes | None, session: str | None) -> Planned:
        """`raw` is the body's bytes (None for a request without one: nothing is then cached)."""
        state = self.state
        recent, body = state.recent, keyable(raw)
        key = None if body is None else (dialect.name, request.path, request.query_string, body)
        asked, knobs = recent.cached(key, lambda: _asked(dialect, request))
        ask = asked.ask
        scenario = state.scenarios.select(request.headers, knobs, ask)
        merged, position = resolve(scenario, knobs, session, state.sequences)
        settings = state.settings
        fault = self._roll(merged.get("fault"))

        def planned() -> tuple[object, Plan]:  # the entry keeps its scenario, so no other takes its id
            seed = request_seed(merged.get("seed", settings.seed), asked.request, f"{scenario.name}\0{position}")
            plan = make_plan(merged, ask, seed=seed, speed=settings.speed, scenario=scenario.name, fault=fault)
            return scenario, plan

        # What a Plan depends on besides the request: the scenario object (its id, the cached entry keeps it
        # alive), the sequence step, the server's seed and speed, whether the fault struck.
        plan_key = None
        if key is not None:
            plan_key = (key, id(scenario), position, settings.seed, settings.speed, fault is not None)
        return recent.cached(plan_key, planned)[1], position, asked.request

    def _roll(self, fault: Fault | None) -> Fault | None:
        """Does the fault strike this call? Rolled from the server seed, so the same seed gives the same hits."""
        if fault is None or fault.probability >= 1:
            return fault
        return fault if self.state.rolls.random() < fault.probability else None
