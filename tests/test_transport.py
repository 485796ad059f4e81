"""Delivery, seen from a real socket: write cutting, grouping, pacing on deadlines, clients that leave.

The raw reader below sends a hand-written HTTP/1.1 request on a plain socket and records every `recv()`
with its time, then undoes the chunked transfer encoding itself, so each body byte is known by the read
that brought it and each HTTP chunk is one write of the server.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import itertools
import json
import socket
import statistics
import time
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import web
from helpers import on_loop, open_tasks, wait_until

from mockstream import Scenario
from mockstream.deliver import stream as streams
from mockstream.deliver.frames import Write
from mockstream.deliver.pacer import Pacer, deliver
from mockstream.deliver.stream import Stream
from mockstream.server import create_app, route_directly
from mockstream.testing import MockServer

# ---------------------------------------------------------------- a raw HTTP/1.1 reader ---


def request_bytes(port: int, knobs: dict, *, headers: dict[str, str] | None = None, **body_fields) -> bytes:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": True, **body_fields}
    if knobs:
        body["mockstream"] = knobs
    payload = json.dumps(body).encode()
    lines = [
        "POST /v1/chat/completions HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Content-Type: application/json",
        f"Content-Length: {len(payload)}",
        "Connection: close",
        *(f"{name}: {value}" for name, value in (headers or {}).items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


@dataclass
class Raw:
    status: int
    headers: dict[str, str]
    reads: list[tuple[float, bytes]]  # (seconds since the request was sent, bytes) for each recv()
    chunks: list[bytes]  # the HTTP chunks: one per write of the server
    body: bytes  # the de-chunked body
    body_read: list[int]  # for each body byte, the index of the recv() that brought it
    complete: bool  # the terminating zero-size chunk arrived

    def body_per_read(self) -> list[int]:
        """How many body bytes each read carried (reads with framing only are left out)."""
        return [len(list(group)) for _, group in itertools.groupby(self.body_read)]

    def frames(self) -> list[tuple[float, dict | str]]:
        """Each SSE frame with the time its last byte arrived; `[DONE]` as the string."""
        out = []
        start = 0
        while (end := self.body.find(b"\n\n", start)) >= 0:
            frame = self.body[start:end]
            assert frame.startswith(b"data: "), frame
            data = frame[len(b"data: "):].decode()
            out.append((self.reads[self.body_read[end + 1]][0], data if data == "[DONE]" else json.loads(data)))
            start = end + 2
        assert start == len(self.body), self.body[start:]
        return out

    def content_times(self) -> list[float]:
        return [t for t, f in self.frames() if isinstance(f, dict) and f["choices"] and
                f["choices"][0]["delta"].get("content")]

    def text(self) -> str:
        return "".join(f["choices"][0]["delta"].get("content") or "" for _, f in self.frames()
                       if isinstance(f, dict) and f["choices"])


def parse_response(reads: list[tuple[float, bytes]]) -> Raw:
    raw = b"".join(data for _, data in reads)
    ends = list(itertools.accumulate(len(data) for _, data in reads))
    head_end = raw.index(b"\r\n\r\n")
    status_line, *header_lines = raw[:head_end].decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, value = line.split(":", 1)
        headers[name.strip().lower()] = value.strip()
    assert headers.get("transfer-encoding") == "chunked", headers
    pos = head_end + 4
    chunks: list[bytes] = []
    body_read: list[int] = []
    complete = False
    while (eol := raw.find(b"\r\n", pos)) >= 0:
        size = int(raw[pos:eol].split(b";")[0], 16)
        start = eol + 2
        if size == 0:
            complete = raw[start:start + 2] == b"\r\n"
            break
        if start + size + 2 > len(raw):
            break
        assert raw[start + size:start + size + 2] == b"\r\n"
        chunks.append(raw[start:start + size])
        body_read.extend(bisect.bisect_right(ends, offset) for offset in range(start, start + size))
        pos = start + size + 2
    return Raw(int(status_line.split()[1]), headers, reads, chunks, b"".join(chunks), body_read, complete)


def raw_stream(port: int, knobs: dict, *, headers: dict[str, str] | None = None, timeout: float = 20,
               **body_fields) -> Raw:
    """POST on a plain socket and record every recv() until the server closes."""
    request = request_bytes(port, knobs, headers=headers, **body_fields)
    reads = []
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sent = time.monotonic()
        sock.sendall(request)
        while data := sock.recv(65536):
            reads.append((time.monotonic() - sent, data))
    response = parse_response(reads)
    assert response.status == 200, response.body
    assert response.complete, "the response did not end with the zero-size chunk"
    return response


# ---------------------------------------------------------------- chunk_bytes ---
def test_one_byte_writes_split_utf8_characters_across_reads(server):
    text = "你好é😀"
    response = raw_stream(server.port, {"tokens": [text], "chunk_bytes": 1}, model="m")
    assert response.text() == text
    assert all(len(chunk) == 1 for chunk in response.chunks)
    body = response.body
    split = total = 0
    start = 0
    for char in text:
        encoded = char.encode()
        if len(encoded) == 1:
            continue
        at = body.index(encoded, start)
        start = at + len(encoded)
        total += 1
        reads_of_char = set(response.body_read[at:at + len(encoded)])
        split += len(reads_of_char) > 1
    assert total == 4
    assert split >= 2, f"only {split} of {total} multi-byte characters arrived split across reads"
    per_read = response.body_per_read()
    assert statistics.median(per_read) == 1, per_read


def test_chunk_bytes_caps_every_write_and_read(server):
    text = "Streaming 你好, world!"
    response = raw_stream(server.port, {"content": text, "chunk_bytes": 3}, model="m")
    assert response.text() == text
    sizes = [len(chunk) for chunk in response.chunks]
    assert max(sizes) == 3 and all(sizes), sizes
    per_read = response.body_per_read()
    small = sum(n <= 3 for n in per_read)
    assert small >= 0.8 * len(per_read), f"reads carried {per_read}: the writes were merged before the reader"


def test_chunk_bytes_never_changes_the_body(make_server):
    # two servers with the same seed and a scenario of the same name, one cutting its writes: the request
    # is byte-identical, so everything in the answer (ids and created included) must be too
    knobs = {"name": "hello", "content": "Hello 你好 world!", "ttft_ms": 30, "itl_ms": 5}
    plain_server = make_server([Scenario.from_dict(knobs)], speed=1, seed=3)
    cut_server = make_server([Scenario.from_dict({**knobs, "chunk_bytes": 7})], speed=1, seed=3)
    plain = raw_stream(plain_server.port, {}, headers={"X-Mockstream-Scenario": "hello"})
    cut = raw_stream(cut_server.port, {}, headers={"X-Mockstream-Scenario": "hello"})
    assert len(plain.chunks) == len(plain.frames())  # one write per event
    assert len(cut.chunks) > len(plain.chunks)
    assert max(len(chunk) for chunk in cut.chunks) == 7
    assert cut.body == plain.body


# ---------------------------------------------------------------- events_per_write ---
def test_events_per_write_groups_frames_into_one_write(server):
    tokens = [f"t{i} " for i in range(10)]
    response = raw_stream(server.port, {"tokens": tokens, "events_per_write": 4})
    assert response.text() == "".join(tokens)
    events = [chunk.count(b"\n\n") for chunk in response.chunks]
    total = len(response.frames())  # role + 10 tokens + finish + [DONE]
    assert total == 13
    assert events == [4, 4, 4, 1], events
    assert all(chunk.endswith(b"\n\n") for chunk in response.chunks)


def test_without_events_per_write_each_frame_is_its_own_write(server):
    response = raw_stream(server.port, {"tokens": ["a", "b", "c"]})
    assert [chunk.count(b"\n\n") for chunk in response.chunks] == [1] * 6


class RecordingTransport(asyncio.Transport):
    """The server side of one connection, as aiohttp and mockstream see it: every call goes to the real
    transport, and each send (`write`, or `writelines` as one) is kept, in order."""

    def __init__(self, inner: asyncio.Transport, sends: list[bytes]):
        super().__init__()
        self.inner = inner
        self.sends = sends

    def write(self, data) -> None:
        self.sends.append(bytes(data))
        self.inner.write(data)

    def writelines(self, list_of_data) -> None:
        pieces = [bytes(piece) for piece in list_of_data]
        self.sends.append(b"".join(pieces))
        self.inner.writelines(pieces)

    def __getattribute__(self, name: str):
        # everything but the sends goes to the real transport (socket options, buffer sizes, close, abort...)
        if name in ("write", "writelines", "inner", "sends", "__class__", "__dict__"):
            return object.__getattribute__(self, name)
        return getattr(object.__getattribute__(self, "inner"), name)


class RecordingProtocol(asyncio.Protocol):
    """aiohttp's protocol for one connection, handed a `RecordingTransport` instead of the real one."""

    def __init__(self, handler: asyncio.Protocol, sends: list[bytes]):
        self.handler = handler
        self.sends = sends

    def connection_made(self, transport) -> None:
        self.handler.connection_made(RecordingTransport(transport, self.sends))

    def data_received(self, data: bytes) -> None:
        self.handler.data_received(data)

    def eof_received(self):
        return self.handler.eof_received()

    def connection_lost(self, exc) -> None:
        self.handler.connection_lost(exc)

    def pause_writing(self) -> None:
        self.handler.pause_writing()

    def resume_writing(self) -> None:
        self.handler.resume_writing()


