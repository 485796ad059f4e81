"""The aiohttp application: routes, and the thin handler every API route shares (validate, plan, answer).

This room knows HTTP and nothing else: the JSON belongs to `dialects/`, what is said to `plan/`, bytes and
time to `deliver/`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from functools import partial

from aiohttp import HttpVersion11, hdrs, web

from ..dialects import Dialect, RequestView
from ..dialects.registry import DIALECTS
from ..errors import RequestError, Unmatched
from ..plan import Plan
from ..plan.schema import Scenario
from . import admin as admin_routes
from . import browsers, models, shared
from .aiohttp_private import set_expect_handler
from .direct import DIRECT_ROUTES, DirectRoutes
from .errors import MAX_BODY, TOO_LARGE, Handler, internal_error, middleware, read_body, refuse
from .exchange import Exchange
from .journal import DEFAULT_SIZE, Entry
from .planner import Planner
from .state import DEFAULT_READ_TIMEOUT, STATE, State

SESSION_HEADER = "X-Mockstream-Session"
PLAIN_JSON = "application/json"
JSON_TYPES = (PLAIN_JSON, "application/octet-stream")


def create_app(
    scenarios: Iterable[Scenario] = (),
    *,
    seed: int = 0,
    speed: float = 1.0,
    journal_size: int = DEFAULT_SIZE,
    cors_origins: Iterable[str] = ("*",),
    routes: Mapping[str, str] | None = None,
    static: str | None = None,
    read_timeout: float = DEFAULT_READ_TIMEOUT,
    strict: bool = False,
    on_miss: str = "default",
    record_all: bool = False,
    admin: bool = True,
    metrics: bool = False,
    multiprocess_dir: str | None = None,
    state: str = "memory",
    state_prefix: str = "mockstream:",
) -> web.Application:
    """A ready mock server application; run it with aiohttp's runners or `aiohttp_client`.

    `routes` mounts dialects at more paths (`{"/api/chat": "chat"}`); `static` serves a folder at `/`
    (otherwise `/` is the demo page); `cors_origins` are the origins browsers may call from;
    `read_timeout` is how long a request's body may take to arrive (then a 408, and the connection closes).
    A request no scenario matched is answered by the default, or with `strict` (or `on_miss="error"`) refused
    with a 404 naming the closest scenarios; `on_miss="proxy"` leaves it to `State.proxy`, and `record_all`
    sends every API request there. `admin` serves `/_mockstream/*` (the journal, runtime scenarios, the
    inspector); `metrics` serves Prometheus metrics at `/metrics` (every worker's, from `multiprocess_dir`).
    `state` is where what requests share lives: `memory`, or a Redis URL that every worker and replica with
    the same `state_prefix` shares (see shared.py). `State.of(app)` is its state."""
    store = state
    server = State(
        scenarios,
        seed=seed,
        speed=speed,
        journal_size=journal_size,
        cors_origins=cors_origins,
        read_timeout=read_timeout,
        strict=strict,
        on_miss=on_miss,
        record_all=record_all,
        admin=admin,
    )
    paths: dict[str, Dialect] = {}  # each API path's dialect: its 404 and 405 are in the API's words
    # auto_decompress off: the body's Content-Encoding is read by `read_body`, in the API's words
    app = web.Application(
        middlewares=[middleware(server, paths)], client_max_size=MAX_BODY, handler_args={"auto_decompress": False}
    )
    app[STATE] = server
    if store != "memory":
        shared.install(app, server, store, state_prefix, journal_size)
    if admin:
        admin_routes.add_routes(app, server)
    if metrics:
        from .metrics import GAP_BOUNDS_MS, Metrics  # imported only when asked for: prometheus_client is not light

        server.metrics = Metrics(multiprocess_dir)
        server.gap_bounds = GAP_BOUNDS_MS
        server.journal.listeners.append(server.metrics.ended)
        app.router.add_get("/metrics", server.metrics.handle)
    planner = Planner(server)
    direct = app[DIRECT_ROUTES] = DirectRoutes()  # the routes served past the Application (see direct.py)

    def add(method: str, path: str, dialect: Dialect) -> None:
        answer = handler(server, planner, dialect, path)
        app.router.add_route(method, path, answer)
        if "{" not in path:
            direct.routes.setdefault((method, path), answer)  # the first route of a path wins, as in the router
        if method == "POST":
            paths[path] = dialect

    for dialect in DIALECTS.values():
        for method, path in dialect.routes:
            add(method, path, dialect)
    for path, name in (routes or {}).items():
        add("POST", path, DIALECTS[name])
        if name == "chat":  # the same path answers a browser's EventSource
            add("GET", path, DIALECTS["eventsource"])
    models.add_routes(app, server)
    browsers.add_routes(app, static)
    browsers.allow_cors(app, server.cors_origins)
    # Last, and without CORS of its own: a request no route takes meets a route of ours (and our `Expect`
    # handling) rather than aiohttp's stand-in, which answers an odd `Expect` header itself.
    app.router.add_route("*", r"/{unrouted:[\s\S]*}", _unrouted)  # any path, a newline in it too
    for route in app.router.routes():
        set_expect_handler(route, _expect)
    direct.do_without(app)  # the error middleware (an API handler answers its own) and the CORS signal
    return app


async def _unrouted(request: web.Request) -> web.StreamResponse:
    """The 405 of a path some route takes with another method, else the 404 (the middleware words both)."""
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if resource is not request.match_info.route.resource:
            allowed |= (await resource.resolve(request))[1]
    if allowed:
        raise web.HTTPMethodNotAllowed(request.method, allowed)
    raise web.HTTPNotFound()


async def _expect(request: web.Request) -> None:
    """`Expect: 100-continue` gets its 100 Continue; any other expectation is ignored (RFC 9110 lets a
    server answer as if the header were absent) rather than refused in aiohttp's plain-text 417."""
    if request.version == HttpVersion11 and request.headers.get(hdrs.EXPECT, "").lower() == "100-continue":
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0


def handler(state: State, planner: Planner, dialect: Dialect, route: str) -> Handler:
    """The handler of one dialect's route (`route`: its path pattern): one coroutine for the whole exchange
    (no wrapper layer, no middleware frame), since each layer costs memory per open stream and a resume per
    wake-up."""
    journal, in_flight, settings = state.journal, state.in_flight.tasks, state.settings

    async def handle(request: web.Request) -> web.StreamResponse:
        if state.arrivals is not None:
            state.arrivals.begun(request.protocol)
        task = asyncio.current_task()
        assert task is not None
        in_flight.add(task)
        entry = None
        try:
            loop = asyncio.get_running_loop()
            start = loop.time()
            headers = request.headers
            entry = journal.open(request.method, request.path, headers)
            entry.session = headers.get(SESSION_HEADER)
            entry.route = route
            entry.dialect = dialect.name
            if "Last-Event-ID" in headers:
                entry.extra["last_event_id"] = headers["Last-Event-ID"]
            forward_all = settings.record_all and state.proxy is not None
            try:
                raw = await _read(request, settings.read_timeout, any_type=forward_all)
                if forward_all:
                    plan = None
                elif state.shared is None:
                    plan = _plan(request, raw, planner, dialect, entry)
                else:
                    plan = await shared.planned(state, partial(_plan, request, raw, planner, dialect, entry))
            except (RequestError, web.HTTPRequestEntityTooLarge) as exc:
                error = exc if isinstance(exc, RequestError) else TOO_LARGE
                outcome = "unmatched" if isinstance(error, Unmatched) else "rejected"
                entry.extra["rejected"] = error.code or error.type
                journal.close(entry, error.status, outcome, round((loop.time() - start) * 1000, 3))
                return await refuse(request, error, dialect, settings.headers)
            if plan is None:  # the upstream answers: recording everything, or a request no scenario matched
                assert state.proxy is not None
                if entry.source is None:  # what the journal shows of it (`_plan` did not run)
                    entry.source = raw if raw is not None else dict(request.query)
                journal.started(entry)
                return await state.proxy.forward(request, raw, dialect, entry)
            entry.scenario = plan.scenario
            if journal.opened:
                journal.started(entry)
            exchange = Exchange(state, request, dialect, plan, entry, start)
            try:
                return await exchange.answer()
            except asyncio.CancelledError:
                exchange.finish(exchange.cut_short())
                raise
        except Exception as exc:  # a bug of ours before the response started: the API's 500
            if entry is not None and entry.outcome == "in_progress":
                journal.close(entry, 500, "internal_error", round((time.time() - entry.time) * 1000, 3))
            return internal_error(state, request, exc, dialect)
        finally:
            in_flight.discard(task)

    handle.journaled = True  # type: ignore[attr-defined]  # answers its own errors; its entry is its log
    return handle


def _plan(request: web.Request, raw: bytes | None, planner: Planner, dialect: Dialect, entry: Entry) -> Plan | None:
    """The request's Plan (None: the proxy answers it). The parsed body lives no longer than this call (about
    1.3 KiB per open stream otherwise): the journal keeps its bytes, or the query string's request for a GET."""
    body = planner.body(raw) if raw is not None else None
    entry.source = raw if raw is not None else dict(request.query)  # what the journal shows of a refusal
    view = RequestView(request.method, request.path, request.query_string, request.headers, body)
    return planner.plan(dialect, view, raw, entry)


async def _read(request: web.Request, timeout: float, any_type: bool = False) -> bytes | None:
    """The body's bytes (None for a GET: its query string is the request); JSON only unless `any_type`."""
    if request.method == "GET":
        return None
    if not any_type and request.headers.get(hdrs.CONTENT_TYPE) != PLAIN_JSON and not _json(request):
        raise RequestError(
            415,
            f"Unsupported Content-Type {request.content_type!r}: send the body as application/json.",
            code="unsupported_media_type",
        )
    return await read_body(request, timeout)


def _json(request: web.Request) -> bool:
    """Does the body say it is JSON (or say nothing: no body, or no Content-Type)? `request.content_type`
    parses the header, as email does; `_read` asks only when it is not plainly application/json."""
    ctype = request.content_type
    return not request.body_exists or ctype in JSON_TYPES or ctype.endswith("+json")
