"""`/_mockstream/*`: the request journal, runtime scenarios and reset, as JSON for tests and humans.

Admin calls and `/healthz` are not journaled.
"""

from __future__ import annotations

import json

from aiohttp import web

from .errors import RequestError, ScenarioError
from .scenario import parse_scenarios
from .server import JOURNAL, RECENT, ROLLS, SCENARIOS, SEQUENCES, SETTINGS

PREFIX = "/_mockstream"


def add_routes(app: web.Application) -> None:
    app.router.add_get(f"{PREFIX}/requests", _requests)
    app.router.add_delete(f"{PREFIX}/requests", _clear_requests)
    app.router.add_get(f"{PREFIX}/scenarios", _scenarios)
    app.router.add_post(f"{PREFIX}/scenarios", _add_scenarios)
    app.router.add_post(f"{PREFIX}/reset", _reset)


async def _requests(request: web.Request) -> web.Response:
    query = request.query
    entries = request.app[JOURNAL].select(query.get("session"), query.get("path"), query.get("scenario"))
    return web.json_response([entry.to_json() for entry in entries])


async def _clear_requests(request: web.Request) -> web.Response:
    request.app[JOURNAL].clear()
    return web.json_response({"cleared": True})


async def _scenarios(request: web.Request) -> web.Response:
    scenarios = request.app[SCENARIOS]
    return web.json_response(
        [
            {"name": s.name, "description": s.description, "source": s.source}
            for s in [*scenarios, scenarios.default]
            if s is scenarios.default or s.name != scenarios.default.name
        ]
    )


async def _add_scenarios(request: web.Request) -> web.Response:
    """Add or replace scenarios: the body is what a scenario file holds (one, a list, or {scenarios: [...]})."""
    body = await _read_json_any(request)
    try:
        added = parse_scenarios(body, "request body")
    except ScenarioError as exc:
        param = exc.problems[0].path if exc.problems else None
        raise RequestError(400, str(exc), param, "invalid_scenario") from None
    for scenario in added:
        request.app[SCENARIOS].add(scenario)
    return web.json_response({"added": [s.name for s in added]})


async def _read_json_any(request: web.Request) -> object:
    try:
        return json.loads(await request.read())
    except ValueError as exc:
        raise RequestError(
            400, f"We could not parse the JSON body of your request. ({exc})", code="invalid_json"
        ) from None


async def _reset(request: web.Request) -> web.Response:
    """Clear the journal, every sequence position and what was parsed and planned, and re-seed the fault rolls."""
    app = request.app
    app[JOURNAL].clear()
    app[RECENT].clear()
    app[SEQUENCES].reset()
    app[ROLLS].seed(app[SETTINGS].seed)
    return web.json_response({"reset": True})
