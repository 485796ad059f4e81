"""The aiohttp application: validate, select, then hand over to plan -> encode -> deliver.

This module knows HTTP and nothing else: the JSON belongs to `dialects/`, bytes and time to
`transport.py`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .dialects import chat
from .errors import RequestError
from .matching import Scenarios, merge
from .plan import make_plan, request_seed
from .scenario import Scenario, check_knobs
from .transport import Pacer, Stream, deliver, writes

log = logging.getLogger("mockstream")

MAX_BODY = 4 * 1024 * 1024
BASE_MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-4.1", "gpt-4.1-mini", "o4-mini", "gpt-3.5-turbo")
MODEL_CREATED = 1_700_000_000


@dataclass
class Settings:
    """What `mockstream serve` flags set for the whole server."""

    seed: int = 0
    speed: float = 1.0


SETTINGS = web.AppKey("settings", Settings)
SCENARIOS = web.AppKey("scenarios", Scenarios)
PACER = web.AppKey("pacer", Pacer)


def create_app(scenarios: Iterable[Scenario] = (), *, seed: int = 0, speed: float = 1.0) -> web.Application:
    """A ready mock server application; run it with aiohttp's runners or `aiohttp_client`."""
    app = web.Application(middlewares=[_errors], client_max_size=MAX_BODY)
    app[SETTINGS] = Settings(seed=seed, speed=speed)
    app[SCENARIOS] = Scenarios(scenarios)
    app[PACER] = Pacer()
    app.router.add_post("/v1/chat/completions", _dialect_handler(chat))
    app.router.add_get("/v1/models", _models)
    app.router.add_get("/v1/models/{model}", _model)
    app.router.add_get("/healthz", _health)
    return app


# ---------------------------------------------------------------- errors ---
def _error_response(error: RequestError, dialect: Any = chat) -> web.Response:
    return web.json_response(dialect.error_body(error), status=error.status)


@web.middleware
async def _errors(request: web.Request, handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except RequestError as error:
        return _error_response(error)
    except web.HTTPNotFound:
        return _error_response(RequestError(404, f"Invalid URL ({request.method} {request.path})"))
    except web.HTTPMethodNotAllowed as exc:
        return _error_response(
            RequestError(
                405,
                f"Method {request.method} not allowed on {request.path}; "
                f"allowed: {', '.join(sorted(exc.allowed_methods))}.",
                code="method_not_allowed",
            )
        )
    except web.HTTPRequestEntityTooLarge:
        return _error_response(
            RequestError(413, f"Request body too large: the limit is {MAX_BODY} bytes.", code="request_too_large")
        )
    except web.HTTPException:
        raise
    except Exception as exc:  # a bug of ours: say so in the API's words and keep serving
        log.exception("internal error on %s %s", request.method, request.path)
        return _error_response(
            RequestError(500, f"mockstream internal error: {exc!r}", type="server_error", code="internal_error")
        )


async def _read_json(request: web.Request) -> dict[str, Any]:
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
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise RequestError(
            400, f"We could not parse the JSON body of your request. ({exc})", code="invalid_json"
        ) from None
    if not isinstance(body, dict):
        raise RequestError(400, "The request body must be a JSON object.", code="invalid_json")
    return body


def _request_knobs(body: dict[str, Any]) -> dict[str, Any]:
    knobs, problems = check_knobs(body.get("mockstream", {}), "mockstream")
    if problems:
        message = "Invalid mockstream knobs: " + "; ".join(str(p) for p in problems)
        raise RequestError(400, message, problems[0].path, "invalid_mockstream_knob")
    return knobs


# ---------------------------------------------------------------- streaming ---
def _headers(plan, stream: bool) -> dict[str, str]:
    return {
        "Content-Type": "text/event-stream; charset=utf-8" if stream else "application/json",
        "Cache-Control": "no-cache",
        "X-Accel-Buffering": "no",
        "x-request-id": plan.request_id,
        "openai-version": "2020-10-01",
        "openai-organization": "mockstream",
        "openai-project": "proj_mockstream",
        "openai-processing-ms": str(round(plan.duration * 1000)),
        "x-ratelimit-limit-requests": "10000",
        "x-ratelimit-remaining-requests": "9999",
        "x-ratelimit-reset-requests": "6ms",
        "x-ratelimit-limit-tokens": "30000000",
        "x-ratelimit-remaining-tokens": str(30_000_000 - plan.usage.total_tokens),
        "x-ratelimit-reset-tokens": "0s",
        "x-mockstream-scenario": plan.scenario,
    }


def _dialect_handler(dialect: Any):
    async def handle(request: web.Request) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        start = loop.time()
        app = request.app
        settings = app[SETTINGS]
        try:
            body = await _read_json(request)
            ask = dialect.parse(body)
            knobs = _request_knobs(body)
            scenario = app[SCENARIOS].select(request.headers, knobs, ask)
        except RequestError as error:
            return _error_response(error, dialect)
        merged = merge(scenario.knobs, knobs)
        seed = request_seed(merged.get("seed", settings.seed), body)
        plan = make_plan(merged, ask, seed=seed, speed=settings.speed, scenario=scenario.name)
        if not ask.stream:
            await asyncio.sleep(plan.duration)
            return web.Response(
                body=json.dumps(dialect.complete(plan), ensure_ascii=False).encode(),
                headers=_headers(plan, stream=False),
            )
        response = web.StreamResponse(headers=_headers(plan, stream=True))
        response.enable_chunked_encoding()
        await response.prepare(request)
        transport = request.transport
        if plan.delivery.chunk_bytes and transport is not None:
            _no_delay(transport)
        stream = Stream(
            response,
            transport,
            writes(dialect.encode(plan), plan.delivery),
            start,
            plan.delivery.chunk_gap if plan.delivery.chunk_bytes else 0.0,
        )
        try:
            await deliver(stream, app[PACER])
            await response.write_eof()
        except ConnectionError:
            log.debug("client left %s after %d bytes", request.path, stream.bytes_sent)
        return response

    return handle


def _no_delay(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


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