@contextlib.asynccontextmanager
async def recording_server(sends: list[bytes], **options):
    """mockstream's app on this loop, served through aiohttp's public `AppRunner.server` protocol factory
    with each connection's sends recorded; yields its port."""
    runner = web.AppRunner(create_app(**options), handler_cancellation=True, access_log=None)
    await runner.setup()
    route_directly(runner)
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(lambda: RecordingProtocol(runner.server(), sends), "127.0.0.1", 0)
    try:
        yield listener.sockets[0].getsockname()[1]
    finally:
        listener.close()
        await runner.cleanup()


@pytest.mark.parametrize(("path", "body", "first_due_at_once"), [
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "mockstream": {"tokens": ["a", "b"]}},
     True),  # the role chunk is due at once
    ("/v1/completions", {"prompt": "hi", "mockstream": {"tokens": ["a", "b"], "ttft_ms": 150}}, False),
])
async def test_the_headers_leave_with_the_first_event_and_the_end_with_the_last(path, body, first_due_at_once):
    """One packet fewer at each end of a stream: a first event due at once goes out in the headers' write
    (else the headers go alone, at once), and the zero-size chunk in the last event's write."""
    sends: list[bytes] = []
    async with recording_server(sends, speed=1) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        payload = json.dumps({"model": "m", "stream": True, **body}).encode()
        writer.write(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode() + payload)
        received = await asyncio.wait_for(reader.read(-1), 10)
        writer.close()
    assert b"".join(sends) == received  # every byte the client got went through the recorded sends
    head, *rest = sends
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert head.endswith(b"\n\n\r\n" if first_due_at_once else b"\r\n\r\n")
    assert rest[-1].endswith(b"data: [DONE]\n\n\r\n0\r\n\r\n")
    events = received.count(b"data: ")
    assert events >= 4 and len(sends) == events + (not first_due_at_once)  # one write per event, no more


