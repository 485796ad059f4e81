"""One answered request: the plan goes through its dialect, its fault's hooks and delivery, and the journal
learns how it ended. The exchange names no fault: each fault acts through its hooks (see faults/)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Iterator, Mapping
from functools import partial

from aiohttp import hdrs, web
from multidict import CIMultiDict

from ..deliver import replay as replayed
from ..deliver import sockets
from ..deliver.cutting import writes
from ..deliver.frames import Frame, Item
from ..deliver.pacer import deliver
from ..deliver.stream import Stream
from ..deliver.timeline import Timeline
from ..dialects import Dialect, Reply
from ..dialects.recorded import kind_of
from ..faults import describe
from ..plan import Plan
from .aiohttp_private import HeadersWithBody
from .headers import JSON, STREAM, answer_headers, replay_headers
from .journal import Entry
from .recent import MAX_REPLAY_TOKENS
from .state import State

log = logging.getLogger("mockstream")
MAX_KEPT_REPLY = 256 * 1024  # bytes of a whole answer the journal keeps, for the inspector


def encoded(dialect: Dialect, plan: Plan) -> Iterator[Item]:
    """Encode (or read a recording back), let the fault change the frames, cut into writes: everything a
    stream sends, from the plan alone. A recording that no knob changes is its own writes, as recorded."""
    replay, delivery = plan.replay, plan.delivery
    if replay is not None and verbatim(plan):
        return replayed.writes(replay)
    return writes(framed(dialect, plan), delivery.chunk_bytes, delivery.events_per_write)


def framed(dialect: Dialect, plan: Plan) -> Iterator[Frame]:
    """The stream's frames (its SSE events, a delivery fault's marker among them), before cutting into writes."""
    replay, fault = plan.replay, plan.fault
    if replay is None:
        frames = dialect.encode(plan)
    else:
        frames = replayed.frames(replay, kind_of, plan.due_times() if replay.retimed else None)
    if fault is not None:
        frames = fault.frames(frames, plan, dialect)
    return frames


def verbatim(plan: Plan) -> bool:
    """Is the plan a recording that no knob changes (replayed write for write, as recorded)?"""
    delivery = plan.delivery
    return (
        plan.replay is not None
        and plan.fault is None
        and not delivery.chunk_bytes
        and delivery.events_per_write == 1
        and not plan.replay.retimed
    )


class Exchange:
    """One answered request, from its plan to its journal entry's ending."""

    __slots__ = ("dialect", "entry", "loop", "plan", "request", "start", "state", "stream")

    def __init__(self, state: State, request: web.Request, dialect: Dialect, plan: Plan, entry: Entry, start: float):
        self.state = state
        self.request = request
        self.dialect = dialect
        self.plan = plan
        self.entry = entry
        self.start = start
        self.loop = asyncio.get_running_loop()
        self.stream: Stream | None = None
        if state.keeps_details:  # what rebuilds the answer's detail (the inspector, the admin API)
            entry.plan = plan
        if plan.fault is not None:
            entry.extra["fault"] = describe(plan.fault)
        if plan.replay is not None:
            entry.extra["recording"] = plan.replay.source

    @property
    def streamed(self) -> bool:
        """Is the answer a stream (a recording: was it)?"""
        replay = self.plan.replay
        return self.plan.ask.stream if replay is None else replay.recording.streamed

    def answer(self) -> Awaitable[web.StreamResponse]:
        """The coroutine that answers: a stream is answered by `_stream` itself (no layer above it)."""
        fault = self.plan.fault
        if self.streamed and (fault is None or not fault.before_response):
            return self._stream()
        return self._answer()

    async def _answer(self) -> web.StreamResponse:
        fault = self.plan.fault
        if fault is not None:
            refusal = fault.refusal(self.plan, self.dialect)
            if refusal is not None:
                self.finish(fault.outcome, refusal.status)
                return _response(refusal, self.state.settings.headers)
            delay = fault.header_delay()
            if delay:
                await asyncio.sleep(delay)
        if not self.streamed:
            return await self._complete()
        return await self._stream()

    async def _complete(self) -> web.StreamResponse:
        """A non-streamed answer, after the time generating it takes; the fault acts on it before it goes."""
        plan, fault, replay = self.plan, self.plan.fault, self.plan.replay
        if replay is None:
            await asyncio.sleep(plan.duration)
            body = json.dumps(self.dialect.complete(plan), ensure_ascii=False).encode()
            reply: Reply | None = Reply(200, body, self._headers(JSON))
        else:  # a recorded whole body: sent when its last byte came
            recording = replay.recording
            await asyncio.sleep(replay.due(recording.writes[-1].at) if recording.writes else 0.0)
            reply = Reply(recording.status, recording.body, self._headers(JSON))
        if fault is not None:
            assert reply is not None
            reply = await fault.complete(reply, plan, self.dialect, self.request.transport)
        if reply is None:  # the fault closed the connection
            self.finish(fault.outcome if fault is not None else "completed", None)
            return web.Response(status=204)  # never reaches the client: the connection is gone
        if reply.status == 200 or replay is not None:
            self.entry.bytes_sent = len(reply.body)
        if self.state.keeps_details:
            self.entry.reply = reply.body[:MAX_KEPT_REPLY]
        self.finish(fault.outcome if fault is not None else "completed", reply.status)
        return _response(reply)

    async def _stream(self) -> web.StreamResponse:
        plan = self.plan
        transport = self.request.transport
        delivery = plan.delivery
        sockets.prepare(transport, cut=bool(delivery.chunk_bytes))
        gap = delivery.chunk_gap if delivery.chunk_bytes else 0.0
        state = self.state
        timeline = None
        if state.keeps_timelines:
            timeline = self.entry.timeline = Timeline(self.start, state.gap_bounds)
        # The writes are referenced by the stream alone (a replay also by the cache): it lets go at its end.
        self.stream = stream = Stream(None, transport, self._writes(), self.start, gap, timeline)
        # What is due at once leaves with the headers in one packet; else the headers go at once, alone.
        head = stream.take_head(self.loop)
        with_body = head is not None or stream.tail
        status = 200 if plan.replay is None else plan.replay.recording.status
        headers = self.state.recent.headers(plan, partial(self._headers, STREAM))
        response = (HeadersWithBody if with_body else web.StreamResponse)(status=status, headers=headers)
        response.enable_chunked_encoding()
        try:
            stream.writer = await response.prepare(self.request)
            if head is not None:
                await response.write(head)
        except ConnectionError:  # the client left before the headers went out (aiohttp then stays quiet)
            self.finish("client_disconnected")
            return response
        metrics = state.metrics
        if metrics is not None:
            metrics.stream_opened()
        try:
            await deliver(stream, self.state.pacer)
            if stream.closed_by is None:
                await response.write_eof(stream.tail)
            ended = plan.fault or stream.ended_by
            self.finish(ended.outcome if ended is not None else "completed", status)
        except ConnectionError:
            self.finish("client_disconnected")
        except Exception as exc:  # a bug of ours after the 200 went out: cut the stream, keep the error for tests
            log.exception("internal error while streaming %s", self.request.path)
            self.state.errors.append(exc)
            self.finish("internal_error")
            sockets.close(transport)
        finally:
            if metrics is not None:
                metrics.stream_closed()
        return response

    def _headers(self, content_type: str) -> dict[str, str]:
        plan, server = self.plan, self.state.settings.headers
        if plan.replay is not None:
            return replay_headers(plan.replay.recording, plan.scenario, server)
        return answer_headers(self.dialect, plan, content_type, server)

    def _writes(self) -> Iterator[Item]:
        """The plan's socket writes: replayed when the same plan streamed recently (and is short)."""
        dialect, plan = self.dialect, self.plan
        tokens = plan.usage.completion_tokens
        if plan.delivery.chunk_bytes or tokens > MAX_REPLAY_TOKENS or plan.replay:
            return encoded(dialect, plan)
        # The encoder is kept with the replay: it must not hold this exchange (its request, its socket).
        return self.state.recent.replay(plan, partial(encoded, dialect, plan), tokens)

    def cut_short(self) -> str:
        """Why a cancelled exchange ended: our own fault closing the socket (aiohttp then cancels the handler
        as if the client had left), the client leaving, or a stop cutting it."""
        closed_by = self.stream.closed_by if self.stream is not None else None
        if closed_by is not None:
            return closed_by.outcome
        return "shutdown" if self.state.in_flight.cut else "client_disconnected"

    def finish(self, outcome: str, status: int | None = 200) -> None:
        """Journal how the exchange ended (once: the first ending wins)."""
        entry = self.entry
        if entry.outcome != "in_progress":
            return
        stream = self.stream
        timeline = entry.timeline
        if timeline is not None and outcome == "client_disconnected":
            timeline.left_ms = timeline.at(self.loop.time())
        if stream is not None:
            entry.events_sent = stream.events_sent
            entry.bytes_sent = stream.bytes_sent
            entry.first_byte_at = _wall(stream.first_byte, self.loop)
            entry.last_byte_at = _wall(stream.last_byte, self.loop)
        self.state.journal.close(entry, status, outcome, round((self.loop.time() - self.start) * 1000, 3))


def _response(reply: Reply, server: Mapping[str, str] | None = None) -> web.Response:
    """A whole answer as aiohttp's response: JSON unless its headers say otherwise. `server` are the
    server's own headers, for a reply built without them (a fault's refusal)."""
    headers = CIMultiDict(server or {})
    headers.update(reply.headers)
    headers.setdefault(hdrs.CONTENT_TYPE, JSON)
    return web.Response(body=reply.body, status=reply.status, headers=headers)


def _wall(loop_time: float | None, loop: asyncio.AbstractEventLoop) -> float | None:
    return None if loop_time is None else time.time() - (loop.time() - loop_time)
