"""The aiohttp application: validate, select, then hand over to plan -> encode -> deliver.

This module knows HTTP and nothing else: the JSON belongs to `dialects/`, bytes and time to
`transport.py`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from aiohttp import web
from multidict import istr

from .dialects import chat, completions, messages, responses
from .errors import RequestError, api_error, in_band_error
from .faults import (
    Disconnect,
    ErrorEvent,
    Fault,
    Frame,
    HttpError,
    Malformed,
    Reset,
    SlowHeaders,
    Stall,
    Truncate,
    describe,
    inject,
)
from .journal import DEFAULT_SIZE, Entry, Journal
from .listen import Arrivals
from .matching import Scenarios, Sequences, resolve
from .plan import Plan, make_plan, request_seed
from .recent import MAX_REPLAY_TOKENS, Recent, keyable
from .scenario import Scenario, check_knobs
from .transport import BACKED_UP, Pacer, Stream, Write, deliver, linger_zero, no_delay, writes

log = logging.getLogger("mockstream")

MAX_BODY = 4 * 1024 * 1024
BASE_MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-4.1", "gpt-4.1-mini", "o4-mini", "gpt-3.5-turbo")
MODEL_CREATED = 1_700_000_000


@dataclass
class Settings:
    """What `mockstream serve` flags set for the whole server."""

    seed: int = 0
    speed: float = 1.0
    headers: dict[str, str] = field(default_factory=dict)  # sent with every API answer


class InFlight:
    """The API requests being answered: what a graceful stop waits for, and cancels once its grace runs out."""

    __slots__ = ("cut", "tasks")

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task] = set()
        self.cut = False  # the stop's grace ran out: a request cancelled now ends as "shutdown"


SETTINGS = web.AppKey("settings", Settings)
SCENARIOS = web.AppKey("scenarios", Scenarios)
SEQUENCES = web.AppKey("sequences", Sequences)
JOURNAL = web.AppKey("journal", Journal)
ROLLS = web.AppKey("rolls", random.Random)
PACER = web.AppKey("pacer", Pacer)
IN_FLIGHT = web.AppKey("in_flight", InFlight)
ARRIVALS = web.AppKey("arrivals", Arrivals)  # told when a request begins (see listen.py)
RECENT = web.AppKey("recent", Recent)  # recent bodies parsed and planned (see _read_json and _plan)
CORS_ORIGINS = web.AppKey("cors_origins", tuple)
ERRORS = web.AppKey("errors", list)  # unexpected exceptions, kept for the test that caused them
SESSION_HEADER = "X-Mockstream-Session"
DIALECT_NAMES = {"chat": chat, "completions": completions, "responses": responses, "messages": messages}
DIALECTS = {
    "/v1/chat/completions": chat,
    "/v1/completions": completions,
    "/v1/responses": responses,
    "/v1/messages": messages,
}


def create_app(
    scenarios: Iterable[Scenario] = (),
    *,
    seed: int = 0,
    speed: float = 1.0,
    journal_size: int = DEFAULT_SIZE,
    cors_origins: Iterable[str] = ("*",),
    routes: Mapping[str, str] | None = None,
    static: str | None = None,
) -> web.Application:
    """A ready mock server application; run it with aiohttp's runners or `aiohttp_client`.

    `routes` mounts dialects at more paths (`{"/api/chat": "chat"}`); `static` serves a folder at `/`
    (otherwise `/` is the demo page); `cors_origins` are the origins browsers may call from."""
    app = web.Application(middlewares=[_errors], client_max_size=MAX_BODY)
    app[SETTINGS] = Settings(seed=seed, speed=speed)
    app[SCENARIOS] = Scenarios(scenarios)
    app[SEQUENCES] = Sequences()
    app[JOURNAL] = Journal(journal_size)
    app[ROLLS] = random.Random(seed)
    app[PACER] = Pacer()
    app[ARRIVALS] = Arrivals()
    app[IN_FLIGHT] = InFlight()
    app[RECENT] = Recent()
    app[ERRORS] = []
    app[CORS_ORIGINS] = tuple(cors_origins)
    from . import admin  # admin reads the keys above

    admin.add_routes(app)
    for path, dialect in DIALECTS.items():
        app.router.add_post(path, _dialect_handler(dialect))
    app.router.add_get("/v1/models", _models)
    app.router.add_get("/v1/models/{model}", _model)
    app.router.add_get("/healthz", _health)
    from . import web as browsers

    browsers.add_routes(app, routes or {}, static)
    browsers.allow_cors(app, cors_origins)
    return app


# ---------------------------------------------------------------- errors ---
def _error_response(error: RequestError, dialect: Any = chat, headers: dict[str, str] | None = None) -> web.Response:
    request_id = f"req_{next(_ERROR_IDS):032x}"
    return web.json_response(
        dialect.error_body(error), status=error.status, headers={"x-request-id": request_id, **(headers or {})}
    )


_ERROR_IDS = itertools.count(1)


@web.middleware
def _errors(request: web.Request, handler) -> Awaitable[web.StreamResponse]:
    """Every refusal in the API's words. A plain function: an API handler answers its own errors, so its
    requests pass through without one more coroutine (and its memory) per open stream."""
    if getattr(handler, "journaled", False):
        return handler(request)
    return _answer_errors(request, handler)


async def _answer_errors(request: web.Request, handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except RequestError as error:
        return _error_response(error)
    except web.HTTPNotFound:
        error = RequestError(404, f"Invalid URL ({request.method} {request.path})")
        return _cors(request, _error_response(error))
    except web.HTTPMethodNotAllowed as exc:
        allowed = ", ".join(sorted(exc.allowed_methods))
        error = RequestError(
            405,
            f"Method {request.method} not allowed on {request.path}; allowed: {allowed}.",
            code="method_not_allowed",
        )
        return _cors(request, _error_response(error, headers={"Allow": allowed}))
    except web.HTTPRequestEntityTooLarge:
        return _error_response(TOO_LARGE)
    except web.HTTPException:
        raise
    except Exception as exc:  # a bug of ours: say so in the API's words and keep serving
        return _internal_error(request, exc)


TOO_LARGE = RequestError(413, f"Request body too large: the limit is {MAX_BODY} bytes.", code="request_too_large")


def _internal_error(request: web.Request, exc: Exception, dialect: Any = chat) -> web.Response:
    """A bug of ours: logged, kept for the test that caused it, and answered as the API's 500."""
    log.exception("internal error on %s %s", request.method, request.path)
    request.app[ERRORS].append(exc)
    error = RequestError(500, f"mockstream internal error: {exc!r}", type="server_error", code="internal_error")
    return _error_response(error, dialect)


