"""mockstream: a mock server for OpenAI-style streaming APIs that misbehaves on demand."""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import RequestError, ScenarioError
from .scenario import Scenario, load_scenarios

__all__ = ["RequestError", "Scenario", "ScenarioError", "__version__", "create_app", "load_scenarios"]


def __getattr__(name: str):
    # The server pulls in aiohttp: loaded only when asked for, so `import mockstream` stays light.
    if name == "create_app":
        from .server import create_app

        return create_app
    raise AttributeError(f"module 'mockstream' has no attribute {name!r}")
