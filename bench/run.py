#!/usr/bin/env python3
"""mockstream's benchmark: mockstream against a minimal aiohttp reference server, rep by rep.

    python bench/run.py                                  # every metric, 3 reps
    python bench/run.py throughput --reps 5
    python bench/run.py timing --lg /path/to/lg          # C load generator (or env MOCKSTREAM_LG)
    python bench/run.py memory --streams 1000

Each server (mockstream and bench/reference_server.py) is started fresh for every rep of every metric,
pinned to CPU 0; the load client is pinned to CPU 1; reps of the two servers alternate, so both see the
same machine noise. The runner prints, per metric, the median over reps of each server and the ratio
mockstream / reference. Compare ratios, not absolute numbers: they move with the machine.

Metrics
  throughput  zero delay (mockstream --speed 0): 1 client looping 2000-token streams, and 64 clients looping
              500-token streams, on keep-alive, 2 s window: content chunks per second, server CPU %.
  timing      itl_ms 20, 100 tokens per stream, N concurrent streams (default 1000 and 2000) opened over
              500 ms: share of streams complete, percentiles of |gap - 20 ms| between content chunks.
  memory      N streams (default 1000) held open by a long ttft_ms: server RSS growth per open stream.

Load client: with the C load generator (`--lg PATH` or MOCKSTREAM_LG) throughput and timing measure the
servers. Without it a built-in asyncio client drives the load; a Python client saturates before these
servers do, so its throughput and timing numbers are client-bound, indicative only (they are labelled).
The memory metric always uses the built-in client: holding streams open costs the client nothing.

Linux only (CPU affinity and /proc); loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import resource
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
HOST = "127.0.0.1"
SERVER_CPU, CLIENT_CPU = 0, 1
PAGE = os.sysconf("SC_PAGE_SIZE")
TICK = os.sysconf("SC_CLK_TCK")
PATH = "/v1/chat/completions"
ITL_MS, TIMING_TOKENS, RAMP_MS = 20.0, 100, 500


def log(*parts) -> None:
    print(time.strftime("%H:%M:%S"), *parts, file=sys.stderr, flush=True)


def body(tokens: int, itl_ms: float = 0, ttft_ms: float = 0) -> bytes:
    return json.dumps(
        {
            "model": "bench",
            "stream": True,
            "messages": [{"role": "user", "content": "bench"}],
            "mockstream": {"random_tokens": tokens, "itl_ms": itl_ms, "ttft_ms": ttft_ms},
        },
        separators=(",", ":"),
    ).encode()


def pct(values, p):
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


def r3(x):
    return None if x is None else round(x, 3)


# ------------------------------------------------------------------------------------------ servers ---
def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def pinned(cpu: int | None):
    if cpu is None:
        return None

    def pin():
        os.sched_setaffinity(0, {cpu})

    return pin


class Server:
    """One server process, pinned, started fresh for one rep of one metric."""

    def __init__(self, name: str, argv: list[str], logdir: str, cpu: int | None):
        self.name = name
        self.port = free_port()
        argv = [a.replace("{port}", str(self.port)) for a in argv]
        self.logf = open(os.path.join(logdir, f"{name}-{self.port}.log"), "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self.logf,
            stderr=subprocess.STDOUT,
            preexec_fn=pinned(cpu),
            start_new_session=True,
            cwd=logdir,  # not the checkout: `python -m mockstream` must import the installed (or given) build
        )
        try:
            self._wait_ready(30.0)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, limit: float) -> None:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                urllib.request.urlopen(f"http://{HOST}:{self.port}/healthz", timeout=2).read()
                return
            except urllib.error.HTTPError:
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready after {limit:.0f} s: {self.log_tail()}")

    def log_tail(self, n: int = 600) -> str:
        self.logf.flush()
        with open(self.logf.name, "rb") as f:
            return f.read()[-n:].decode(errors="replace")

    def stats(self) -> tuple[float, int]:
        """(CPU seconds, RSS bytes) of the server process."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK, int(fields[21]) * PAGE

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logf.close()


def server_argv(name: str, mode: str, mockstream_cmd: list[str]) -> list[str]:
    if name == "mockstream":
        argv = [*mockstream_cmd, "serve", "--host", HOST, "--port", "{port}", "--log-level", "warning"]
        return argv + (["--speed", "0"] if mode == "zero" else [])
    return [sys.executable, os.path.join(HERE, "reference_server.py"), "--host", HOST, "--port", "{port}"]