def _cors(request: web.Request, response: web.Response) -> web.Response:
    """CORS headers on a 404 or 405 (no route, so the CORS setup never sees it): a page on another origin
    then reads the error instead of a bare "Failed to fetch"."""
    origin = request.headers.get("Origin")
    allowed = request.app[CORS_ORIGINS]
    if origin and ("*" in allowed or origin in allowed):
        response.headers["Access-Control-Allow-Origin"] = "*" if "*" in allowed else origin
        response.headers["Access-Control-Expose-Headers"] = "x-request-id"
    return response


async def _read_json(request: web.Request) -> tuple[dict[str, Any], bytes]:
    """The JSON body, and the raw bytes the journal keeps of it."""
    ctype = request.content_type
    if (
        request.body_exists
        and ctype not in ("application/json", "application/octet-stream")
        and not ctype.endswith("+json")
    ):
        raise RequestError(
            415,
            f"Unsupported Content-Type {ctype!r}: send the body as application/json.",
            code="unsupported_media_type",
        )
    raw = await request.read()
    recent, key = request.app[RECENT], keyable(raw)
    body = recent.get(key) if key is not None else None
    if body is not None:
        return body, raw  # parsed for an earlier request: shared, and nothing downstream changes it
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise RequestError(
            400, f"We could not parse the JSON body of your request. ({exc})", code="invalid_json"
        ) from None
    if not isinstance(body, dict):
        raise RequestError(400, "The request body must be a JSON object.", code="invalid_json")
    if key is not None:
        recent.put(key, body)
    return body, raw


