"""Browsers: CORS on every route, static files, the demo page and the inspector (the EventSource dialect is
`dialects/eventsource.py`; route aliases are mounted by the app).

A chat front-end can point `fetch()` or `new EventSource()` at the mock from a dev server on another
origin, or mount the mock at the paths it already calls (`--route /api/chat=chat`) and serve its own
page from the same origin (`--static DIR`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from importlib import resources
from pathlib import Path

import aiohttp_cors
from aiohttp import hdrs, web

# What a page's script may read from a response (the SDKs read the request id and rate limits).
EXPOSED_HEADERS = (
    "x-request-id",
    "request-id",
    "openai-processing-ms",
    "openai-version",
    "retry-after",
    "retry-after-ms",
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
    "anthropic-ratelimit-requests-limit",
    "anthropic-ratelimit-requests-remaining",
    "anthropic-ratelimit-requests-reset",
    "anthropic-ratelimit-tokens-limit",
    "anthropic-ratelimit-tokens-remaining",
    "x-mockstream-scenario",
)


def add_routes(app: web.Application, static: str | None) -> None:
    """What `/` serves: the demo page, or the folder of `--static`."""
    if static is None:
        app.router.add_get("/", _demo)
    else:
        root = Path(static)

        async def index(request: web.Request) -> web.FileResponse:
            return web.FileResponse(root / "index.html")

        app.router.add_get("/", index)
        app.router.add_static("/", root)


def allow_cors(app: web.Application, origins: Iterable[str]) -> None:
    """Answer preflights and add CORS headers on every route, for the given origins (`*`: any)."""
    options = aiohttp_cors.ResourceOptions(
        allow_headers="*", expose_headers=EXPOSED_HEADERS, allow_methods="*", max_age=600
    )
    cors = aiohttp_cors.setup(app, defaults={origin: options for origin in origins})
    for route in list(app.router.routes()):
        cors.add(route)
    # aiohttp_cors looks the route's CORS config up on every response before it checks for an Origin
    # header; without one it adds nothing. Skip it at once for the requests that carry none (API clients,
    # load generators): the same headers, without that per-request cost.
    signal = app.on_response_prepare
    for i, hook in enumerate(signal):
        if getattr(hook, "__module__", "").startswith("aiohttp_cors"):
            signal[i] = _with_origin_only(hook)


Hook = Callable[[web.Request, web.StreamResponse], Awaitable[object]]


def _with_origin_only(hook: Hook) -> Hook:
    async def only_with_origin(request: web.Request, response: web.StreamResponse) -> None:
        if hdrs.ORIGIN in request.headers:
            await hook(request, response)

    return only_with_origin


def add_inspector(app: web.Application) -> None:
    """`/_mockstream/ui`: the live inspector, one page fed by `/_mockstream/events` (part of the admin routes)."""
    app.router.add_get("/_mockstream/ui", _inspector)
    app.router.add_get("/_mockstream/ui/", _inspector)


# The inspector needs nothing but its own server: no CDN, no font, no image from elsewhere.
INSPECTOR_POLICY = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; "
    "img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'self'"
)


async def _demo(request: web.Request) -> web.Response:
    return web.Response(text=_page("demo.html"), content_type="text/html")


async def _inspector(request: web.Request) -> web.Response:
    headers = {"Content-Security-Policy": INSPECTOR_POLICY, "Cache-Control": "no-store"}
    return web.Response(text=_page("inspector.html"), content_type="text/html", headers=headers)


def _page(name: str) -> str:
    return resources.files("mockstream.server").joinpath(name).read_text(encoding="utf-8")