def test_grouped_frames_arrive_together_at_the_last_ones_deadline(make_server):
    srv = make_server(speed=1)
    response = raw_stream(srv.port, {"tokens": [str(i) for i in range(8)], "ttft_ms": 0, "itl_ms": 60,
                                     "events_per_write": 4})
    times = response.content_times()
    assert len(times) == 8
    # tokens 0-2 ride with the role chunk, due with token 2 (120 ms); tokens 3-6 with token 6 (360 ms)
    assert max(times[:3]) - min(times[:3]) < 0.03, times
    assert max(times[3:7]) - min(times[3:7]) < 0.03, times
    assert 0.09 <= times[0] <= 0.25, times
    assert 0.30 <= times[3] <= 0.50, times


# ---------------------------------------------------------------- catching up ---
def test_a_stream_that_fell_far_behind_catches_up_in_one_write(make_server, monkeypatch):
    """The server's loop blocked for 300 ms mid-stream, past CATCH_UP (here 100 ms; a loaded server): the
    tokens due meanwhile leave together when it resumes, instead of one write each, ever later."""
    monkeypatch.setattr(streams, "CATCH_UP", 0.1)
    srv = make_server(speed=1)
    srv.call(lambda: asyncio.get_running_loop().call_later(0.25, time.sleep, 0.3))  # the loop blocks then
    response = raw_stream(srv.port, {"tokens": [f" w{i}" for i in range(40)], "ttft_ms": 0, "itl_ms": 20})
    assert response.text() == "".join(f" w{i}" for i in range(40))
    events = [chunk.count(b"\n\n") for chunk in response.chunks]
    caught_up = max(events)
    assert caught_up >= 8, events  # ~15 tokens fell due while the loop slept
    before = events[: events.index(caught_up)]
    assert len(before) >= 5 and before.count(1) >= 0.7 * len(before), events  # on time: one write per event
    assert sum(events) == 43  # role, 40 tokens, finish, [DONE]