def _request_knobs(body: dict[str, Any]) -> dict[str, Any]:
    knobs, problems = check_knobs(body.get("mockstream", {}), "mockstream")
    if problems:
        message = "Invalid mockstream knobs: " + "; ".join(str(p) for p in problems)
        raise RequestError(400, message, problems[0].path, "invalid_mockstream_knob")
    return knobs


# ---------------------------------------------------------------- streaming ---
# Header names as shared `istr`s: a response's CIMultiDict then keeps these objects instead of making a
# case-folded copy of every name when it is built and again when it is serialized (~2.3 KiB per open stream).
_KEYS: dict[str, istr] = {}
_CONTENT_TYPE, _CACHE_CONTROL, _ACCEL_BUFFERING, _SCENARIO_HEADER = map(
    istr, ("Content-Type", "Cache-Control", "X-Accel-Buffering", "x-mockstream-scenario")
)


def _key(name: str) -> istr:
    key = _KEYS.get(name)
    if key is None:
        key = istr(name)
        if len(_KEYS) < 1024:
            _KEYS[name] = key
    return key


def _headers(dialect: Any, plan: Plan, content_type: str, settings_headers: dict[str, str]) -> dict[str, str]:
    headers = {_CONTENT_TYPE: content_type, _CACHE_CONTROL: "no-cache", _ACCEL_BUFFERING: "no"}
    keys = _KEYS
    for name, value in dialect.headers(plan).items():
        headers[keys.get(name) or _key(name)] = value
    headers[_SCENARIO_HEADER] = plan.scenario
    for name, value in settings_headers.items():
        headers[keys.get(name) or _key(name)] = value
    return headers


BodyReader = Callable[[web.Request], Awaitable[tuple[dict[str, Any], Any]]]


def _dialect_handler(dialect: Any, read_body: BodyReader | None = None):
    """The handler of one dialect's route. `read_body` turns the request into the API body, and what the
    journal keeps of it (default: JSON, and its raw bytes)."""
    read_body = read_body or _read_json

    async def handle(request: web.Request) -> web.StreamResponse:
        # One coroutine for the whole exchange (no wrapper layer, no middleware frame): each layer costs
        # memory per open stream and a resume per wake-up.
        app = request.app
        app[ARRIVALS].begun(request.protocol)
        in_flight = app[IN_FLIGHT].tasks
        task = asyncio.current_task()
        in_flight.add(task)  # type: ignore[arg-type]
        entry = None
        try:
            loop = asyncio.get_running_loop()
            start = loop.time()
            headers = request.headers
            journal = app[JOURNAL]
            entry = journal.open(request.method, request.path, headers)
            entry.session = headers.get(SESSION_HEADER)
            if "Last-Event-ID" in headers:
                entry.extra["last_event_id"] = headers["Last-Event-ID"]
            try:
                body, entry.source = await read_body(request)
                plan = _plan(app, dialect, headers, body, entry)
            except web.HTTPRequestEntityTooLarge:
                _close_entry(journal, entry, TOO_LARGE.status, "rejected", start, loop)
                return _error_response(TOO_LARGE, dialect)
            except RequestError as error:
                _close_entry(journal, entry, error.status, "rejected", start, loop)
                return _error_response(error, dialect)
            del body  # else the parsed body (~1.3 KiB) lives as long as the stream; the journal keeps its bytes
            exchange = Exchange(request, dialect, plan, entry, start)
            try:
                return await exchange.answer()
            except asyncio.CancelledError:
                exchange.finish(exchange.cut_short())
                raise
        except Exception as exc:  # a bug of ours before the response started: the API's 500
            if entry is not None and entry.outcome == "in_progress":
                app[JOURNAL].close(entry, 500, "internal_error", round((time.time() - entry.time) * 1000, 3))
            return _internal_error(request, exc, dialect)
        finally:
            in_flight.discard(task)  # type: ignore[arg-type]

    handle.journaled = True  # type: ignore[attr-defined]  # answers its own errors; its entry is its log
    return handle