# ---------------------------------------------------------------------------------- load clients ---
class Stream:
    __slots__ = ("complete", "done", "events", "n_content", "status")

    def __init__(self):
        self.status = 0
        self.done = False  # saw data: [DONE]
        self.complete = False  # the HTTP response ended
        self.n_content = 0
        self.events: list[int] = []  # ns (monotonic) at which each content chunk was read


class LgClient:
    """The C load generator (epoll, one thread): it outruns any Python server, so it measures the server."""

    label = "C load generator"
    bound = False

    def __init__(self, path: str, workdir: str):
        self.path, self.workdir = path, workdir

    def _run(self, port: int, payload: bytes, conc: int, timeout: float, **options) -> tuple[dict, list[Stream]]:
        bodyfile = os.path.join(self.workdir, "body.json")
        with open(bodyfile, "wb") as f:
            f.write(payload)
        out = os.path.join(self.workdir, "records.txt")
        argv = [
            self.path,
            "--port",
            str(port),
            "--path",
            PATH,
            "--body-file",
            bodyfile,
            "--conc",
            str(conc),
            "--timeout",
            str(timeout),
            "--out",
            out,
        ]
        for key, value in options.items():
            if value is True:
                argv.append("--" + key.replace("_", "-"))
            elif value not in (None, False):
                argv += ["--" + key.replace("_", "-"), str(value)]
        done = subprocess.run(argv, capture_output=True, timeout=timeout + 15)
        if done.returncode != 0:
            raise RuntimeError(f"load generator failed ({done.returncode}): {done.stderr.decode()[-400:]}")
        summary = json.loads(done.stdout.decode().strip().splitlines()[-1])
        streams: list[Stream] = []
        with open(out) as f:
            for line in f:
                if line.startswith("S "):
                    x = line.split()
                    s = Stream()
                    s.status, flags, s.n_content = int(x[3]), int(x[4]), int(x[5])
                    s.done, s.complete = bool(flags & 1), bool(flags & 2)
                    streams.append(s)
                elif line.startswith("E") and streams:
                    streams[-1].events = [int(v) for v in line.split()[1:]]
        return summary, streams

    def throughput(self, port: int, tokens: int, conc: int, seconds: float) -> dict:
        summary, _ = self._run(port, body(tokens), conc, seconds + 5, duration=seconds, keepalive=True)
        return {
            "chunks_per_s": summary["chunks_per_s"],
            "client_cpu_pct": summary["client_cpu_pct"],
            "failed": summary["failed"],
        }

    def timing(self, port: int, conc: int, timeout: float) -> list[Stream]:
        _, streams = self._run(
            port, body(TIMING_TOKENS, itl_ms=ITL_MS), conc, timeout, requests=conc, ramp_ms=RAMP_MS, events=True
        )
        return streams


