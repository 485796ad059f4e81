"""mockstream: a mock server for OpenAI-style streaming APIs that misbehaves on demand."""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import RequestError, ScenarioError
from .scenario import Scenario, load_scenarios

__all__ = [
    "MockHandle",
    "MockServer",
    "RequestError",
    "Scenario",
    "ScenarioError",
    "__version__",
    "create_app",
    "load_scenarios",
]
_SERVER_SIDE = {"MockHandle": "testing", "MockServer": "testing", "create_app": "server"}


def __getattr__(name: str):
    # The server pulls in aiohttp: loaded only when asked for, so `import mockstream` stays light.
    if name in _SERVER_SIDE:
        import importlib

        return getattr(importlib.import_module(f".{_SERVER_SIDE[name]}", __name__), name)
    raise AttributeError(f"module 'mockstream' has no attribute {name!r}")
