"""Every refusal in the API's words: a request the server will not answer gets the API's error shape and
status, never aiohttp's HTML, and a bug of ours gets the API's 500 and is kept for the test that caused it."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import sys
import zlib
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Middleware

from ..dialects import Dialect
from ..dialects.chat import CHAT
from ..errors import RequestError
from .state import State

log = logging.getLogger("mockstream")

MAX_BODY = 4 * 1024 * 1024
TOO_LARGE = RequestError(413, f"Request body too large: the limit is {MAX_BODY} bytes.", code="request_too_large")
_ERROR_IDS = itertools.count(1)


def too_slow(timeout: float) -> RequestError:
    return RequestError(
        408,
        f"Request timeout: the request body did not arrive within {timeout:g} s.",
        code="request_timeout",
    )


async def read_body(request: web.Request, timeout: float) -> bytes:
    """The whole body, in the API's words when it cannot be had: a 413 before reading a body whose
    Content-Length is over the limit, a 408 when it takes over `timeout` seconds to arrive, a 400 when its
    bytes are not in the Content-Encoding they claim, a 415 for an encoding we do not read."""
    length = request.content_length
    if length is not None and length > MAX_BODY:
        raise TOO_LARGE
    content = request.content
    try:
        if content.is_eof():  # all here already (most bodies come with their headers): no timer, no wait
            raw = content.read_nowait()
            if len(raw) > MAX_BODY:  # a chunked body (no Content-Length) over the limit
                raise TOO_LARGE
        elif sys.version_info >= (3, 11):
            async with asyncio.timeout(timeout):
                raw = await request.read()
        else:  # pragma: no cover - Python 3.10
            raw = await asyncio.wait_for(request.read(), timeout)
    except TimeoutError:
        raise too_slow(timeout) from None
    except (HttpProcessingError, web.RequestPayloadError) as exc:  # the body broke off mid-way
        message = f"We could not read the body of your request. ({exc})"
        raise RequestError(400, message, code="invalid_body") from None
    encoding = request.headers.get("Content-Encoding")
    return raw if encoding is None else decoded(raw, encoding)


# The app reads Content-Encoding itself (`auto_decompress` off): aiohttp's parser answers a body that is not
# in its encoding, or one it has no decoder for, with a plain-text 400 before any handler runs.
_WBITS = {"gzip": 31, "x-gzip": 31, "deflate": 15}


def decoded(raw: bytes, encoding: str) -> bytes:
    """The body in the Content-Encoding it claims, no larger than MAX_BODY once decoded."""
    name = encoding.strip().lower()
    if name in ("", "identity"):
        return raw
    wbits = _WBITS.get(name)
    if wbits is None:
        message = f"Unsupported Content-Encoding {encoding!r}: send gzip, deflate or identity."
        raise RequestError(415, message, code="unsupported_encoding")
    for bits in (wbits, -15) if name == "deflate" else (wbits,):  # many send raw deflate, with no zlib header
        with contextlib.suppress(zlib.error):
            return _inflate(raw, bits)
    raise RequestError(400, f"We could not read the body of your request: it is not {name}.", code="invalid_body")


def _inflate(raw: bytes, wbits: int) -> bytes:
    decoder = zlib.decompressobj(wbits)
    body = decoder.decompress(raw, MAX_BODY + 1)
    if len(body) > MAX_BODY or decoder.unconsumed_tail:  # a small body that inflates past the limit
        raise TOO_LARGE
    body += decoder.flush()
    if not decoder.eof:
        raise zlib.error("truncated")
    return body


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(error: RequestError, dialect: Dialect = CHAT, headers: dict[str, str] | None = None) -> web.Response:
    request_id = f"req_{next(_ERROR_IDS):032x}"
    return web.json_response(
        dialect.error_body(error), status=error.status, headers={"x-request-id": request_id, **(headers or {})}
    )


async def refuse(
    request: web.Request, error: RequestError, dialect: Dialect = CHAT, headers: dict[str, str] | None = None
) -> web.StreamResponse:
    """The refusal. With the body left unread the connection closes after it: for a body too large, once
    aiohttp has dropped what the client goes on sending (for up to its lingering time: closing on unread bytes
    would send a reset, which can destroy the answer before the client reads it); for a body too slow to
    arrive (the 408), at once: that client is the one being dropped. `headers` are the server's own
    (`--header`, the worker's pid): every API answer carries them."""
    response = error_response(error, dialect, headers)
    if request.content.is_eof():
        return response
    response.force_close()  # Connection: close
    if error.status != 408:
        return response
    await response.prepare(request)
    await response.write_eof()
    request.protocol.force_close()  # the answer is in the transport's buffer: it leaves before the FIN
    return response


def internal_error(state: State, request: web.Request, exc: Exception, dialect: Dialect = CHAT) -> web.Response:
    """A bug of ours: logged, kept for the test that caused it, and answered as the API's 500."""
    log.exception("internal error on %s %s", request.method, request.path)
    state.errors.append(exc)
    error = RequestError(500, f"mockstream internal error: {exc!r}", type="server_error", code="internal_error")
    return error_response(error, dialect, state.settings.headers)


def middleware(state: State, paths: Mapping[str, Dialect] | None = None) -> Middleware:
    """The middleware that answers every route's errors. A plain function: an API handler answers its own
    errors, so its requests pass through without one more coroutine (and its memory) per open stream.
    `paths` are the API paths and their dialects (filled once the routes are added): a 404 or 405 on or
    under one is in its API's words."""
    dialects = paths if paths is not None else {}

    @web.middleware
    def errors(request: web.Request, handler: Handler) -> Awaitable[web.StreamResponse]:
        if getattr(handler, "journaled", False):
            return handler(request)
        return _answer_errors(state, request, handler, _dialect(dialects, request.path))

    return errors


def _dialect(paths: Mapping[str, Dialect], path: str) -> Dialect:
    """The dialect of an API path, or of the one it stands under (`/v1/messages/count_tokens` is answered in
    Anthropic's words); OpenAI's elsewhere."""
    dialect = paths.get(path)
    if dialect is not None:
        return dialect
    if path.startswith("/v1beta/") or (path.startswith("/v1/models/") and ":" in path):  # Google's paths
        from ..dialects.gemini import GEMINI

        return GEMINI
    under = [api for api in paths if path.startswith(api + "/")]
    return paths[max(under, key=len)] if under else CHAT


async def _answer_errors(state: State, request: web.Request, handler: Handler, dialect: Dialect) -> web.StreamResponse:
    try:
        return await handler(request)
    except RequestError as error:
        return await refuse(request, error, dialect)
    except web.HTTPNotFound:
        not_found = RequestError(404, f"Invalid URL ({request.method} {request.path})")
        return _cors(state, request, error_response(not_found, dialect))
    except web.HTTPMethodNotAllowed as exc:
        allowed = ", ".join(sorted(exc.allowed_methods))
        not_allowed = RequestError(
            405,
            f"Method {request.method} not allowed on {request.path}; allowed: {allowed}.",
            code="method_not_allowed",
        )
        return _cors(state, request, error_response(not_allowed, dialect, headers={"Allow": allowed}))
    except web.HTTPRequestEntityTooLarge:
        return error_response(TOO_LARGE, dialect)
    except web.HTTPException as exc:
        if exc.status < 400:  # a redirect
            raise
        # aiohttp's or aiohttp_cors's own refusal (a failed CORS preflight): in the API's words
        refusal = RequestError(exc.status, exc.text or exc.reason, code=exc.reason.lower().replace(" ", "_"))
        return _cors(state, request, error_response(refusal, dialect, headers=_kept(exc)))
    except Exception as exc:  # a bug of ours: say so in the API's words and keep serving
        return internal_error(state, request, exc, dialect)


def _kept(exc: web.HTTPException) -> dict[str, str]:
    """The headers of aiohttp's refusal that are not about its own body."""
    return {k: v for k, v in exc.headers.items() if k.lower() not in ("content-type", "content-length")}


def _cors(state: State, request: web.Request, response: web.Response) -> web.Response:
    """CORS headers on a 404 or 405 (no route, so the CORS setup never sees it): a page on another origin
    then reads the error instead of a bare "Failed to fetch"."""
    origin = request.headers.get("Origin")
    allowed = state.cors_origins
    if origin and ("*" in allowed or origin in allowed):
        response.headers["Access-Control-Allow-Origin"] = "*" if "*" in allowed else origin
        response.headers["Access-Control-Expose-Headers"] = "x-request-id"
    return response
