"""`/_mockstream/*`: the request journal, runtime scenarios and reset, as JSON for tests and humans; the
journal's live feed and the inspector page that reads it.

Admin calls and `/healthz` are not journaled. Test-only surfaces: they answer wherever the server listens, and
`--admin off` removes them all.
"""

from __future__ import annotations

from aiohttp import web

from ..errors import RequestError, ScenarioError
from ..plan.matching import Scenarios
from ..plan.schema import parse_scenarios
from . import browsers
from .detail import detail, summary
from .errors import read_body
from .feed import Feed
from .planner import load_json
from .state import State

PREFIX = "/_mockstream"


def add_routes(app: web.Application, state: State) -> None:
    async def requests(request: web.Request) -> web.Response:
        query = request.query
        if state.shared is not None:  # every worker's ended requests
            shown = await state.shared.journal()
            wanted = {name: query[name] for name in ("session", "path", "scenario") if name in query}
            return web.json_response([e for e in shown if all(e.get(k) == v for k, v in wanted.items())])
        entries = state.journal.select(query.get("session"), query.get("path"), query.get("scenario"))
        return web.json_response([summary(entry, state) for entry in entries])

    async def one_request(request: web.Request) -> web.Response:
        text = request.match_info["id"]
        entry = state.journal.get(int(text)) if text.isdigit() else None
        if entry is None:
            raise RequestError(
                404, f"No request {text!r} in the journal (it keeps the last {state.journal.size}).", "id", "not_found"
            )
        return web.json_response(detail(entry, state))

    feed = Feed(state)

    async def info(request: web.Request) -> web.Response:
        return web.json_response(feed.info())

    async def stop_feed(app: web.Application) -> None:
        feed.close()

    async def clear_requests(request: web.Request) -> web.Response:
        if state.shared is not None:
            await state.shared.clear_journal()
        state.journal.clear()
        return web.json_response({"cleared": True})

    async def scenarios(request: web.Request) -> web.Response:
        loaded = state.scenarios
        return web.json_response(
            [
                {"name": s.name, "description": s.description, "source": s.source}
                for s in [*loaded, loaded.default]
                if s is loaded.default or s.name != loaded.default.name
            ]
        )

    async def add_scenarios(request: web.Request) -> web.Response:
        """Add or replace scenarios: the body is what a scenario file holds (one, a list, or {scenarios: [...]})."""
        body = await _read_json_any(request, state.settings.read_timeout)
        try:
            added = parse_scenarios(body, "request body")
        except ScenarioError as exc:
            param = exc.problems[0].path if exc.problems else None
            raise RequestError(400, str(exc), param, "invalid_scenario") from None
        if state.shared is not None:  # for every worker, from its next request on
            await state.shared.add_scenarios(zip([s.name for s in added], _documents(body), strict=True))
        for scenario in added:
            state.scenarios.add(scenario)
        return web.json_response({"added": [s.name for s in added]})

    async def reset(request: web.Request) -> web.Response:
        if state.shared is not None:
            await state.shared.reset()
            state.scenarios = Scenarios(state.loaded)
        state.reset()
        return web.json_response({"reset": True})

    app.router.add_get(f"{PREFIX}/requests", requests)
    app.router.add_get(f"{PREFIX}/requests/{{id}}", one_request)
    app.router.add_get(f"{PREFIX}/events", feed.handle)
    app.router.add_get(f"{PREFIX}/info", info)
    app.on_shutdown.append(stop_feed)
    browsers.add_inspector(app)
    app.router.add_delete(f"{PREFIX}/requests", clear_requests)
    app.router.add_get(f"{PREFIX}/scenarios", scenarios)
    app.router.add_post(f"{PREFIX}/scenarios", add_scenarios)
    app.router.add_post(f"{PREFIX}/reset", reset)


def _documents(body: object) -> list[dict]:
    """The scenario objects of a posted body (one, a list, or {scenarios: [...]}), as posted."""
    if isinstance(body, dict) and "scenarios" in body:
        body = body["scenarios"]
    items = body if isinstance(body, list) else [body]
    return [item for item in items if isinstance(item, dict)]


async def _read_json_any(request: web.Request, timeout: float) -> object:
    return load_json(await read_body(request, timeout))
