"""A recording's bytes back on the socket: the same writes at the same offsets, ended the way it ended.

Replayed as recorded, each recorded write is one write (`writes`). When knobs act on the answer (a fault,
`chunk_bytes`, `events_per_write`, `ttft_ms`/`itl_ms`), the recorded body is read back as its SSE events
(`frames`), each due when the write that completed it was, so they go through the same fault hooks and the
same cutting as a planned stream's frames.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from . import sse
from .frames import EVENT, TOKEN, Frame, Item, Write, new

if TYPE_CHECKING:
    from ..plan.recording import Replay
    from .stream import Stream


class Ending:
    """How a recorded answer that did not complete ends again: cut, reset, or silent until the client leaves."""

    __slots__ = ("end",)

    def __init__(self, end: str):
        self.end = end

    @property
    def outcome(self) -> str:
        return f"replay:{self.end}"

    def strike(self, stream: Stream, loop: asyncio.AbstractEventLoop) -> bool:
        if self.end == "timeout":
            stream.park(self)
        else:
            stream.end(self, close=True, reset=self.end == "reset")
        return False


def writes(replay: Replay) -> Iterator[Item]:
    """Each recorded write as one write, with the count of SSE events it completes."""
    recording = replay.recording
    ends = sse.event_ends(recording.body) if recording.streamed else []
    start = done = 0
    due = 0.0
    for write in recording.writes:
        stop = start + len(write.data)
        events = 0
        while done < len(ends) and ends[done] <= stop:
            done += 1
            events += 1
        due = replay.due(write.at)
        yield Write(due, write.data, events)
        start = stop
    if recording.end != "completed":
        yield Write(due, Ending(recording.end), 0)


def frames(replay: Replay, kind_of: Callable[[bytes], int], retimed: Iterator[float] | None = None) -> Iterator[Frame]:
    """The recorded body as its events, each a frame of the kind `kind_of` says; with `retimed`, the content
    events are due at its offsets instead (every other event with the content before it)."""
    recording = replay.recording
    body = recording.body
    ends = sse.event_ends(body) if recording.streamed else []
    if body and (not ends or ends[-1] < len(body)):
        ends.append(len(body))  # what follows the last blank line (a cut event, or a body that is not SSE)
    written, at = _write_ends(replay)
    start = index = 0
    due = 0.0
    for end in ends:
        while written[index] < end:  # the write that completes this event
            index += 1
        event = body[start:end]
        kind = kind_of(event)
        if retimed is None:
            due = at[index]
        elif kind == TOKEN:  # a token: the next offset of the plan's pacing
            due = next(retimed)
        yield new(Frame, (due, event, kind))
        start = end
    if recording.end != "completed":
        yield new(Frame, (due, Ending(recording.end), EVENT))


def _write_ends(replay: Replay) -> tuple[list[int], list[float]]:
    """Where each recorded write ends in the body, and when it is due."""
    ends, dues, offset = [], [], 0
    for write in replay.recording.writes:
        offset += len(write.data)
        ends.append(offset)
        dues.append(replay.due(write.at))
    return ends or [0], dues or [0.0]