async def test_a_pacer_behind_its_deadlines_lets_the_loop_run_between_turns():
    """400 writes of 0.2 ms all due at once (a server past one core): a callback queued meanwhile, such as a
    new request, runs after one turn of the pacer, not after all 80 ms of writes."""
    loop = asyncio.get_running_loop()
    written = []

    class SlowSocket(asyncio.Transport):
        def write(self, data: bytes) -> None:
            time.sleep(0.0002)  # the CPU a write costs on a loaded machine
            written.append(data)

        def get_write_buffer_size(self) -> int:
            return 0

        def is_closing(self) -> bool:
            return False

    pacer = Pacer()
    start = loop.time()
    # each stream's last write is kept for the handler's write_eof: the pacer writes only the first
    streams = [Stream(None, SlowSocket(), iter([Write(0.0, b"x", 1), Write(0.0, b"end", 1)]), start)
               for _ in range(400)]
    runs = [loop.create_task(pacer.run(stream)) for stream in streams]
    await asyncio.sleep(0)  # every stream is in the pacer, whose driver is about to start
    seen_at: list[int] = []
    loop.call_soon(lambda: seen_at.append(len(written)))
    await asyncio.gather(*runs)
    assert len(written) == 400
    assert all(stream.tail == b"end" for stream in streams)
    assert seen_at and seen_at[0] < 100, seen_at


class _Recorder(asyncio.Transport):
    """A socket that keeps every write, in order."""

    def __init__(self, written: list):
        super().__init__()
        self.written = written

    def write(self, data: bytes) -> None:
        self.written.append(data.split(b"\r\n")[1])  # the HTTP chunk's payload

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return False


async def test_late_streams_take_turns_in_deadline_order():
    """Two streams 35 ms behind (less than CATCH_UP): each write goes in the order of its deadline, one per
    turn, so every stream drifts late evenly instead of one sending its backlog in a burst (a reader would
    see its tokens bunched) while the other falls further behind."""
    loop = asyncio.get_running_loop()
    written: list[bytes] = []
    start = loop.time() - 0.035
    a = Stream(None, _Recorder(written), iter([Write(i * 0.010, b"a%d" % i, 1) for i in range(5)]), start)
    b = Stream(None, _Recorder(written), iter([Write(0.005 + i * 0.010, b"b%d" % i, 1) for i in range(5)]), start)
    pacer = Pacer()
    await asyncio.gather(pacer.run(a), pacer.run(b))
    assert written[:7] == [b"a0", b"b0", b"a1", b"b1", b"a2", b"b2", b"a3"], written
    assert a.tail == b"a4" and b.tail == b"b4"


class _Costly(_Recorder):
    """A socket whose writes cost CPU: with enough streams, more than the pacer can write on time."""

    def __init__(self, written: list, cost: float):
        super().__init__(written)
        self.cost = cost

    def write(self, data: bytes) -> None:
        until = time.perf_counter() + self.cost
        while time.perf_counter() < until:
            pass
        self.written.append((time.perf_counter(), data))


async def test_a_stream_that_begins_while_the_pacer_runs_late_keeps_its_first_gap():
    """100 streams writing every 10 ms at 0.15 ms a write: 1.5 times what one core can do, so the pacer
    falls ever later. A stream that begins then sends its first event at once and joins the pacer on its
    clock: its next event comes about one gap later, not one gap plus the whole backlog."""
    loop = asyncio.get_running_loop()
    pacer = Pacer()
    start = loop.time()
    load = [
        Stream(None, _Costly([], 0.00015), iter([Write(i * 0.010, b"x", 1) for i in range(80)]), start)
        for _ in range(100)
    ]
    running = [loop.create_task(pacer.run(stream)) for stream in load]
    late_by = loop.time() + 5
    while pacer.lag < 0.06:  # the handler of a new request runs between the pacer's turns
        assert loop.time() < late_by, "the pacer never fell 60 ms behind"
        await asyncio.sleep(0)
    written: list[tuple[float, bytes]] = []
    items = [Write(0.0, b"a", 1), Write(0.020, b"b", 1), Write(0.040, b"c", 1), Write(0.060, b"end", 1)]
    lag, began = pacer.lag, time.perf_counter()
    joining = Stream(None, _Costly(written, 0.00015), iter(items), loop.time())
    await deliver(joining, pacer)
    (first, _), (second, _), _ = written
    assert first - began < 0.005  # the first event left at once
    assert second - first < 0.020 * 1.5 + lag / 2, (second - first, lag)
    for task in running:
        task.cancel()
    await asyncio.gather(*running, return_exceptions=True)