class SseProtocol(asyncio.Protocol):
    """A keep-alive HTTP/1.1 connection reading chunked SSE responses, one at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop, record_events: bool, deadline_ns: int | None = None):
        self.loop = loop
        self.record_events = record_events
        self.deadline_ns = deadline_ns  # content read after this is not counted (throughput window)
        self.counted = 0
        self.transport: asyncio.Transport | None = None
        self.stream: Stream | None = None
        self.waiter: asyncio.Future | None = None
        self.closed = loop.create_future()

    def connection_made(self, transport):
        self.transport = transport

    def connection_lost(self, exc):
        if not self.closed.done():
            self.closed.set_result(None)
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(self.stream)

    def request(self, raw: bytes) -> asyncio.Future:
        self.stream = Stream()
        self.buf = bytearray()
        self.sse = bytearray()
        self.in_body = False
        self.left = 0  # bytes left in the current chunk, then its CRLF
        self.skip = 0
        self.waiter = self.loop.create_future()
        assert self.transport is not None
        self.transport.write(raw)
        return self.waiter

    def data_received(self, data: bytes) -> None:
        now = time.monotonic_ns()
        self.buf += data
        if not self.in_body:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            self.stream.status = int(self.buf[9:12])
            del self.buf[: end + 4]
            self.in_body = True
        buf = self.buf
        while buf:
            if self.skip:
                n = min(self.skip, len(buf))
                del buf[:n]
                self.skip -= n
                continue
            if self.left == 0:
                eol = buf.find(b"\r\n")
                if eol < 0:
                    break
                size = int(buf[:eol].split(b";")[0], 16)
                if size == 0:
                    if len(buf) < eol + 4:
                        break
                    del buf[: eol + 4]
                    self._finish()
                    return
                del buf[: eol + 2]
                self.left = size
                continue
            n = min(self.left, len(buf))
            self.sse += buf[:n]
            del buf[:n]
            self.left -= n
            if self.left == 0:
                self.skip = 2
        self._events(now)

    def _events(self, now: int) -> None:
        sse, stream = self.sse, self.stream
        start = 0
        while True:
            end = sse.find(b"\n\n", start)
            if end < 0:
                break
            event = sse[start:end]
            start = end + 2
            if event.startswith(b"data: [DONE]"):
                stream.done = True
            elif b'"content":"' in event and b'"content":""' not in event:
                stream.n_content += 1
                if self.deadline_ns is None or now <= self.deadline_ns:
                    self.counted += 1
                if self.record_events:
                    stream.events.append(now)
        del sse[:start]

    def _finish(self) -> None:
        self._events(time.monotonic_ns())
        self.stream.complete = True
        if not self.waiter.done():
            self.waiter.set_result(self.stream)


def request_bytes(port: int, payload: bytes) -> bytes:
    return (
        f"POST {PATH} HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n"
        f"Accept: text/event-stream\r\nContent-Length: {len(payload)}\r\n\r\n"
    ).encode() + payload


class PyClient:
    """Built-in asyncio client: saturates before the servers do, so its numbers are indicative only."""

    label = "built-in asyncio client (client-bound, indicative only)"
    bound = True

    def throughput(self, port: int, tokens: int, conc: int, seconds: float) -> dict:
        return _run_async(self._throughput(port, tokens, conc, seconds))

    async def _throughput(self, port: int, tokens: int, conc: int, seconds: float) -> dict:
        loop = asyncio.get_running_loop()
        raw = request_bytes(port, body(tokens))
        cpu0, t0 = time.process_time(), time.monotonic()
        deadline = time.monotonic_ns() + int(seconds * 1e9)
        protocols, failed = [], 0

        async def slot():
            nonlocal failed
            _, proto = await loop.create_connection(lambda: SseProtocol(loop, False, deadline), HOST, port)
            protocols.append(proto)
            while time.monotonic_ns() < deadline:
                stream = await proto.request(raw)
                if not stream.complete:
                    failed += 1
                    return

        tasks = [loop.create_task(slot()) for _ in range(conc)]
        await asyncio.wait(tasks, timeout=seconds)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for proto in protocols:
            proto.transport.abort()
        wall = time.monotonic() - t0
        return {
            "chunks_per_s": sum(p.counted for p in protocols) / seconds,
            "client_cpu_pct": round(100 * (time.process_time() - cpu0) / wall, 1),
            "failed": failed,
        }

    def timing(self, port: int, conc: int, timeout: float) -> list[Stream]:
        return _run_async(self._timing(port, conc, timeout))

    async def _timing(self, port: int, conc: int, timeout: float) -> list[Stream]:
        loop = asyncio.get_running_loop()
        raw = request_bytes(port, body(TIMING_TOKENS, itl_ms=ITL_MS))
        protocols: list[SseProtocol | None] = [None] * conc

        async def one(i: int):
            await asyncio.sleep(RAMP_MS / 1000 * i / conc)
            _, proto = await loop.create_connection(lambda: SseProtocol(loop, True), HOST, port)
            protocols[i] = proto
            await proto.request(raw)

        tasks = [loop.create_task(one(i)) for i in range(conc)]
        await asyncio.wait(tasks, timeout=timeout)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        streams = []
        for proto in protocols:
            streams.append(proto.stream if proto is not None and proto.stream is not None else Stream())
            if proto is not None:
                proto.transport.abort()
        return streams


def _run_async(coro):
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


async def hold_streams(port: int, n: int, ttft_ms: float, measure, ramp_s: float = 1.0, wait_s: float = 20.0):
    """Open n streams that stay open (long ttft), wait for each first event, call measure(opened), close."""
    loop = asyncio.get_running_loop()
    raw = request_bytes(port, body(TIMING_TOKENS, ttft_ms=ttft_ms))
    protocols: list[SseProtocol] = []

    async def open_one(i: int):
        await asyncio.sleep(ramp_s * i / n)
        _, proto = await loop.create_connection(lambda: SseProtocol(loop, False), HOST, port)
        proto.request(raw)
        protocols.append(proto)

    await asyncio.wait([loop.create_task(open_one(i)) for i in range(n)], timeout=wait_s)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        opened = sum(1 for p in protocols if p.stream.status == 200 and p.in_body and not p.closed.done())
        if opened >= n:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)
    opened = sum(1 for p in protocols if p.stream.status == 200 and p.in_body and not p.closed.done())
    result = measure(opened)
    for proto in protocols:
        proto.transport.abort()
    return result


# ------------------------------------------------------------------------------------------ metrics ---
def m_throughput(server: Server, client, args) -> dict:
    warm = client.throughput(server.port, 20, 4, 0.5)  # noqa: F841 (first-use costs out of the window)
    out = {}
    for conc, tokens in ((1, 2000), (64, 500)):
        cpu0, _ = server.stats()
        t0 = time.monotonic()
        r = client.throughput(server.port, tokens, conc, args.seconds)
        cpu1, _ = server.stats()
        out[f"c{conc}_t{tokens}"] = {
            "chunks_per_s": round(r["chunks_per_s"], 1),
            "server_cpu_pct": round(100 * (cpu1 - cpu0) / (time.monotonic() - t0), 1),
            "client_cpu_pct": r["client_cpu_pct"],
            "failed": r["failed"],
        }
    return out


def m_timing(server: Server, client, args) -> dict:
    out = {}
    timeout = RAMP_MS / 1000 + 1.5 * TIMING_TOKENS * ITL_MS / 1000 + 1.5
    for conc in args.levels:
        time.sleep(0.3)
        cpu0, _ = server.stats()
        t0 = time.monotonic()
        streams = client.timing(server.port, conc, timeout)
        cpu1, _ = server.stats()
        gaps = []
        complete = 0
        for s in streams:
            if s.status == 200 and s.done and s.complete and s.n_content == TIMING_TOKENS:
                complete += 1
            ev = s.events
            gaps.extend(abs((ev[i] - ev[i - 1]) / 1e6 - ITL_MS) for i in range(1, len(ev)))
        out[f"c{conc}"] = {
            "completion_rate": round(complete / conc, 4),
            "gap_err_p50_ms": r3(pct(gaps, 50)),
            "gap_err_p99_ms": r3(pct(gaps, 99)),
            "gap_err_max_ms": r3(max(gaps) if gaps else None),
            "server_cpu_pct": round(100 * (cpu1 - cpu0) / (time.monotonic() - t0), 1),
        }
    return out


def m_memory(server: Server, client, args) -> dict:
    _run_async(hold_streams(server.port, 10, 60_000, lambda opened: None, ramp_s=0.1, wait_s=5))
    time.sleep(1.0)
    _, rss0 = server.stats()
    measured = {}

    def measure(opened):
        measured["opened"] = opened
        measured["rss_open"] = server.stats()[1]

    _run_async(hold_streams(server.port, args.streams, 60_000, measure))
    time.sleep(2.0)
    _, rss2 = server.stats()
    opened = measured["opened"]
    return {
        f"c{args.streams}": {
            "open_streams": opened,
            "rss_before_mib": round(rss0 / 2**20, 1),
            "rss_open_mib": round(measured["rss_open"] / 2**20, 1),
            "rss_after_close_mib": round(rss2 / 2**20, 1),
            "kib_per_stream": round((measured["rss_open"] - rss0) / 1024 / opened, 2) if opened else None,
        }
    }


METRICS = {"throughput": ("zero", m_throughput), "timing": ("itl20", m_timing), "memory": ("slow", m_memory)}


# ------------------------------------------------------------------------------------ aggregation ---
def median_tree(reps: list):
    if not reps:
        return None
    if isinstance(reps[0], dict):
        return {k: median_tree([r[k] for r in reps if k in r]) for k in reps[0]}
    nums = [x for x in reps if isinstance(x, (int, float)) and x is not None]
    return round(statistics.median(nums), 4) if nums and len(nums) == len(reps) else reps[0]


def ratio_tree(ours, ref):
    if isinstance(ours, dict):
        return {k: ratio_tree(v, (ref or {}).get(k)) for k, v in ours.items()}
    if isinstance(ours, (int, float)) and isinstance(ref, (int, float)) and ref:
        return round(ours / ref, 3)
    return None


def print_table(metric: str, ours: dict, ref: dict, ratio: dict, label: str) -> None:
    print(f"\n## {metric}  ({label})")
    print("| case | value | mockstream | reference | ratio |\n|---|---|---|---|---|")
    for case, values in ours.items():
        for key, value in values.items():
            print(
                f"| {case} | {key} | {value} | {(ref or {}).get(case, {}).get(key)} | "
                f"{(ratio or {}).get(case, {}).get(key)} |"
            )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description="mockstream vs a minimal aiohttp reference server",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    parser.add_argument("metrics", nargs="*", metavar="METRIC", help=f"any of {', '.join(METRICS)} (default: all)")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument(
        "--lg",
        default=os.environ.get("MOCKSTREAM_LG"),
        help="path of a built C load generator `lg` (env MOCKSTREAM_LG)",
    )
    parser.add_argument(
        "--mockstream-cmd",
        default=os.environ.get("MOCKSTREAM_CMD"),
        help="command that runs mockstream (default: this Python's `-m mockstream`)",
    )
    parser.add_argument("--levels", default="1000,2000", help="concurrent streams for the timing metric")
    parser.add_argument("--streams", type=int, default=1000, help="open streams for the memory metric")
    parser.add_argument("--seconds", type=float, default=2.0, help="throughput window")
    parser.add_argument("--json", help="also write medians, ratios and every rep to this file")
    args = parser.parse_args(argv)
    args.levels = [int(x) for x in args.levels.split(",") if x]
    metrics = args.metrics or list(METRICS)
    for metric in metrics:
        if metric not in METRICS:
            parser.error(f"unknown metric {metric!r}: choose from {', '.join(METRICS)}")
    mockstream_cmd = shlex.split(args.mockstream_cmd) if args.mockstream_cmd else [sys.executable, "-m", "mockstream"]

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 65536, hard))
    cpus = os.sched_getaffinity(0)
    if {SERVER_CPU, CLIENT_CPU} <= cpus:
        server_cpu: int | None = SERVER_CPU
        os.sched_setaffinity(0, {CLIENT_CPU})
    else:
        server_cpu = None
        log("fewer than 2 CPUs available: servers and client are not pinned, numbers mean little")

    workdir = tempfile.mkdtemp(prefix="mockstream-bench-")
    if args.lg:
        if not os.access(args.lg, os.X_OK):
            parser.error(f"--lg {args.lg}: not an executable file")
        client = LgClient(args.lg, workdir)
    else:
        client = PyClient()
        log("no C load generator given (--lg / MOCKSTREAM_LG): throughput and timing are client-bound, indicative only")

    report = {"date": time.strftime("%Y-%m-%d %H:%M"), "cpus": os.cpu_count(), "client": client.label, "metrics": {}}
    for metric in metrics:
        mode, run = METRICS[metric]
        per = {"reference": [], "mockstream": []}
        for rep in range(args.reps):
            for name in ("reference", "mockstream"):
                log(f"{metric} rep {rep + 1}/{args.reps} {name}")
                server = Server(name, server_argv(name, mode, mockstream_cmd), workdir, server_cpu)
                try:
                    per[name].append(run(server, client, args))
                except Exception as exc:  # one failed rep is reported, the others still count
                    log(f"  {name} failed: {type(exc).__name__}: {exc}")
                finally:
                    server.stop()
        ours, ref = median_tree(per["mockstream"]), median_tree(per["reference"])
        ratio = ratio_tree(ours, ref) if ours and ref else None
        label = "built-in client" if metric == "memory" else client.label
        report["metrics"][metric] = {"mockstream": ours, "reference": ref, "ratio": ratio, "reps": per, "client": label}
        if ours:
            print_table(metric, ours, ref, ratio, label)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
