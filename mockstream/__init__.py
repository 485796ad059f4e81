"""mockstream: a mock server for OpenAI-style streaming APIs that misbehaves on demand."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# Every name is loaded on first use: pytest loads the plugin (and so this package) in every session of a
# project that has mockstream installed, and `mockstream --help` should answer at once.
_HOMES = {
    "Entry": "server.journal",
    "MockHandle": "testing",
    "MockServer": "testing",
    "RequestError": "errors",
    "Scenario": "plan.schema",
    "ScenarioError": "errors",
    "create_app": "server",
    "load_scenarios": "plan.schema",
}
__all__ = [
    "Entry",
    "MockHandle",
    "MockServer",
    "RequestError",
    "Scenario",
    "ScenarioError",
    "__version__",
    "create_app",
    "load_scenarios",
]

if TYPE_CHECKING:
    from .errors import RequestError, ScenarioError
    from .plan.schema import Scenario, load_scenarios
    from .server import create_app
    from .server.journal import Entry
    from .testing import MockHandle, MockServer


def __getattr__(name: str) -> object:
    if name in _HOMES:
        return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    raise AttributeError(f"module 'mockstream' has no attribute {name!r}")
