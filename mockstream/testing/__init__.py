"""Testing: `MockServer` (a real server in a thread, for any test runner), `MockHandle` (one test's view of
it) and the pytest plugin. Names load on first use, so the plugin costs a test session nothing until a test
asks for a server."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__all__ = ["Entry", "MockHandle", "MockServer", "create_app"]

if TYPE_CHECKING:
    from ..server.journal import Entry
    from .server import MockHandle, MockServer, create_app


def __getattr__(name: str) -> object:
    if name in __all__:
        return getattr(importlib.import_module(".server", __name__), name)
    raise AttributeError(f"module 'mockstream.testing' has no attribute {name!r}")
