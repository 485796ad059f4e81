"""Deliver a stream's writes on absolute deadlines, one slow reader never slowing the others.

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
- a stream that fell `stream.CATCH_UP` behind (the server past its capacity for seconds) sends what is due
  in one write and is on time again, so it still ends in time.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools

from .stream import SLACK, Stream

TURN = 0.002  # s the pacer writes, when behind, before it lets the loop run other work (new requests) once


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
                    heapq.heappush(self._heap, (stream.due(), next(self._order), stream))
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
