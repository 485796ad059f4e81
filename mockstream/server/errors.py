"""Every refusal in the API's words: a request the server will not answer gets the API's error shape and
status, never aiohttp's HTML, and a bug of ours gets the API's 500 and is kept for the test that caused it."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from ..dialects import Dialect
from ..dialects.chat import CHAT
from ..errors import RequestError
from .state import State

log = logging.getLogger("mockstream")

MAX_BODY = 4 * 1024 * 1024
TOO_LARGE = RequestError(413, f"Request body too large: the limit is {MAX_BODY} bytes.", code="request_too_large")
_ERROR_IDS = itertools.count(1)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(error: RequestError, dialect: Dialect = CHAT, headers: dict[str, str] | None = None) -> web.Response:
    request_id = f"req_{next(_ERROR_IDS):032x}"
    return web.json_response(
        dialect.error_body(error), status=error.status, headers={"x-request-id": request_id, **(headers or {})}
    )


def internal_error(state: State, request: web.Request, exc: Exception, dialect: Dialect = CHAT) -> web.Response:
    """A bug of ours: logged, kept for the test that caused it, and answered as the API's 500."""
    log.exception("internal error on %s %s", request.method, request.path)
    state.errors.append(exc)
    error = RequestError(500, f"mockstream internal error: {exc!r}", type="server_error", code="internal_error")
    return error_response(error, dialect)


def middleware(state: State) -> Middleware:
    """The middleware that answers every route's errors. A plain function: an API handler answers its own
    errors, so its requests pass through without one more coroutine (and its memory) per open stream."""

    @web.middleware
    def errors(request: web.Request, handler: Handler) -> Awaitable[web.StreamResponse]:
        if getattr(handler, "journaled", False):
            return handler(request)
        return _answer_errors(state, request, handler)

    return errors


async def _answer_errors(state: State, request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except RequestError as error:
        return error_response(error)
    except web.HTTPNotFound:
        not_found = RequestError(404, f"Invalid URL ({request.method} {request.path})")
        return _cors(state, request, error_response(not_found))
    except web.HTTPMethodNotAllowed as exc:
        allowed = ", ".join(sorted(exc.allowed_methods))
        not_allowed = RequestError(
            405,
            f"Method {request.method} not allowed on {request.path}; allowed: {allowed}.",
            code="method_not_allowed",
        )
        return _cors(state, request, error_response(not_allowed, headers={"Allow": allowed}))
    except web.HTTPRequestEntityTooLarge:
        return error_response(TOO_LARGE)
    except web.HTTPException:
        raise
    except Exception as exc:  # a bug of ours: say so in the API's words and keep serving
        return internal_error(state, request, exc)


def _cors(state: State, request: web.Request, response: web.Response) -> web.Response:
    """CORS headers on a 404 or 405 (no route, so the CORS setup never sees it): a page on another origin
    then reads the error instead of a bare "Failed to fetch"."""
    origin = request.headers.get("Origin")
    allowed = state.cors_origins
    if origin and ("*" in allowed or origin in allowed):
        response.headers["Access-Control-Allow-Origin"] = "*" if "*" in allowed else origin
        response.headers["Access-Control-Expose-Headers"] = "x-request-id"
    return response
