"""Server: HTTP. The app factory, routes and the thin handler (`app`), the API routes served
directly, past aiohttp's router (`direct`), the exchange that answers a request
(`exchange`), planning against the state (`planner`, `state`), admin routes, browsers (CORS, static, demo),
the journal, errors, headers and the access log."""

from __future__ import annotations

from .app import create_app
from .direct import route_directly
from .state import State

__all__ = ["State", "create_app", "route_directly"]