def test_unpaced_streams_keep_one_write_per_event_however_late(server):
    """At zero delays every event is due at once: that is no lateness, so nothing joins."""
    response = raw_stream(server.port, {"tokens": [f"t{i}" for i in range(200)]})
    assert [chunk.count(b"\n\n") for chunk in response.chunks] == [1] * 203


# ---------------------------------------------------------------- pacing ---
TOKENS_50 = [f" w{i}" for i in range(50)]


def test_tokens_arrive_on_absolute_deadlines(make_server):
    srv = make_server(speed=1)
    response = raw_stream(srv.port, {"tokens": TOKENS_50, "ttft_ms": 200, "itl_ms": 20})
    times = response.content_times()
    assert len(times) == 50
    assert 0.2 - 0.03 <= times[0] <= 0.2 + 0.12, times[0]
    assert abs(times[-1] - (0.2 + 49 * 0.02)) <= 0.12, times[-1]
    for k, t in enumerate(times):
        assert abs(t - (0.2 + k * 0.02)) <= 0.12, (k, t)
    assert response.frames()[0][0] < 0.1, "the role chunk is due at once"


def test_lateness_does_not_accumulate(make_server):
    # 500 gaps of 2 ms: sleeping per gap would add its overshoot 500 times; deadlines do not
    srv = make_server(speed=1)
    response = raw_stream(srv.port, {"tokens": ["x"] * 501, "ttft_ms": 0, "itl_ms": 2})
    times = response.content_times()
    assert len(times) == 501
    late = [t - k * 0.002 for k, t in enumerate(times)]
    early, final = statistics.median(late[:50]), statistics.median(late[-50:])
    assert final - early < 0.04, f"lateness grew from {early * 1000:.1f} ms to {final * 1000:.1f} ms"
    assert times[-1] >= 1.0 - 0.005, "tokens were sent before their deadline"


def test_speed_two_halves_every_delay(make_server):
    srv = make_server(speed=2)
    response = raw_stream(srv.port, {"tokens": TOKENS_50, "ttft_ms": 200, "itl_ms": 20})
    times = response.content_times()
    assert abs(times[0] - 0.1) <= 0.08, times[0]
    assert abs(times[-1] - (0.2 + 49 * 0.02) / 2) <= 0.12, times[-1]


def test_speed_zero_removes_every_delay(server):
    started = time.monotonic()
    response = raw_stream(server.port, {"tokens": TOKENS_50, "ttft_ms": 5000, "itl_ms": 1000, "jitter_ms": 500})
    assert time.monotonic() - started < 1.0
    assert len(response.content_times()) == 50


def _gaps(port: int, knobs: dict) -> list[float]:
    times = raw_stream(port, knobs).content_times()
    return [b - a for a, b in itertools.pairwise(times)]


def test_jitter_is_the_same_for_the_same_seed(make_server):
    srv = make_server(speed=1, seed=5)
    knobs = {"tokens": [f"{i} " for i in range(16)], "ttft_ms": 0, "itl_ms": 40, "jitter_ms": 30}

    async def run_all():
        jobs = [asyncio.to_thread(_gaps, srv.port, {**knobs, "seed": seed}) for seed in (1, 1, 2)]
        return await asyncio.gather(*jobs)

    first, again, other = asyncio.run(run_all())
    same = statistics.median(abs(a - b) for a, b in zip(first, again))
    different = statistics.median(abs(a - b) for a, b in zip(first, other))
    assert same < 0.006, (first, again)
    assert different > same + 0.008, (first, other)
    assert statistics.pstdev(first) > 0.008, f"no jitter to speak of: {first}"


# ---------------------------------------------------------------- clients that leave ---
@pytest.mark.parametrize("ttft_ms", [0, 30_000], ids=["mid-stream", "before-the-first-token"])
def test_a_client_that_leaves_frees_its_stream(make_server, ttft_ms):
    srv = make_server(speed=1)
    pacer = srv.state.pacer
    idle = open_tasks(srv)
    request = request_bytes(srv.port, {"tokens": ["tok "] * 400, "ttft_ms": ttft_ms, "itl_ms": 50})
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
        sock.sendall(request)
        received = b""
        frames = 3 if ttft_ms == 0 else 1  # a few tokens, or only the role chunk
        while received.count(b"data: ") < frames:
            data = sock.recv(65536)
            assert data, "the server closed the stream early"
            received += data
        assert wait_until(lambda: len(pacer) == 1)
        assert open_tasks(srv) > idle
    assert wait_until(lambda: len(pacer) == 0), "the stream is still in the pacer"
    assert wait_until(lambda: open_tasks(srv) == idle), (
        f"{open_tasks(srv) - idle} task(s) left behind: {on_loop(srv, lambda: asyncio.all_tasks())}")


