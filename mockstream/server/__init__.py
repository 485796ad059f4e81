"""Server: HTTP. The app factory, routes and the thin handler (`app`), the exchange that answers a request
(`exchange`), planning against the state (`planner`, `state`), admin routes, browsers (CORS, static, demo),
the journal, errors, headers and the access log."""

from __future__ import annotations

from .app import create_app
from .state import State

__all__ = ["State", "create_app"]
