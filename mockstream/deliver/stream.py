"""One response on its way out: the writes still to send, how far it got, and how it ended."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

from aiohttp.abc import AbstractStreamWriter

from . import sockets
from .frames import TOKEN, Frame, Item, Strike
from .timeline import EVENTS, KEPT, Timeline

SLACK = 0.0005  # writes due within this many seconds are written now
CATCH_UP = 1.0  # s: a write this late takes every write due after it along (see Stream.take)

_ENDED: Iterator[Item] = iter(())


class Stream:
    """The writes of one response and their bookkeeping; the pacer and `deliver` drive it, faults act on it."""

    __slots__ = (
        "bytes_sent",
        "closed_by",
        "ended_by",
        "events_sent",
        "first_byte",
        "future",
        "gap",
        "item",
        "last_byte",
        "not_before",
        "parked",
        "start",
        "tail",
        "timeline",
        "transport",
        "writer",
        "writes",
    )

    def __init__(
        self,
        writer: AbstractStreamWriter | None,
        transport: asyncio.BaseTransport | None,
        writes: Iterator[Item],
        start: float,
        gap: float = 0.0,
        timeline: Timeline | None = None,
    ):
        self.writer = writer  # the response's, from `prepare`: what waits for a backed-up socket
        self.transport = transport
        self.writes = writes
        self.start = start
        self.gap = gap  # least time between two writes (chunk_bytes), so the reader sees them apart
        self.not_before = 0.0
        self.item: Item | None = next(writes, None)
        self.future: asyncio.Future | None = None
        self.bytes_sent = 0  # what `take` handed to the socket
        self.events_sent = 0
        self.first_byte: float | None = None  # loop time of the first and last body write
        self.last_byte: float | None = None
        self.ended_by: Strike | None = None  # the delivery fault that ended or stalled the stream
        self.closed_by: Strike | None = None  # the delivery fault that closed the connection
        self.parked = False  # stalled with no end: only the client leaving ends it
        self.tail = b""  # the last write, kept to leave with the body's end (see `take`)
        self.timeline = timeline  # each write as it leaves, for the journal and the metrics (None: not kept)

    def due(self) -> float:
        """When the next write is due, on the loop's clock."""
        item = self.item
        assert item is not None
        due = self.start + item.due
        return due if due >= self.not_before else self.not_before

    def backed_up(self) -> bool:
        transport = self.transport
        return transport is not None and transport.get_write_buffer_size() > sockets.BACKED_UP  # type: ignore[attr-defined]

    # ---- what faults do to a stream (see faults/)
    def end(self, by: Strike, *, close: bool = False, reset: bool = False) -> None:
        """Nothing more is written; with `close` the connection closes (an RST with `reset`)."""
        self.ended_by = by
        self.item = None
        self.writes = _ENDED  # let go of the frame generators
        if close:
            self.closed_by = by
            sockets.close(self.transport, reset)

    def park(self, by: Strike) -> None:
        """Silence until the client leaves: nothing more is written, and the body never ends."""
        self.end(by)
        self.parked = True

    def pause(self, by: Strike, seconds: float, loop: asyncio.AbstractEventLoop) -> None:
        """Silence for `seconds`, then the stream goes on: every later deadline moves by the pause."""
        self.ended_by = by
        self.start += seconds
        self.not_before = loop.time() + seconds

    def wait_until(self, when: float) -> None:
        """The next write waits until `when` (loop time) at least."""
        self.not_before = when

    def written_out(self) -> bool:
        """Every byte written has left the transport's buffer."""
        transport = self.transport
        return transport is None or not transport.get_write_buffer_size()  # type: ignore[attr-defined]

    # ---- writing
    def take_head(self, loop: asyncio.AbstractEventLoop) -> bytes | None:
        """The first write when it is due at once (it can then leave with the response headers), else None."""
        item = self.item
        if item is None or not isinstance(item.data, bytes) or self.due() > loop.time() + SLACK:
            return None
        return self.take(loop)

    def take(self, loop: asyncio.AbstractEventLoop) -> bytes | None:
        """The bytes to write now, counted as sent, or None when nothing is due (or the stream has ended or
        must wait). The stream's last write is not returned but kept as `tail`, for the handler to send
        with the end of the body (aiohttp's `write_eof`): one packet where two would go.

        One write per item while the stream keeps its pacing. A paced item already CATCH_UP late takes every
        item due after it along in the same write: a stream that fell behind (a loaded server) catches up in
        one write instead of falling further behind one write per event. Unpaced items (due at once: zero
        delays, `--speed 0`) and writes kept apart (`chunk_bytes`) never join."""
        now = loop.time()
        limit = now + SLACK
        out: Any = None
        events = 0
        timeline = self.timeline
        seek = timeline is not None and timeline.first_token_ms is None  # the first content token's write
        start, not_before = self.start, self.not_before
        while (item := self.item) is not None:
            due = start + item.due  # self.due(), inlined: this loop runs once per event
            if due < not_before:
                due = not_before
            if due > limit:
                break
            data = item.data
            if not isinstance(data, bytes):  # a delivery fault's turn
                if out is not None:  # first the bytes due before the fault
                    break
                if timeline is not None and timeline.fault_ms is None:
                    timeline.fault_ms = timeline.at(now)
                if not data.strike(self, loop):  # it ended the stream, or must wait for its turn again
                    return None
                self.item = next(self.writes, None)
                start, not_before = self.start, self.not_before  # a pause moves both
                continue
            self.item = next(self.writes, None)
            events += item.events
            if seek and (item.kind == TOKEN if type(item) is Frame else item.tokens):  # type: ignore[union-attr]
                assert timeline is not None
                timeline.first_token_ms = timeline.at(now)
                seek = False
            if out is None:
                out = data
            elif type(out) is list:
                out.append(data)
            else:
                out = [out, data]
            if self.gap or not item.due or due > now - CATCH_UP:
                break
        if out is None:
            return None
        if type(out) is list:
            out = b"".join(out)
        if self.first_byte is None:
            self.first_byte = now
        self.last_byte = now
        self.bytes_sent += len(out)
        self.events_sent += events
        if timeline is not None:  # Timeline.wrote, inlined: as a call it costs half as much again
            marks = timeline.marks
            if len(marks) < KEPT:
                marks.append(now)
                marks.append(len(out) * EVENTS + events)
            else:
                timeline.beyond(now)
        if self.gap:
            self.not_before = now + self.gap
        if self.item is None:
            self.tail = out
            return None
        return out

    def write_due(self, loop: asyncio.AbstractEventLoop, until: float = float("inf")) -> bool:
        """Write what is due now and no later than `until`, until the socket backs up (then True). The pacer
        passes the deadline it took the stream for: a late stream's next write waits its turn behind the
        deadlines of other streams that come first.

        Each write is one HTTP chunk, straight to the transport: aiohttp's writer would cost two coroutines
        and a list per write, a third of the CPU a paced stream needs. The headers went out in `prepare`,
        and aiohttp's `write_eof` ends the body (with the `tail`), so the framing stays aiohttp's."""
        transport: Any = self.transport
        while (data := self.take(loop)) is not None:
            if transport is None or transport.is_closing():
                raise ConnectionResetError("the client closed the connection")
            transport.write(b"%x\r\n%b\r\n" % (len(data), data))
            if transport.get_write_buffer_size() > sockets.BACKED_UP:  # self.backed_up(), inlined
                return True
            item = self.item
            if item is not None and (self.start + item.due > until or self.not_before > until):  # due() > until
                break
        return False
