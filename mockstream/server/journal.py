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
    """One API request and how it ended.

    `outcome`: `in_progress` until it ends, then one of
    - `completed`: the answer was sent whole;
    - `fault:<kind>`: a fault ended it (`fault:reset`, `fault:truncate`, `fault:http_error`...);
    - `replay:<end>`: a recording replayed to its recorded end (`replay:upstream_closed`, `replay:reset`,
      `replay:timeout`);
    - `client_disconnected`: the client went away first;
    - `rejected`: a 4xx for the request itself (bad JSON, an unknown scenario named...);
    - `unmatched`: the 404 of a request no scenario matched (strict, or `on_miss` "error");
    - `shutdown`: the server stopped mid-answer; `internal_error`: a bug answered with a 500;
    - proxied to an upstream (`on_miss` "proxy", `mockstream record`): `recorded` (recorded whole),
      `recorded:<end>` (recorded up to how the upstream ended it), `not_recorded` (forwarded, not kept),
      `upstream_timeout`, `upstream_unreachable`, `upstream_closed`, `upstream_reset`.

    `extra` holds what only some requests have: `fault` (the fault that struck, described), `recording`
    (the recording file that answered, or the one a proxied answer was recorded to), `miss` (the request fell
    through to the built-in default, or was refused as unmatched: the miss report, `[{"scenario", "failed":
    [{"rule", "wanted", "got"}]}]`, empty when no loaded scenario has match rules; read it as `Entry.miss`,
    which builds a report left for later), `turn` (the `turns` entry used), `sequence_index` (the sequence
    step used), `last_event_id` (the Last-Event-ID a client resumed with), `upstream` (where a proxied
    request went), `recording_error` (why a proxied answer could not be recorded), `client_disconnected`
    (true: the client of a proxied request left before the upstream's answer ended)."""

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
    # A miss report not built yet: what builds it (the server leaves most reports for whoever reads them). An
    # init field, so a copy (`dataclasses.replace`, what the pytest plugin hands a test) can still build it.
    _pending_miss: Callable[[], list[dict[str, Any]]] | None = field(default=None, repr=False, kw_only=True)

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

    def missed(self, report: Callable[[], list[dict[str, Any]]]) -> None:
        """No scenario matched this request: `report()` builds its miss report once someone reads it."""
        self._pending_miss = report

    @property
    def miss(self) -> list[dict[str, Any]] | None:
        """The miss report of a request that no scenario matched (see `extra`), else None."""
        pending = self._pending_miss
        if pending is not None:
            self._pending_miss = None
            self.extra["miss"] = pending()
        return self.extra.get("miss")

    def to_json(self) -> dict[str, Any]:
        if self._pending_miss is not None:
            self.miss  # noqa: B018 (builds the report into `extra`)
        data = asdict(self)
        extra = data.pop("extra")
        shown = {name: value for name, value in data.items() if name not in ("source", "_pending_miss")}
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
