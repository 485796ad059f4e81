"""Direct routes: an API request goes straight to its dialect's handler, past aiohttp's Application.

aiohttp's `Application` resolves every request through its router, wraps the handler in the middleware
chain and the current-app context, and runs the `on_response_prepare` signals: 6 % of what a 10-token
stream costs the server, for requests that need none of it (an API handler answers its own errors and
writes its own headers). `route_directly` gives aiohttp's low-level `web.Server` one handler of ours: a
request whose method and path name an API route is handed to that route's handler; every other request
(the admin API, the pages, paths with a variable part, a browser's cross-origin call, an `Expect` header)
goes to the Application as before, so routing, CORS and the refusals stay aiohttp's and the middleware's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import hdrs, web

from .errors import Handler


class DirectRoutes:
    """What `route_directly` needs of an app: its API routes, and the middlewares and response signals (the
    app's own, from `create_app`) that those routes do without. One added since, and the whole app is served
    through the Application, so what it does to a response still happens to every response."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Handler] = {}  # (method, path) -> handler, paths without a variable part
        self.needless: list[object] = []

    def do_without(self, app: web.Application) -> None:
        """The app's middlewares and `on_response_prepare` signals, as they are now, are needless here."""
        self.needless.extend(app.middlewares)
        self.needless.extend(app.on_response_prepare)

    def apply_to(self, app: web.Application) -> bool:
        """Can the app's API routes be served directly (nothing of the app's that they need was added)?"""
        needless = self.needless
        added: list[object] = [*app.middlewares, *app.on_response_prepare]
        return bool(self.routes) and all(each in needless for each in added)


DIRECT_ROUTES = web.AppKey("direct_routes", DirectRoutes)
# A request's key when its journal entry writes its access-log line (a typed key where aiohttp has them: 3.14)
JOURNALED: Any = web.RequestKey("journaled", bool) if hasattr(web, "RequestKey") else "mockstream.journaled"

RequestHandler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


def route_directly(runner: web.AppRunner) -> None:
    """Serve the API routes of `runner`'s app (one `create_app` made) directly; call it after `runner.setup()`,
    before a site starts (each connection takes the server's handler as it opens). An app with a middleware or
    a response signal of its own is left as it is."""
    server, app = runner.server, runner.app
    direct = app.get(DIRECT_ROUTES)
    if server is None or direct is None or not direct.apply_to(app):
        return
    server.request_handler = dispatcher(direct.routes, server.request_handler)


def dispatcher(routes: dict[tuple[str, str], Handler], application: RequestHandler) -> RequestHandler:
    """The handler that dispatches on method and path itself, and leaves the rest to `application`.

    A plain function that returns the handler's coroutine: aiohttp awaits it, with no frame of ours between
    (a frame costs memory for as long as the stream is open)."""
    get = routes.get

    def dispatch(request: web.BaseRequest) -> Awaitable[web.StreamResponse]:
        handler = get((request.method, request.path))
        if handler is None:
            return application(request)
        headers = request.headers
        if hdrs.ORIGIN in headers or hdrs.EXPECT in headers:  # CORS and `Expect` are the Application's
            return application(request)
        request[JOURNALED] = True
        return handler(request)  # type: ignore[arg-type]  # the app's request factory makes a web.Request

    return dispatch