def _plan(app: web.Application, dialect: Any, headers: Mapping[str, str], body: dict[str, Any], entry: Entry) -> Plan:
    """The request's answer: its dialect reads the body, its knobs and scenario say what to answer and how.

    What a body asks and its Plan are pure, so a body seen recently (a load test repeats one) is neither
    read nor planned again; choosing the scenario, stepping a sequence and rolling a fault happen for
    every request."""
    recent, raw = app[RECENT], keyable(entry.source)
    asked = recent.get((dialect, raw)) if raw is not None else None
    if asked is None:
        asked = dialect.parse(body), _request_knobs(body)
        if raw is not None:
            recent.put((dialect, raw), asked)
    ask, knobs = asked
    scenario = app[SCENARIOS].select(headers, knobs, ask)
    entry.scenario = scenario.name
    merged, position = resolve(scenario, knobs, entry.session, app[SEQUENCES])
    if position is not None:
        entry.extra["sequence_index"] = position
    settings = app[SETTINGS]
    fault = _roll(app, merged.get("fault"))
    key = (dialect, raw, id(scenario), position, settings.seed, settings.speed, fault is not None)
    planned = recent.get(key) if raw is not None else None
    if planned is not None:
        plan = planned[1]
    else:
        plan = make_plan(
            merged,
            ask,
            seed=request_seed(merged.get("seed", settings.seed), body, f"{scenario.name}\0{position}"),
            speed=settings.speed,
            scenario=scenario.name,
            fault=fault,
        )
        if raw is not None:
            recent.put(key, (scenario, plan))  # the entry keeps its scenario, so no other takes its id
    if plan.fault is not None:
        entry.extra["fault"] = describe(plan.fault)
    return plan


def _roll(app: web.Application, fault: Fault | None) -> Fault | None:
    """Does the fault strike this call? Rolled from the server seed, so the same seed gives the same hits."""
    if fault is None or fault.probability >= 1:
        return fault
    return fault if app[ROLLS].random() < fault.probability else None


def _writes(dialect: Any, plan: Plan) -> Iterator[Write]:
    """Encode, inject the fault, cut into writes: everything a stream sends, from the plan alone."""
    frames: Iterable[Frame] = dialect.encode(plan)
    if plan.fault is not None and plan.fault.layer != "http":
        frames = inject(frames, plan.fault, partial(dialect.error_frame, plan))
    return writes(frames, plan.delivery)


def _close_entry(
    journal: Journal, entry: Entry, status: int | None, outcome: str, start: float, loop: asyncio.AbstractEventLoop
) -> None:
    journal.close(entry, status, outcome, round((loop.time() - start) * 1000, 3))


class _HeadersWithBody(web.StreamResponse):
    """A response whose headers wait for its first body write, to leave with it in one packet (as aiohttp's
    own `web.Response` does); older aiohttp ignores the flag and sends them at once."""

    _send_headers_immediately = False


