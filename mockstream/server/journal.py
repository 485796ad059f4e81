"""The request journal: what each API request asked, what was sent back, and how it ended.

Bounded (oldest entries drop first). Tests and the admin API read it to assert what the server saw:
that a client retried after Retry-After, or stopped reading at once.
"""

from __future__ import annotations

import copy
import itertools
import json
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from multidict import CIMultiDict, CIMultiDictProxy

if TYPE_CHECKING:
    from ..deliver.timeline import Timeline
    from ..plan import Plan

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
    (true: the client of a proxied request left before the upstream's answer ended), `rejected` (the error
    code of a refused request: `invalid_request_error`, `unsupported_media_type`...).

    `timeline` is a streamed answer's writes as they left (see deliver/timeline.py); `plan` and `reply` are
    what rebuilds the rest of its detail when someone asks (server/detail.py): a plan encodes to the same
    bytes every time, so the journal keeps no copy of a stream's body."""

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
    dialect: str | None = None  # the dialect's name (chat, responses, messages...)
    route: str | None = None  # the path pattern of the route that took it
    extra: dict[str, Any] = field(default_factory=dict)
    timeline: Timeline | None = field(default=None, repr=False, kw_only=True)
    plan: Plan | None = field(default=None, repr=False, kw_only=True)
    reply: bytes | None = field(default=None, repr=False, kw_only=True)  # a whole answer's body (bounded)
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
        shown = {name: getattr(self, name) for name in _SHOWN}
        shown["headers"] = dict(self.headers)
        shown["body"] = self.body
        shown["streamed"] = self.timeline is not None
        return {**shown, **copy.deepcopy(self.extra)}


_SHOWN = tuple(
    name
    for name in Entry.__dataclass_fields__
    if name not in ("headers", "source", "extra", "timeline", "plan", "reply", "_pending_miss")
)


class Journal:
    """The last `size` API requests, oldest first. `listeners` are called with each entry once it has ended
    (the access log of `mockstream serve` is one), `opened` with each once it is planned, before its answer
    starts (the inspector's feed)."""

    def __init__(self, size: int = DEFAULT_SIZE):
        self.size = size
        self._entries: deque[Entry] = deque(maxlen=size)
        self._ids = itertools.count(1)
        self.listeners: list[Callable[[Entry], Any]] = []
        self.opened: list[Callable[[Entry], Any]] = []

    def open(self, method: str, path: str, headers: Mapping[str, str]) -> Entry:
        if isinstance(headers, _CASE_INSENSITIVE):
            shown = dict(headers.items())  # the same dict (the last of repeated names wins), built in C
            if not headers.keys().isdisjoint(REDACTED):  # case-insensitive, in C
                for name in shown:
                    if name.lower() in REDACTED:
                        shown[name] = "***"
        else:
            shown = {k: ("***" if k.lower() in REDACTED else v) for k, v in headers.items()}
        entry = Entry(next(self._ids), time.time(), method, path, shown)
        self._entries.append(entry)
        return entry

    def started(self, entry: Entry) -> None:
        """The request is read and planned (its scenario, session and dialect known): tell `opened`."""
        for listener in self.opened:
            listener(entry)

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

    def get(self, entry_id: int) -> Entry | None:
        """The entry of that id, if the journal still holds it."""
        entries = self._entries
        if entries:  # ids are consecutive, oldest first, while nothing cleared the journal: try its place first
            index = entry_id - entries[0].id
            if 0 <= index < len(entries) and entries[index].id == entry_id:
                return entries[index]
        return next((e for e in entries if e.id == entry_id), None)

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
