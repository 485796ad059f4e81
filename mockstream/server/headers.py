"""The headers of a streamed or completed answer: the dialect's own, the scenario's name and the server's.

Header names as shared `istr`s: a response's CIMultiDict then keeps these objects instead of making a
case-folded copy of every name when it is built and again when it is serialized (~2.3 KiB per open stream).
"""

from __future__ import annotations

from multidict import istr

from ..dialects import Dialect
from ..plan import Plan
from ..plan.recording import Recording

STREAM = "text/event-stream; charset=utf-8"
JSON = "application/json"

_KEYS: dict[str, istr] = {}
_CONTENT_TYPE, _CACHE_CONTROL, _ACCEL_BUFFERING, _SCENARIO_HEADER = map(
    istr, ("Content-Type", "Cache-Control", "X-Accel-Buffering", "x-mockstream-scenario")
)


def _key(name: str) -> istr:
    key = _KEYS.get(name)
    if key is None:
        key = istr(name)
        if len(_KEYS) < 1024:
            _KEYS[name] = key
    return key


def answer_headers(dialect: Dialect, plan: Plan, content_type: str, server: dict[str, str]) -> dict[str, str]:
    """What an answer carries: no caching by proxies, the dialect's headers, the scenario, `server`'s."""
    headers: dict[str, str] = {_CONTENT_TYPE: content_type, _CACHE_CONTROL: "no-cache", _ACCEL_BUFFERING: "no"}
    keys = _KEYS
    for name, value in dialect.headers(plan).items():
        headers[keys.get(name) or _key(name)] = value
    headers[_SCENARIO_HEADER] = plan.scenario
    for name, value in server.items():
        headers[keys.get(name) or _key(name)] = value
    return headers


def replay_headers(recording: Recording, scenario: str, server: dict[str, str]) -> dict[str, str]:
    """What a replayed answer carries: the recorded headers, the scenario, `server`'s."""
    keys = _KEYS
    headers: dict[str, str] = {}
    for name, value in recording.headers:
        headers[keys.get(name) or _key(name)] = value
    if recording.header("content-type") is None:
        headers[_CONTENT_TYPE] = JSON
    headers[_SCENARIO_HEADER] = scenario
    for name, value in server.items():
        headers[keys.get(name) or _key(name)] = value
    return headers
