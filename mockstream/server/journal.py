"""The request journal: what each API request asked, what was sent back, and how it ended.

Bounded (oldest entries drop first). Tests and the admin API read it to assert what the server saw:
that a client retried after Retry-After, or stopped reading at once.
"""

from __future__ import annotations

import itertools
import json
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from multidict import CIMultiDict, CIMultiDictProxy

REDACTED = ("authorization", "x-api-key", "api-key")
_CASE_INSENSITIVE = (CIMultiDict, CIMultiDictProxy)
DEFAULT_SIZE = 1000


@dataclass(slots=True)
class Entry:
    """One API request. `outcome`: in_progress, completed, fault:<kind>, client_disconnected, rejected or
    unmatched (a strict server's 404 for a request no scenario matched).

    `extra` holds what only some requests have: `sequence_index` (the sequence step used), `turn` (the
    `turns` entry used), `miss` (the request fell through to the built-in default, or was refused as
    unmatched: the miss report, `[{"scenario", "failed": [{"rule", "wanted", "got"}]}]`, empty when no loaded
    scenario has match rules), `fault`, `last_event_id`."""

    id: int
    time: float  # wall-clock seconds when the request arrived
    method: str
    path: str
    headers: dict[str, str]
    source: Any = None  # the body as it came (raw JSON bytes are ~5x smaller than the parsed object)
    scenario: str | None = None
    session: str | None = None
    status: int | None = None
    outcome: str = "in_progress"
    events_sent: int = 0
    bytes_sent: int = 0
    duration_ms: float | None = None
    first_byte_at: float | None = None  # wall-clock seconds of the first and last body byte written
    last_byte_at: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def body(self) -> Any:
        """The request body, parsed (a body that is not JSON, which only a proxied request keeps: its text)."""
        source = self.source
        if isinstance(source, (bytes, bytearray)):
            try:
                return json.loads(source)
            except ValueError:
                return bytes(source).decode("utf-8", "replace")
        return source

    @property
    def miss(self) -> list[dict[str, Any]] | None:
        """The miss report of a request that no scenario matched (see `extra`), else None."""
        return self.extra.get("miss")

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        extra = data.pop("extra")
        shown = {name: value for name, value in data.items() if name != "source"}
        shown["body"] = self.body
        return {**shown, **extra}


class Journal:
    """The last `size` API requests, oldest first. `listeners` are called with each entry once it has ended
    (the access log of `mockstream serve` is one)."""

    def __init__(self, size: int = DEFAULT_SIZE):
        self._entries: deque[Entry] = deque(maxlen=size)
        self._ids = itertools.count(1)
        self.listeners: list[Callable[[Entry], Any]] = []

    def open(self, method: str, path: str, headers: Mapping[str, str]) -> Entry:
        if isinstance(headers, _CASE_INSENSITIVE) and not any(name in headers for name in REDACTED):
            shown = dict(headers.items())  # the same dict (the last of repeated names wins), built in C
        else:
            shown = {k: ("***" if k.lower() in REDACTED else v) for k, v in headers.items()}
        entry = Entry(next(self._ids), time.time(), method, path, shown)
        self._entries.append(entry)
        return entry

    def close(self, entry: Entry, status: int | None, outcome: str, duration_ms: float) -> None:
        """Record how a request ended and tell the listeners."""
        entry.status = status
        entry.outcome = outcome
        entry.duration_ms = duration_ms
        for listener in self.listeners:
            listener(entry)

    def __iter__(self) -> Iterator[Entry]:
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def select(self, session: str | None = None, path: str | None = None, scenario: str | None = None) -> list[Entry]:
        return [
            e
            for e in self._entries
            if (session is None or e.session == session)
            and (path is None or e.path == path)
            and (scenario is None or e.scenario == scenario)
        ]

    def clear(self) -> None:
        self._entries.clear()
