"""One journal entry in full, for the inspector and `GET /_mockstream/requests/{id}`: its timeline beside the
plan's due times, the bytes it sent, the headers it answered with.

Built when someone asks, from what the entry keeps: a stream's plan encodes to the same bytes every time (the
server's determinism), so the journal holds no copy of a stream's body, only its timeline (12 bytes a write).
"""

from __future__ import annotations

from bisect import bisect_left
from itertools import accumulate
from typing import Any

from ..deliver.frames import EVENT, TAIL, TOKEN
from ..deliver.timeline import Timeline
from ..dialects.registry import DIALECTS
from .exchange import framed
from .headers import JSON, STREAM, answer_headers, replay_headers
from .journal import Entry
from .state import State

SENT_LIMIT = 256 * 1024  # bytes of what was sent a detail shows
PLANNED_LIMIT = 4000  # planned frames a detail lists
KINDS = {EVENT: "event", TOKEN: "token", TAIL: "tail"}


def detail(entry: Entry, state: State, sent_limit: int = SENT_LIMIT) -> dict[str, Any]:
    """`entry` as the summary shows it, with `response_headers`, `timeline` and `sent` (see the README)."""
    data = summary(entry, state)
    plan, dialect = entry.plan, DIALECTS.get(entry.dialect or "")
    timeline = entry.timeline
    data["response_headers"] = None
    if plan is not None and dialect is not None and entry.status is not None and entry.status < 400:
        server = state.settings.headers
        if plan.replay is not None:
            data["response_headers"] = replay_headers(plan.replay.recording, plan.scenario, server)
        else:
            data["response_headers"] = answer_headers(dialect, plan, STREAM if timeline else JSON, server)
    done = entry.outcome != "in_progress"
    if timeline is None:
        body = entry.reply or b""
        data["timeline"] = None
        data["sent"] = _sent(body, len(body), sent_limit)
        return data
    so_far = entry.bytes_sent if done else sum(size for _, size, _ in timeline.entries())
    body, planned = b"", list[list[Any]]()
    if plan is not None and dialect is not None:
        body, planned = _replanned(plan, dialect, min(so_far, sent_limit))
    data["timeline"] = _timeline(timeline, planned, so_far, entry.duration_ms)
    data["sent"] = _sent(body, so_far, sent_limit)
    return data


def summary(entry: Entry, state: State) -> dict[str, Any]:
    """The entry as `GET /_mockstream/requests` lists it, with the worker that answered it."""
    data = entry.to_json()
    data["worker"] = state.worker
    return data


def progress(entry: Entry, start: int) -> dict[str, Any] | None:
    """A running stream's writes from the `start`-th on (None: it keeps no timeline)."""
    timeline = entry.timeline
    if timeline is None:
        return None
    return {
        "id": entry.id,
        "from": start,
        "writes": timeline.entries(start),
        "writes_total": timeline.count,
        "first_token_ms": timeline.first_token_ms,
        "fault_ms": timeline.fault_ms,
    }


def _replanned(plan: Any, dialect: Any, limit: int) -> tuple[bytes, list[list[Any]]]:
    """The plan encoded again: its first `limit` bytes, and each frame as [due_ms, end_byte, kind]."""
    parts: list[bytes] = []
    planned: list[list[Any]] = []
    size = 0
    for due, data, kind in framed(dialect, plan):  # a recording's frames are due at its recorded times
        if isinstance(data, bytes):
            if size < limit:
                parts.append(data)
            size += len(data)
            if len(planned) < PLANNED_LIMIT:
                planned.append([round(due * 1000, 3), size, KINDS.get(kind, "event")])
        elif len(planned) < PLANNED_LIMIT:
            planned.append([round(due * 1000, 3), size, "fault"])
        if size >= limit and len(planned) >= PLANNED_LIMIT:
            break
    return b"".join(parts)[:limit], planned


def _timeline(timeline: Timeline, planned: list[list[Any]], so_far: int, ended_ms: float | None) -> dict[str, Any]:
    writes = timeline.entries()
    ends = list(accumulate(size for _, size, _ in writes))  # where each kept write ends in the body
    last_token_ms = None
    for _, end, kind in reversed(planned):
        if kind == "token" and end <= so_far:
            index = bisect_left(ends, end)  # the write that completed that token
            if index < len(writes):
                last_token_ms = writes[index][0]
            break
    return {
        "writes": [list(write) for write in writes],
        "writes_total": timeline.count,
        "writes_cut": timeline.count > len(writes),
        "planned": planned,
        "first_token_ms": timeline.first_token_ms,
        "last_token_ms": last_token_ms,
        "fault_ms": timeline.fault_ms,
        "client_left_ms": timeline.left_ms,
        "ended_ms": ended_ms,
    }


def _sent(body: bytes, size: int, limit: int) -> dict[str, Any]:
    shown = body[:limit]
    return {
        "text": shown.decode("utf-8", "replace"),
        "bytes": size,
        "truncated": size > len(shown),
        "limit": limit,
    }
