"""Testing: `MockServer` (a real server in a thread, for any test runner), `MockHandle` (one test's view of
it: scripts, requests, recordings, misses), `UnmatchedRequests` (what a strict test's misses raise) and the
pytest plugin. Names load on first use, so the plugin costs a test session nothing until a test asks for a
server.

`RECORD_MODES` are the record modes of `MockHandle.record` and `--mockstream-record` (pytest-recording's):
none (replay only), once (record a test whose recordings directory does not exist yet), new_episodes (replay,
and record what the recordings do not answer), all (record everything again).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__all__ = ["RECORD_MODES", "Entry", "MockHandle", "MockServer", "UnmatchedRequests", "create_app"]

RECORD_MODES = ("none", "once", "new_episodes", "all")

if TYPE_CHECKING:
    from ..server.journal import Entry
    from .server import MockHandle, MockServer, UnmatchedRequests, create_app


def __getattr__(name: str) -> object:
    if name in __all__:
        return getattr(importlib.import_module(".server", __name__), name)
    raise AttributeError(f"module 'mockstream.testing' has no attribute {name!r}")