def test_the_server_keeps_serving_after_clients_leave(make_server):
    srv = make_server(speed=1)
    for _ in range(5):
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
            sock.sendall(request_bytes(srv.port, {"tokens": ["a"] * 100, "itl_ms": 20}))
            assert sock.recv(65536)
    response = raw_stream(srv.port, {"content": "still here", "itl_ms": 5})
    assert response.text() == "still here"
    assert wait_until(lambda: len(srv.state.pacer) == 0)


# ---------------------------------------------------------------- many streams at once ---
async def test_200_concurrent_paced_streams_complete(make_server):
    srv = make_server(speed=1)
    count, itl = 200, 0.02

    async def one(session: aiohttp.ClientSession, i: int) -> tuple[str, str, float]:
        text = f"Stream {i} says hello, 你好, number {i * 7}."
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": True,
                "mockstream": {"content": text, "ttft_ms": 100, "itl_ms": itl * 1000}}
        started = time.monotonic()
        parts, done = [], False
        async with session.post(f"{srv.base_url}/chat/completions", json=body) as response:
            assert response.status == 200
            buffer = b""
            async for data in response.content.iter_any():
                buffer += data
                *frames, buffer = buffer.split(b"\n\n")
                for frame in frames:
                    payload = frame.removeprefix(b"data: ")
                    if payload == b"[DONE]":
                        done = True
                        continue
                    choices = json.loads(payload)["choices"]
                    if choices:
                        parts.append(choices[0]["delta"].get("content") or "")
        assert done and buffer == b""
        return text, "".join(parts), time.monotonic() - started

    connector = aiohttp.TCPConnector(limit=0)
    started = time.monotonic()
    async with aiohttp.ClientSession(connector=connector) as session:
        results = await asyncio.gather(*(one(session, i) for i in range(count)))
    elapsed = time.monotonic() - started
    assert len(results) == count
    for expected, got, _ in results:
        assert got == expected
    longest = max(len(expected) for expected, _, _ in results)  # tokens <= characters
    assert elapsed < 0.1 + longest * itl + 3.0, f"{count} streams took {elapsed:.2f} s"
    assert min(duration for *_, duration in results) >= 0.1 + 10 * itl, "the streams were not paced"
    assert wait_until(lambda: len(srv.state.pacer) == 0)


# ---------------------------------------------------------------- a client that does not read ---
def test_a_client_that_does_not_read_holds_back_its_stream_not_the_server():
    """A 60,000-token unpaced stream (about 15 MB, more than the kernel buffers) to a client that stops
    reading: the server keeps only a little unsent and waits, and the whole stream arrives once it reads."""
    srv = MockServer(speed=0)
    transports: list[asyncio.BaseTransport] = []  # the server side of each answered connection

    async def keep_transport(request: web.Request, response: web.StreamResponse) -> None:
        transports.append(request.transport)

    srv.app.on_response_prepare.append(keep_transport)  # aiohttp's public signal, before the app freezes

    def unsent() -> int:
        """Bytes the server's socket holds that the kernel has not taken yet."""
        [transport] = transports
        return on_loop(srv, transport.get_write_buffer_size)

    with srv, socket.create_connection(("127.0.0.1", srv.port), timeout=20) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.sendall(request_bytes(srv.port, {"content": " word" * 60_000}))
        received = [sock.recv(4096)]
        time.sleep(0.5)  # the kernel buffers fill up; the server must wait, not keep writing into memory
        waiting = unsent()
        assert waiting < 64 * 1024, f"{waiting} bytes waiting in the server for a client that does not read"
        assert on_loop(srv, lambda: [entry.outcome for entry in srv.state.journal]) == ["in_progress"]
        while not received[-1].endswith(b"0\r\n\r\n"):
            data = sock.recv(1 << 20)
            assert data, "the server closed the stream early"
            received.append(data)
    body = b"".join(received)
    assert body.count(b'"content":" word"') == 60_000
    assert body.endswith(b"data: [DONE]\n\n\r\n0\r\n\r\n")