class Exchange:
    """One answered request: applies the plan's fault in the layer that owns it and journals the ending."""

    __slots__ = ("dialect", "entry", "loop", "plan", "request", "start", "stream")

    def __init__(self, request: web.Request, dialect: Any, plan: Plan, entry: Entry, start: float):
        self.request = request
        self.dialect = dialect
        self.plan = plan
        self.entry = entry
        self.start = start
        self.loop = asyncio.get_running_loop()
        self.stream: Stream | None = None

    def answer(self) -> Awaitable[web.StreamResponse]:
        """The coroutine that answers: a stream is answered by `_stream` itself (no layer above it)."""
        if self.plan.ask.stream and not isinstance(self.plan.fault, (HttpError, SlowHeaders)):
            return self._stream()
        return self._answer()

    async def _answer(self) -> web.StreamResponse:
        fault = self.plan.fault
        if isinstance(fault, HttpError):
            return self._http_error(fault)
        if isinstance(fault, SlowHeaders):
            await asyncio.sleep(fault.ms / 1000)
        if not self.plan.ask.stream:
            return await self._complete()
        return await self._stream()

    def _http_error(self, fault: HttpError) -> web.Response:
        wait = (
            fault.retry_after
            if fault.retry_after is not None
            else (fault.retry_after_ms / 1000 if fault.retry_after_ms is not None else 20.0)
        )
        error = api_error(fault.status, self.plan.model, fault.message, fault.type, fault.code, f"{wait:g}s")
        headers = {**self.dialect.headers(self.plan), "x-mockstream-scenario": self.plan.scenario}
        if fault.retry_after is not None:
            headers["Retry-After"] = f"{fault.retry_after:.15g}"  # :g rounds to 6 digits
        if fault.retry_after_ms is not None:
            headers["retry-after-ms"] = f"{fault.retry_after_ms:.15g}"
        if fault.status == 429:
            reset = f"{wait:g}s"
            headers.update(
                {
                    "x-ratelimit-limit-requests": "3",
                    "x-ratelimit-remaining-requests": "0",
                    "x-ratelimit-reset-requests": reset,
                    "x-ratelimit-limit-tokens": "30000000",
                    "x-ratelimit-remaining-tokens": "29999000",
                    "x-ratelimit-reset-tokens": "2ms",
                }
            )
        self.finish(fault.outcome, fault.status)
        return web.Response(
            body=json.dumps(self.dialect.error_body(error)).encode(),
            status=fault.status,
            headers=headers,
            content_type="application/json",
        )

    async def _complete(self) -> web.StreamResponse:
        """A non-streamed answer, after the time generating it takes; delivery faults act before the body."""
        fault = self.plan.fault
        await asyncio.sleep(self.plan.duration)
        if isinstance(fault, Stall):
            await asyncio.sleep(fault.ms / 1000 if fault.ms is not None else float("inf"))
        elif isinstance(fault, (Disconnect, Reset)):
            transport = self.request.transport
            if transport is not None:
                if isinstance(fault, Reset):
                    linger_zero(transport)
                transport.close()
            self.finish(fault.outcome, None)
            return web.Response(status=204)  # never reaches the client: the connection is gone
        if isinstance(fault, ErrorEvent):  # the answer failed while being generated: the API's error status
            error = in_band_error(self.plan.model, fault.message, fault.type, fault.code)
            self.finish(fault.outcome, error.status)
            return web.json_response(
                self.dialect.error_body(error), status=error.status, headers=self.dialect.headers(self.plan)
            )
        body = json.dumps(self.dialect.complete(self.plan), ensure_ascii=False).encode()
        if isinstance(fault, (Malformed, Truncate)):  # the body ends half way: not valid JSON
            body = body[: len(body) // 2]
        self.entry.bytes_sent = len(body)
        self.finish(fault.outcome if fault is not None else "completed", 200)
        return web.Response(body=body, headers=self._headers("application/json"))

    async def _stream(self) -> web.StreamResponse:
        plan = self.plan
        transport = self.request.transport
        if transport is not None:
            if plan.delivery.chunk_bytes:
                no_delay(transport)
            # a backed-up stream waits on aiohttp's drain: the socket must pause where "backed up" starts
            transport.set_write_buffer_limits(high=BACKED_UP)  # type: ignore[attr-defined]
        gap = plan.delivery.chunk_gap if plan.delivery.chunk_bytes else 0.0
        # The writes are referenced by the stream alone (a replay also by the cache): it lets go at its end.
        self.stream = stream = Stream(None, transport, self._writes(), self.start, gap)
        # What is due at once leaves with the headers in one packet; else the headers go at once, alone.
        head = stream.take_head(self.loop)
        with_body = head is not None or stream.tail
        response = (_HeadersWithBody if with_body else web.StreamResponse)(
            headers=self._headers("text/event-stream; charset=utf-8")
        )
        response.enable_chunked_encoding()
        try:
            stream.writer = await response.prepare(self.request)
            if head is not None:
                await response.write(head)
        except ConnectionError:  # the client left before the headers went out (aiohttp then stays quiet)
            self.finish("client_disconnected")
            return response
        try:
            await deliver(stream, self.request.app[PACER])
            if stream.ended_by is None or isinstance(stream.ended_by, Stall):
                await response.write_eof(stream.tail)
            self.finish(plan.fault.outcome if plan.fault is not None else "completed")
        except ConnectionError:
            self.finish("client_disconnected")
        except Exception as exc:  # a bug of ours after the 200 went out: cut the stream, keep the error for tests
            log.exception("internal error while streaming %s", self.request.path)
            self.request.app[ERRORS].append(exc)
            self.finish("internal_error")
            if transport is not None:
                transport.close()
        return response

    def _headers(self, content_type: str) -> dict[str, str]:
        return _headers(self.dialect, self.plan, content_type, self.request.app[SETTINGS].headers)

    def _writes(self) -> Iterator[Write]:
        """The plan's socket writes: replayed when the same plan streamed recently (and is short)."""
        dialect, plan = self.dialect, self.plan
        if plan.delivery.chunk_bytes or plan.usage.completion_tokens > MAX_REPLAY_TOKENS:
            return _writes(dialect, plan)
        # The encoder is kept with the replay: it must not hold this exchange (its request, its socket).
        return self.request.app[RECENT].replay(plan, partial(_writes, dialect, plan))

    def cut_short(self) -> str:
        """Why a cancelled exchange ended: our own disconnect/reset fault closing the socket (aiohttp then
        cancels the handler as if the client had left), the client leaving, or a stop cutting it."""
        ended_by = self.stream.ended_by if self.stream is not None else None
        if isinstance(ended_by, (Disconnect, Reset)):
            return ended_by.outcome
        return "shutdown" if self.request.app[IN_FLIGHT].cut else "client_disconnected"

    def finish(self, outcome: str, status: int | None = 200) -> None:
        """Journal how the exchange ended (once: the first ending wins)."""
        entry = self.entry
        if entry.outcome != "in_progress":
            return
        stream = self.stream
        if stream is not None:
            entry.events_sent = stream.events_sent
            entry.bytes_sent = stream.bytes_sent
            entry.first_byte_at = _wall(stream.first_byte, self.loop)
            entry.last_byte_at = _wall(stream.last_byte, self.loop)
        _close_entry(self.request.app[JOURNAL], entry, status, outcome, self.start, self.loop)


def _wall(loop_time: float | None, loop: asyncio.AbstractEventLoop) -> float | None:
    return None if loop_time is None else time.time() - (loop.time() - loop_time)


# ---------------------------------------------------------------- models, health ---
def _model_object(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": MODEL_CREATED, "owned_by": "mockstream"}


def _model_ids(app: web.Application) -> list[str]:
    return list(dict.fromkeys([*BASE_MODELS, *app[SCENARIOS].names()]))


async def _models(request: web.Request) -> web.Response:
    return web.json_response({"object": "list", "data": [_model_object(m) for m in _model_ids(request.app)]})


async def _model(request: web.Request) -> web.Response:
    model_id = request.match_info["model"]
    if model_id not in _model_ids(request.app):
        raise RequestError(
            404, f"The model `{model_id}` does not exist or you do not have access to it.", code="model_not_found"
        )
    return web.json_response(_model_object(model_id))


async def _health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})
