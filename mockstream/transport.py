"""Deliver frames to the socket: on absolute deadlines, cut into writes, one slow reader never slowing others.

Paced streams are driven by one `Pacer` per event loop: it keeps every waiting stream in deadline
order, sleeps until the earliest deadline with a single timer, and on each wake writes what is due for
every due stream. A stream never sleeps per token (no future, timer and task wake-up per token), which
is what lets one process hold thousands of paced streams on time. A stream whose socket is backed up
is handed back to its own handler, which then waits on the socket without holding up the pacer.

Past what one core can write, the pacer degrades gracefully:
- it writes one deadline's worth of a stream per pop, in deadline order, so every stream falls late by
  the same little at a time: a reader sees gaps somewhat longer, never a late stream's backlog in a burst;
- when behind, it writes in turns of TURN and lets the loop accept and answer new requests in between
  (else a burst of new requests waits seconds for its headers behind the streams already running), and a
  stream that begins then joins on the pacer's clock (`lag`);
- a stream that fell CATCH_UP behind (the server past its capacity for seconds) sends what is due in one
  write and is on time again, so it still ends in time.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import socket
import struct
from collections.abc import Iterable, Iterator
from typing import Any

from aiohttp.abc import AbstractStreamWriter

from .faults import Fault, Frame, Reset, Stall
from .plan import Delivery

SLACK = 0.0005  # writes due within this many seconds are written now
BACKED_UP = 16 * 1024  # bytes waiting in the transport: hand the stream back to its handler
TURN = 0.002  # s the pacer writes, when behind, before it lets the loop run other work (new requests) once
CATCH_UP = 1.0  # s: a write this late takes every write due after it along (see Stream.take)
RESET_GRACE = 0.05  # s between the last bytes and an RST, so the reader has them before the reset

Write = tuple[float, Any, int]  # (due offset in s from the stream's start, bytes or a delivery Fault, events)


def writes(frames: Iterable[Frame], delivery: Delivery) -> Iterator[Write]:
    """Group frames into socket writes.

    `events_per_write` N: N frames per write, sent when the last of them is due. `chunk_bytes` N: the
    body cut into writes of at most N bytes, across SSE-event and UTF-8 boundaries (frames due together
    are cut as one run of bytes). A delivery fault passes through as its own item, after what came before.
    """
    if delivery.chunk_bytes:
        return _cut(frames, delivery.chunk_bytes)
    if delivery.events_per_write > 1:
        return _grouped(frames, delivery.events_per_write)
    return ((due, data, 1) for due, data, _ in frames)


def _grouped(frames: Iterable[Frame], size: int) -> Iterator[Write]:
    group: list[bytes] = []
    due = 0.0
    for due, data, _ in frames:
        if isinstance(data, Fault):
            if group:
                yield due, b"".join(group), len(group)
                group = []
            yield due, data, 0
            continue
        group.append(data)
        if len(group) == size:
            yield due, b"".join(group), size
            group = []
    if group:
        yield due, b"".join(group), len(group)


def _cut(frames: Iterable[Frame], size: int) -> Iterator[Write]:
    buffer = b""
    ends: list[int] = []  # where each frame in the buffer ends, to count the events a piece completes
    buffer_due = 0.0
    for due, data, _ in frames:
        if buffer and (due != buffer_due or isinstance(data, Fault)):
            yield buffer_due, buffer, len(ends)
            buffer, ends = b"", []
        if isinstance(data, Fault):
            yield due, data, 0
            continue
        buffer += data
        ends.append(len(buffer))
        buffer_due = due
        while len(buffer) >= size:
            done = sum(1 for end in ends if end <= size)
            ends = [end - size for end in ends[done:]]
            yield due, buffer[:size], done
            buffer = buffer[size:]
    if buffer:
        yield buffer_due, buffer, len(ends)


_ENDED: Iterator[Write] = iter(())


class Stream:
    """One response on its way out: the writes still to send, how far it got, and how it ended."""

    __slots__ = (
        "bytes_sent",
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
        "transport",
        "writer",
        "writes",
    )

    def __init__(
        self,
        writer: AbstractStreamWriter | None,
        transport: asyncio.BaseTransport | None,
        writes: Iterator[Write],
        start: float,
        gap: float = 0.0,
    ):
        self.writer = writer  # the response's, from `prepare`: what waits for a backed-up socket
        self.transport = transport
        self.writes = writes
        self.start = start
        self.gap = gap  # least time between two writes (chunk_bytes), so the reader sees them apart
        self.not_before = 0.0
        self.item = next(writes, None)
        self.future: asyncio.Future | None = None
        self.bytes_sent = 0  # what `take` handed to the socket
        self.events_sent = 0
        self.first_byte: float | None = None  # loop time of the first and last body write
        self.last_byte: float | None = None
        self.ended_by: Fault | None = None  # the delivery fault that ended or stalled the stream
        self.parked = False  # stalled with no end: only the client leaving ends it
        self.tail = b""  # the last write, kept to leave with the body's end (see `take`)

    def due(self) -> float:
        assert self.item is not None
        return max(self.start + self.item[0], self.not_before)

    def backed_up(self) -> bool:
        transport = self.transport
        return transport is not None and transport.get_write_buffer_size() > BACKED_UP  # type: ignore[attr-defined]

    def take_head(self, loop: asyncio.AbstractEventLoop) -> bytes | None:
        """The first write when it is due at once (it can then leave with the response headers), else None."""
        item = self.item
        if item is None or isinstance(item[1], Fault) or self.due() > loop.time() + SLACK:
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
        while (item := self.item) is not None:
            due = self.start + item[0]  # = self.due(), inline: this loop runs once per event
            if self.not_before > due:
                due = self.not_before
            if due > limit:
                break
            data = item[1]
            if isinstance(data, Fault):
                if out is not None:  # first the bytes due before the fault
                    break
                if not self._strike(data, loop):
                    return None
                self.item = next(self.writes, None)
                continue
            self.item = next(self.writes, None)
            events += item[2]
            if out is None:
                out = data
            elif type(out) is list:
                out.append(data)
            else:
                out = [out, data]
            if self.gap or not item[0] or due > now - CATCH_UP:
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
        transport = self.transport
        while (data := self.take(loop)) is not None:
            if transport is None or transport.is_closing():
                raise ConnectionResetError("the client closed the connection")
            transport.write(b"%x\r\n%b\r\n" % (len(data), data))  # type: ignore[attr-defined]
            if self.backed_up():
                return True
            if self.item is not None and self.due() > until:
                break
        return False

    def _strike(self, fault: Fault, loop: asyncio.AbstractEventLoop) -> bool:
        """Make a delivery fault happen; False when the stream must wait (or ends) instead of going on."""
        transport = self.transport
        if isinstance(fault, Stall):
            self.ended_by = fault
            if fault.ms is None:
                self.parked = True
                self.item = None
                self.writes = _ENDED  # let go of the frame generators: a parked stream writes nothing more
                return False
            self.start += fault.ms / 1000  # every later deadline moves by the stall
            self.not_before = loop.time() + fault.ms / 1000
            return True
        if isinstance(fault, Reset) and transport is not None:
            if transport.get_write_buffer_size() or loop.time() < (self.last_byte or 0) + RESET_GRACE:  # type: ignore[attr-defined]
                self.not_before = loop.time() + RESET_GRACE
                return False
            linger_zero(transport)
        self.ended_by = fault
        self.item = None
        self.writes = _ENDED
        if transport is not None:
            transport.close()
        return False


def no_delay(transport: asyncio.BaseTransport) -> None:
    """TCP_NODELAY: each write leaves at once instead of waiting to be merged with the next."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def linger_zero(transport: asyncio.BaseTransport) -> None:
    """SO_LINGER 0: closing the socket sends an RST, not a FIN."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


class Pacer:
    """Drives every paced stream of one event loop from a single task and a single timer."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Stream]] = []
        self._order = itertools.count()
        self._task: asyncio.Task | None = None
        self._wake: asyncio.Future | None = None
        self._wake_at = float("inf")
        self.behind = False  # writing late: the listener then lets new connections wait (see listen.py)
        self.lag = 0.0  # s the pacer's last write was late by (0 while it keeps up): its clock is that far back

    def __len__(self) -> int:
        return len(self._heap)

    async def run(self, stream: Stream) -> None:
        """Deliver `stream` until it ends or is handed back (its socket backed up)."""
        loop = asyncio.get_running_loop()
        stream.future = loop.create_future()
        due = stream.due()
        heapq.heappush(self._heap, (due, next(self._order), stream))
        if self._task is None:
            self._task = loop.create_task(self._drive(loop))
        elif due < self._wake_at and self._wake is not None and not self._wake.done():
            self._wake.set_result(None)
        try:
            await stream.future
        except asyncio.CancelledError:
            self._forget(stream)
            raise

    def _forget(self, stream: Stream) -> None:
        """A cancelled stream (its client left) leaves the heap at once, not at its next deadline."""
        if stream.future is not None and not stream.future.done():
            stream.future.cancel()
        before = len(self._heap)
        self._heap = [entry for entry in self._heap if entry[2] is not stream]
        if len(self._heap) != before:
            heapq.heapify(self._heap)
            # The driver may sleep until this stream's deadline: wake it so it re-reads the earliest one
            # (or ends when no stream is left) instead of keeping its timer and task alive for nothing.
            if self._wake is not None and not self._wake.done():
                self._wake.set_result(None)

    async def _drive(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            turn_ends = loop.time() + TURN
            while self._heap:
                when = self._heap[0][0]
                now = loop.time()
                if when > now + SLACK:
                    self.behind = False
                    self.lag = 0.0
                    await self._sleep_until(loop, when)
                    turn_ends = loop.time() + TURN
                    continue
                if now > turn_ends:  # behind for a whole turn: let the loop accept and read, then go on
                    self.behind = True
                    await asyncio.sleep(0)
                    turn_ends = loop.time() + TURN
                when, _, stream = heapq.heappop(self._heap)
                self.lag = now - when if now > when else 0.0
                future = stream.future
                if future is None or future.done():
                    continue
                try:  # a stream in the pacer is not backed up: only its own writes fill its socket
                    backed_up = stream.write_due(loop, when + SLACK)
                except Exception as exc:  # this stream's client is gone: end it, never the pacer
                    if not future.done():
                        future.set_exception(exc)
                    continue
                if future.done():
                    continue
                item = stream.item
                if item is None or backed_up:  # ended, or handed back to wait for its socket
                    future.set_result(None)
                else:
                    due = stream.start + item[0]
                    if stream.not_before > due:
                        due = stream.not_before
                    heapq.heappush(self._heap, (due, next(self._order), stream))
        finally:
            self._task = None
            self.behind = False
            self.lag = 0.0

    async def _sleep_until(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        self._wake = wake = loop.create_future()
        self._wake_at = when
        timer = loop.call_at(when, _set, wake)
        try:
            await wake
        finally:
            timer.cancel()
            self._wake = None
            self._wake_at = float("inf")


def _set(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


async def deliver(stream: Stream, pacer: Pacer) -> Stream:
    """Send every write of `stream`: what is due at once inline, the rest through the pacer, in turn with
    every other stream (and, when its socket backs up, here again once it has drained)."""
    loop = asyncio.get_running_loop()
    # A stream that begins while the pacer runs late joins it on the pacer's clock. Else its first paced
    # write would wait behind the whole backlog (one gap as long as the lag) and be as late as every other
    # stream's after that anyway.
    stream.start -= pacer.lag
    while stream.item is not None:
        stream.write_due(loop, stream.due())  # what is due at its first deadline: the rest in turn, in the pacer
        if stream.item is None:
            break
        if stream.backed_up():  # a slow reader: wait here for its socket, then for the next deadline
            if stream.writer is not None:
                await stream.writer.drain()
            await asyncio.sleep(max(0.0, stream.due() - loop.time()))
        else:
            await pacer.run(stream)
    if stream.parked:
        await loop.create_future()  # silence until the client leaves and the handler is cancelled
    return stream
