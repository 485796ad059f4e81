"""`GET /_mockstream/events`: the journal as a live SSE stream, what the inspector page is fed by.

Each subscriber first gets `hello` (which worker it is talking to) and the journal as it stands, then, as they
happen: `opened` (a request arrived: its summary), `progress` (about every PROGRESS seconds, the new writes of
the streams still running) and `closed` (a request ended: its whole detail). One connection carries
everything, so a page served by one of several workers never has to reach that same worker again.

The feed costs nothing while nobody listens: it hooks into the journal with its first subscriber and lets go
with its last. A subscriber that cannot keep up loses events (it is told how many), never the server's memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from typing import Any

from aiohttp import web

from .. import __version__
from ..deliver.sse import framing
from .detail import detail, progress, summary
from .journal import Entry
from .state import State

PROGRESS = 0.25  # s between progress events
PING = 15.0  # s between keep-alive comments
BACKLOG = 1000  # events a subscriber may fall behind by before it loses some
SNAPSHOT = 50  # entries a new subscriber is sent of the journal as it stands (each detail encodes its plan again)
EVENT_SENT_LIMIT = 64 * 1024  # bytes of what was sent a `closed` event shows (the detail route shows more)
PROGRESS_LIMIT = 100  # running streams one progress event reports

_SSE = framing()


class Feed:
    """The subscribers of one server's journal, and what tells them."""

    def __init__(self, state: State):
        self.state = state
        self.subscribers: set[asyncio.Queue[bytes | None]] = set()
        self.dropped: dict[asyncio.Queue[bytes | None], int] = {}
        self._ticker: asyncio.Task | None = None
        self._reported: dict[int, tuple[int, int]] = {}  # entry id -> (writes kept, made) when last reported

    def info(self) -> dict[str, Any]:
        state = self.state
        return {
            "worker": state.worker,
            "workers": state.workers,
            "pid": os.getpid(),
            "version": __version__,
            "metrics": state.metrics is not None,
        }

    async def handle(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        )
        await response.prepare(request)
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        try:
            await response.write(_event("hello", self.info()) + self._snapshot())
            self._subscribe(queue)
            while True:
                try:
                    data = await asyncio.wait_for(queue.get(), PING)
                except asyncio.TimeoutError:
                    data = b": ping\n\n"
                if data is None:  # the server is stopping
                    break
                lost = self.dropped.pop(queue, 0)
                if lost:
                    data = _event("dropped", {"events": lost}) + data
                await response.write(data)
        except ConnectionError:  # the page went away
            return response
        finally:  # also when the handler is cancelled (the server stops): nothing is left subscribed
            self._unsubscribe(queue)
        with contextlib.suppress(ConnectionError):
            await response.write_eof()
        return response

    def close(self) -> None:
        """End every subscriber's stream (the server is stopping: an open inspector must not hold it)."""
        for queue in self.subscribers:
            queue.put_nowait(None)

    # ---- the journal's side
    def _subscribe(self, queue: asyncio.Queue[bytes | None]) -> None:
        if not self.subscribers:
            journal = self.state.journal
            journal.opened.append(self._opened)
            journal.listeners.append(self._closed)
            self._ticker = asyncio.get_running_loop().create_task(self._tick())
        self.subscribers.add(queue)

    def _unsubscribe(self, queue: asyncio.Queue[bytes | None]) -> None:
        self.subscribers.discard(queue)
        self.dropped.pop(queue, None)
        if self.subscribers:
            return
        journal = self.state.journal
        with contextlib.suppress(ValueError):
            journal.opened.remove(self._opened)
        with contextlib.suppress(ValueError):
            journal.listeners.remove(self._closed)
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        self._reported.clear()

    def _snapshot(self) -> bytes:
        entries = list(self.state.journal)[-SNAPSHOT:]
        out = []
        for entry in entries:
            if entry.outcome == "in_progress":
                out.append(_event("opened", summary(entry, self.state)))
                if entry.timeline is not None:
                    out.append(_event("progress", [progress(entry, 0)]))
            else:
                out.append(_event("closed", detail(entry, self.state, EVENT_SENT_LIMIT)))
        return b"".join(out)

    def _opened(self, entry: Entry) -> None:
        self._send(_event("opened", summary(entry, self.state)))

    def _closed(self, entry: Entry) -> None:
        self._reported.pop(entry.id, None)
        self._send(_event("closed", detail(entry, self.state, EVENT_SENT_LIMIT)))

    def _send(self, data: bytes) -> None:
        for queue in self.subscribers:
            if queue.qsize() >= BACKLOG:
                self.dropped[queue] = self.dropped.get(queue, 0) + 1
            else:
                queue.put_nowait(data)

    async def _tick(self) -> None:
        """Every PROGRESS seconds, the new writes of the streams still running."""
        reported = self._reported
        while True:
            await asyncio.sleep(PROGRESS)
            items = []
            for entry in self.state.journal:
                timeline = entry.timeline
                if entry.outcome != "in_progress" or timeline is None:
                    continue
                start, made = reported.get(entry.id, (0, 0))
                if timeline.count == made:
                    continue
                item = progress(entry, start)
                if item is not None:
                    items.append(item)
                    reported[entry.id] = (timeline.kept, timeline.count)
                if len(items) >= PROGRESS_LIMIT:
                    break
            if items:
                self._send(_event("progress", items))


def _event(name: str, data: Any) -> bytes:
    return _SSE.event(name, json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode())
