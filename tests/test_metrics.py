"""Prometheus metrics at `/metrics`, scraped for real and read with prometheus_client's own parser: exact counts
from an in-process server, one scrape that sees both workers of `mockstream serve --workers 2`, histograms
that agree with what 1000 paced clients measured, and `--metrics off` / `--admin off`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from helpers import MOCKSTREAM, clean_env, openai_sdk, plain_http, settled, wait_until
from prometheus_client.parser import text_string_to_metric_families

from mockstream.deliver.timeline import LIMIT
from mockstream.server.metrics import FLUSH_S, GAP_BOUNDS_MS, Metrics, add_to_histogram, bucket_of

MESSAGES = [{"role": "user", "content": "Count me."}]
CHAT = {"model": "gpt-4o-mini", "messages": MESSAGES}
ROUTE = "/v1/chat/completions"
URL_LINE = re.compile(r"listening on (http://127\.0\.0\.1:(\d+))\b")


# ---------------------------------------------------------------- reading a scrape ---
class Scrape:
    """One scrape of `/metrics`, parsed by prometheus_client: samples by name and labels."""

    def __init__(self, text: str, worker: str | None = None):
        self.worker = worker
        self.samples: list[tuple[str, dict[str, str], float]] = [
            (sample.name, sample.labels, sample.value)
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        ]

    def value(self, name: str, **labels: str) -> float:
        """The sample of exactly these labels (0 when there is none, as Prometheus shows a counter not yet
        touched)."""
        found = [v for n, lab, v in self.samples if n == name and lab == labels]
        assert len(found) <= 1, (name, labels, found)
        return found[0] if found else 0.0

    def total(self, name: str, **labels: str) -> float:
        """The sum over every sample of `name` whose labels include `labels`."""
        return sum(v for n, lab, v in self.samples if n == name and labels.items() <= lab.items())

    def buckets(self, name: str, **labels: str) -> list[tuple[float, float]]:
        """A histogram's cumulative buckets (upper bound, count), +Inf last."""
        found = [
            (float(lab["le"]), v)
            for n, lab, v in self.samples
            if n == f"{name}_bucket" and {k: x for k, x in lab.items() if k != "le"} == labels
        ]
        return sorted(found)


def scrape(url: str) -> Scrape:
    with plain_http() as http:  # a fresh connection: with workers, the kernel picks which one answers
        response = http.get(f"{url}/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return Scrape(response.text, response.headers.get("x-mockstream-worker"))


def quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """What Prometheus's histogram_quantile(q, ...) answers from cumulative buckets: linear within the bucket
    the rank falls in."""
    total = buckets[-1][1]
    rank = q * total
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower
            return lower + (bound - lower) * (rank - below) / (count - below) if count > below else bound
        lower, below = bound, count
    raise AssertionError("unreachable: the +Inf bucket holds every observation")


def exact_quantile(q: float, values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.5) - 1))]


# ---------------------------------------------------------------- a served process ---
@dataclass
class Served:
    process: subprocess.Popen
    url: str
    err: Path


@contextlib.contextmanager
def serve(tmp_path: Path, *args: str) -> Iterator[Served]:
    """`mockstream serve --port 0 ARGS`; killed at the end if still running."""
    stamp = time.monotonic_ns()
    out, err = tmp_path / f"out-{stamp}.log", tmp_path / f"err-{stamp}.log"
    with out.open("w") as stdout, err.open("w") as stderr:
        process = subprocess.Popen(
            [MOCKSTREAM, "serve", "--port", "0", "--access-log", "off", *args],
            stdout=stdout, stderr=stderr, env=clean_env(),
        )  # fmt: skip
    try:

        def started() -> bool:
            return process.poll() is not None or bool(URL_LINE.search(out.read_text()))

        assert wait_until(started, timeout=30), f"no start line within 30 s: {err.read_text()[-2000:]}"
        found = URL_LINE.search(out.read_text())
        assert found and process.poll() is None, f"serve did not start: {err.read_text()[-2000:]}"
        yield Served(process, found[1], err)
        process.terminate()
        assert process.wait(timeout=15) == 0, err.read_text()[-2000:]
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


def stream(url: str, knobs: dict[str, Any]) -> httpx.Response:
    """One streamed answer on a fresh connection."""
    with plain_http() as http:
        response = http.post(f"{url}{ROUTE}", json={**CHAT, "stream": True, "mockstream": knobs})
    assert response.status_code == 200 and response.text.endswith("data: [DONE]\n\n"), response.text[-300:]
    return response


# ---------------------------------------------------------------- in one process: exact counts ---
def test_a_scrape_counts_streams_refusals_and_faults_exactly(make_server):
    srv = make_server(metrics=True, speed=1)
    knobs = {"tokens": ["a", "b", "c"], "ttft_ms": 60, "itl_ms": 25}
    with openai_sdk(srv) as client:
        for _ in range(3):
            chunks = client.chat.completions.create(**CHAT, stream=True, extra_body={"mockstream": knobs})
            assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "abc"
        cut = {"tokens": ["a", "b", "c", "d"], "ttft_ms": 60, "fault": {"kind": "disconnect", "at_token": 2}}
        got = []
        with pytest.raises((openai.APIError, httpx.HTTPError)):  # the cut comes mid-iteration
            for chunk in client.chat.completions.create(**CHAT, stream=True, extra_body={"mockstream": cut}):
                got.append(chunk.choices[0].delta.content or "" if chunk.choices else "")
        assert "".join(got) == "ab"
    with plain_http() as http:
        bad = http.post(f"{srv.url}{ROUTE}", content=b"{not json", headers={"content-type": "application/json"})
    assert bad.status_code == 400
    entries = settled(srv, 5)
    assert [e["outcome"] for e in entries] == ["completed"] * 3 + ["fault:disconnect", "rejected"]

    metrics = scrape(srv.url)
    labels = {"route": ROUTE, "dialect": "chat", "scenario": "default"}
    assert metrics.value("mockstream_requests_total", **labels, outcome="completed") == 3
    assert metrics.value("mockstream_requests_total", **labels, outcome="fault:disconnect") == 1
    assert metrics.value("mockstream_requests_total", **{**labels, "scenario": ""}, outcome="rejected") == 1
    assert metrics.total("mockstream_requests_total") == 5
    assert metrics.value("mockstream_faults_total", kind="disconnect") == 1
    assert metrics.total("mockstream_faults_total") == 1
    assert metrics.value("mockstream_rejected_total", reason=entries[-1]["rejected"]) == 1
    assert entries[-1]["rejected"] == "invalid_json"
    assert metrics.total("mockstream_rejected_total") == 1
    assert metrics.value("mockstream_open_streams") == 0
    assert metrics.value("mockstream_bytes_sent_total", dialect="chat") == sum(e["bytes_sent"] for e in entries)
    assert metrics.value("mockstream_events_sent_total", dialect="chat") == sum(e["events_sent"] for e in entries)
    # time to the first token: four streams (the cut one wrote two tokens), each 60 ms late at least
    ttft = metrics.buckets("mockstream_time_to_first_token_seconds", dialect="chat")
    assert dict(ttft)[0.05] == 0 and dict(ttft)[float("inf")] == 4
    assert 4 * 0.06 <= metrics.value("mockstream_time_to_first_token_seconds_sum", dialect="chat") < 4 * 0.3
    # the gaps: one per write after the first, in every stream
    with plain_http() as http:
        timelines = [http.get(f"{srv.url}/_mockstream/requests/{e['id']}").json()["timeline"] for e in entries[:4]]
    gaps = [b[0] - a[0] for t in timelines for a, b in pairwise(t["writes"])]
    assert metrics.value("mockstream_write_gap_seconds_count", dialect="chat") == len(gaps)
    assert metrics.value("mockstream_write_gap_seconds_sum", dialect="chat") == pytest.approx(sum(gaps) / 1000, 1e-3)
    for bound, count in metrics.buckets("mockstream_write_gap_seconds", dialect="chat"):
        assert count == sum(gap <= bound * 1000 + 1e-3 for gap in gaps), bound


def test_open_streams_counts_the_streams_being_written(make_server):
    srv = make_server(metrics=True, speed=1)
    threads = [
        threading.Thread(target=stream, args=(srv.url, {"tokens": ["x"] * 3, "ttft_ms": 0, "itl_ms": 400}))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    assert wait_until(lambda: scrape(srv.url).value("mockstream_open_streams") == 3, timeout=5)
    for thread in threads:
        thread.join(timeout=10)
    assert scrape(srv.url).value("mockstream_open_streams") == 0


def test_a_stream_past_the_timeline_limit_has_every_gap_counted(make_server):
    srv = make_server(metrics=True, speed=0)
    stream(srv.url, {"random_tokens": LIMIT + 500})
    [entry] = settled(srv)
    with plain_http() as http:
        timeline = http.get(f"{srv.url}/_mockstream/requests/{entry['id']}").json()["timeline"]
    assert timeline["writes_cut"] and timeline["writes_total"] > LIMIT + 500
    metrics = scrape(srv.url)
    assert metrics.value("mockstream_write_gap_seconds_count", dialect="chat") == timeline["writes_total"] - 1
    assert metrics.value("mockstream_time_to_first_token_seconds_count", dialect="chat") == 1


def test_a_scraper_asking_for_openmetrics_gets_it(make_server):
    from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families

    srv = make_server(metrics=True)
    stream(srv.url, {"tokens": ["a"]})
    with plain_http() as http:
        response = http.get(f"{srv.url}/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    families = {family.name: family for family in openmetrics_families(response.text)}
    assert families["mockstream_requests"].type == "counter"
    assert families["mockstream_write_gap_seconds"].type == "histogram"


def test_adding_counts_to_a_histogram_is_what_observing_each_value_does():
    """`add_to_histogram` reaches into prometheus_client (see its docstring): this fails if those internals
    change, before a scrape would show wrong numbers."""
    from prometheus_client import CollectorRegistry, Histogram, generate_latest

    values_ms = [0.2, 1.0, 1.5, 3, 30, 30, 31, 70, 999, 1000.5, 12000, 50000]
    counts = [0] * (len(GAP_BOUNDS_MS) + 1)
    for ms in values_ms:
        counts[bucket_of(ms)] += 1
    exposed = []
    for bulk in (False, True):
        registry = CollectorRegistry()
        histogram = Histogram("gaps", "", ("dialect",), registry=registry, buckets=[b / 1000 for b in GAP_BOUNDS_MS])
        child = histogram.labels("chat")
        if bulk:
            add_to_histogram(child, counts, sum(values_ms) / 1000)
        else:
            for ms in values_ms:
                child.observe(ms / 1000)
        exposed.append(re.sub(rb"\n# HELP gaps_created.*", b"", generate_latest(registry), flags=re.DOTALL))
    assert exposed[0] == exposed[1]
    assert b'gaps_bucket{dialect="chat",le="0.001"} 2.0' in exposed[1]
    assert b'gaps_count{dialect="chat"} 12.0' in exposed[1]


def test_faults_that_let_the_stream_go_on_and_refusals_are_counted_by_kind_and_reason():
    """Entries as the journal ends them, counted with no server and no loop (then at once): a stall that
    resumed still struck (the timeline says where), a refusal counts by its code, a miss as unmatched."""
    from mockstream.deliver.timeline import Timeline
    from mockstream.server.journal import Entry

    def entry(outcome: str, **extra: Any) -> Entry:
        made = Entry(1, 0.0, "POST", ROUTE, {}, dialect="chat", outcome=outcome, extra=extra)
        made.route = ROUTE
        return made

    resumed = entry("completed", fault={"kind": "stall"})
    resumed.timeline = timeline = Timeline(0.0, GAP_BOUNDS_MS)
    for at in (0.0, 0.05, 3.05):  # the role chunk, a token, then a 3 s stall and the rest
        timeline.wrote(at, 100, 1)
    timeline.first_token_ms, timeline.fault_ms = 50.0, 50.0
    metrics = Metrics()
    for made in (resumed, entry("rejected", rejected="invalid_json"), entry("unmatched"), entry("fault:reset",
                 fault={"kind": "reset"})):  # fmt: skip
        metrics.ended(made)
    from prometheus_client import generate_latest

    counted = Scrape(generate_latest(metrics.registry).decode())
    assert counted.value("mockstream_faults_total", kind="stall") == 1
    assert counted.value("mockstream_faults_total", kind="reset") == 1
    assert counted.value("mockstream_rejected_total", reason="invalid_json") == 1
    assert counted.value("mockstream_rejected_total", reason="unmatched") == 1
    assert counted.total("mockstream_requests_total") == 4
    gaps = dict(counted.buckets("mockstream_write_gap_seconds", dialect="chat"))
    assert (gaps[0.02], gaps[0.05], gaps[2.0], gaps[5.0]) == (0, 1, 1, 2)
    assert counted.value("mockstream_write_gap_seconds_sum", dialect="chat") == pytest.approx(3.05)


def test_metrics_files_are_used_even_when_prometheus_client_came_first(tmp_path):
    """A worker whose prometheus_client was imported before the directory was known still writes its files."""
    code = f"""
import prometheus_client, prometheus_client.values
from mockstream.server.metrics import Metrics
assert not prometheus_client.values.ValueClass._multiprocess
metrics = Metrics(multiprocess_dir={str(tmp_path)!r})
metrics.stream_opened()
import os
print(os.getpid())
print(prometheus_client.generate_latest(metrics.registry).decode())
"""
    env = {k: v for k, v in clean_env().items() if k.lower() != "prometheus_multiproc_dir"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, env=env)
    assert result.returncode == 0, result.stderr
    pid, exposition = result.stdout.split("\n", 1)
    assert Scrape(exposition).value("mockstream_open_streams") == 1
    assert [p.name for p in tmp_path.iterdir()] == [f"gauge_livesum_{pid}.db"]


# ---------------------------------------------------------------- --workers: one scrape sees them all ---
def test_one_scrape_of_two_workers_sees_every_request_and_open_stream(tmp_path):
    with serve(tmp_path, "--workers", "2") as served:
        answered = {stream(served.url, {"tokens": ["w"], "ttft_ms": 0, "itl_ms": 0}).headers["x-mockstream-worker"]
                    for _ in range(20)}  # fmt: skip
        assert len(answered) == 2, f"one worker answered all 20 fresh connections: {answered}"
        # what the other worker counted reaches the files within FLUSH_S
        assert wait_until(lambda: scrape(served.url).total("mockstream_requests_total") == 20, timeout=FLUSH_S + 4)
        scrapes = [scrape(served.url) for _ in range(6)]
        while len({s.worker for s in scrapes}) < 2 and len(scrapes) < 60:
            scrapes.append(scrape(served.url))
        assert {s.worker for s in scrapes} == answered  # each worker was scraped...
        for metrics in scrapes:  # ...and each scrape shows both workers' requests
            assert metrics.total("mockstream_requests_total") == 20, metrics.worker
            assert metrics.value("mockstream_requests_total", route=ROUTE, dialect="chat", scenario="default",
                                 outcome="completed") == 20  # fmt: skip
            assert metrics.value("mockstream_time_to_first_token_seconds_count", dialect="chat") == 20
            assert metrics.value("mockstream_open_streams") == 0
        # four streams open on any worker: every scrape counts all four
        slow = {"tokens": ["s"] * 4, "ttft_ms": 0, "itl_ms": 1500}  # 4.5 s each
        threads = [threading.Thread(target=stream, args=(served.url, slow)) for _ in range(4)]
        for thread in threads:
            thread.start()
        assert wait_until(lambda: scrape(served.url).value("mockstream_open_streams") == 4, timeout=FLUSH_S + 2)
        seen = [scrape(served.url) for _ in range(10)]
        for thread in threads:
            thread.join(timeout=15)
        assert {s.value("mockstream_open_streams") for s in seen} == {4}
        assert wait_until(lambda: scrape(served.url).value("mockstream_open_streams") == 0, timeout=FLUSH_S + 4)
        assert wait_until(lambda: scrape(served.url).total("mockstream_requests_total") == 24, timeout=FLUSH_S + 4)


# ---------------------------------------------------------------- off switches ---
def _imported(code: str) -> set[str]:
    probe = f"{code}\nimport sys\nprint(' '.join(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=30, env=clean_env())
    assert result.returncode == 0, result.stderr
    return set(result.stdout.split())


def test_metrics_off_imports_no_prometheus_client_and_serves_no_route(tmp_path):
    assert "prometheus_client" not in _imported("from mockstream import create_app\ncreate_app(metrics=False)")
    assert "prometheus_client" not in _imported("from mockstream import create_app\ncreate_app()")
    assert "prometheus_client" in _imported("from mockstream import create_app\ncreate_app(metrics=True)")
    with serve(tmp_path, "--metrics", "off") as served, plain_http() as http:
        stream(served.url, {"tokens": ["a"], "ttft_ms": 0})
        assert http.get(f"{served.url}/metrics").status_code == 404
        assert http.get(f"{served.url}/_mockstream/requests").status_code == 200


def test_admin_off_removes_the_admin_routes_and_keeps_the_api_and_metrics(tmp_path):
    with serve(tmp_path, "--admin", "off") as served, plain_http() as http:
        assert "a b" in "".join(
            json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
            for line in stream(served.url, {"tokens": ["a", " b"], "ttft_ms": 0}).text.splitlines()
            if line.startswith("data: {")
        )
        for path in ("/_mockstream/requests", "/_mockstream/requests/1", "/_mockstream/ui", "/_mockstream/events",
                     "/_mockstream/info", "/_mockstream/scenarios"):  # fmt: skip
            assert http.get(f"{served.url}{path}").status_code == 404, path
        assert http.post(f"{served.url}/_mockstream/reset").status_code == 404
        assert scrape(served.url).total("mockstream_requests_total") == 1


# ---------------------------------------------------------------- 1000 paced streams ---
STREAMS = 1000
RAMP_S = 1.0  # the streams start over a second (1000 new connections a second)
TOKENS = 30  # a stream lasts about as long as the ramp: near 1000 are open at once
TTFT_MS, ITL_MS = 140, 35  # each well inside its bucket, (100, 200] and (20, 50]


@dataclass
class Client(asyncio.Protocol):
    """One stream read straight off the socket: the time of every read, nothing parsed until the end."""

    request: bytes
    done: asyncio.Future
    sent: float = 0.0
    reads: list[tuple[float, bytes]] = field(default_factory=list)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.sent = time.perf_counter()
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.reads.append((time.perf_counter(), data))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)

    def body(self) -> bytes:
        """The chunked body, unframed."""
        raw = b"".join(data for _, data in self.reads)
        rest = raw[raw.index(b"\r\n\r\n") + 4 :]
        out = b""
        while True:
            size_line, rest = rest.split(b"\r\n", 1)
            size = int(size_line, 16)
            if size == 0:
                return out
            out, rest = out + rest[:size], rest[size + 2 :]

    def ttft_ms(self) -> float:
        """From the answer's first bytes (the headers and the role chunk, which the server writes as soon as it
        has the request) to the first content token. The server's clock starts when its handler has the
        request, so the time a request waits before that (the kernel's queue, a busy loop) is counted from
        there; `latency_ms` is the whole."""
        arrived = next(at for at, data in self.reads if b'"content":"t' in data)  # the role chunk's is ""
        return (arrived - self.reads[0][0]) * 1000

    def latency_ms(self) -> float:
        """From the request sent to the first content token."""
        arrived = next(at for at, data in self.reads if b'"content":"t' in data)
        return (arrived - self.sent) * 1000

    def gaps_ms(self) -> list[float]:
        times = [at for at, _ in self.reads]
        return [(b - a) * 1000 for a, b in pairwise(times)]


async def _load(port: int) -> list[Client]:
    loop = asyncio.get_running_loop()
    knobs = {"tokens": [f"t{i}" for i in range(TOKENS)], "ttft_ms": TTFT_MS, "itl_ms": ITL_MS}
    body = json.dumps({**CHAT, "stream": True, "mockstream": knobs}).encode()
    request = (
        f"POST {ROUTE} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body
    clients = [Client(request, loop.create_future()) for _ in range(STREAMS)]
    start = loop.time() + 0.05
    connecting = []

    def connect(client: Client) -> None:
        connecting.append(loop.create_task(loop.create_connection(lambda: client, "127.0.0.1", port)))

    for i, client in enumerate(clients):
        loop.call_at(start + RAMP_S * i / STREAMS, connect, client)
    await asyncio.sleep(RAMP_S + 0.1)
    await asyncio.wait_for(asyncio.gather(*connecting), 10)
    await asyncio.wait_for(asyncio.gather(*(client.done for client in clients)), 15)
    for task in connecting:
        task.result()[0].close()
    return clients


def test_histograms_of_1000_paced_streams_agree_with_what_the_clients_measured(tmp_path):
    with serve(tmp_path, "--journal-size", str(STREAMS)) as served:
        port = int(served.url.rsplit(":", 1)[1])
        started = time.monotonic()
        clients = asyncio.run(_load(port))
        took = time.monotonic() - started
        bodies = [client.body() for client in clients]
        assert all(body.endswith(b"data: [DONE]\n\n") for body in bodies)
        with plain_http() as http:
            assert wait_until(lambda: scrape(served.url).total("mockstream_requests_total") == STREAMS, 5)
            metrics = scrape(served.url)
            listed = http.get(f"{served.url}/_mockstream/requests").json()
            writes = [http.get(f"{served.url}/_mockstream/requests/{e['id']}").json()["timeline"]["writes_total"]
                      for e in listed]  # fmt: skip
    assert took < 10
    assert len(listed) == STREAMS
    assert metrics.value("mockstream_requests_total", route=ROUTE, dialect="chat", scenario="default",
                         outcome="completed") == STREAMS  # fmt: skip
    # the counts are what was sent
    assert metrics.value("mockstream_bytes_sent_total", dialect="chat") == sum(map(len, bodies))
    assert metrics.value("mockstream_events_sent_total", dialect="chat") == sum(e["events_sent"] for e in listed)
    assert metrics.value("mockstream_time_to_first_token_seconds_count", dialect="chat") == STREAMS
    assert metrics.value("mockstream_write_gap_seconds_count", dialect="chat") == sum(writes) - STREAMS
    assert sum(len(c.gaps_ms()) for c in clients) <= sum(writes) - STREAMS  # a read never splits a write here
    # the times are what the clients measured: means from the exact sums, quantiles within their bucket
    client_ttft = [client.ttft_ms() for client in clients]
    client_gaps = [gap for client in clients for gap in client.gaps_ms()]
    server_ttft_ms = 1000 * metrics.value("mockstream_time_to_first_token_seconds_sum", dialect="chat") / STREAMS
    assert abs(server_ttft_ms - sum(client_ttft) / STREAMS) < 50  # ms: generous, for a busy machine
    # the client, counting from the request it sent, never sees the token sooner (uvloop's clock has 1 ms steps)
    assert sum(client.latency_ms() for client in clients) / STREAMS > server_ttft_ms - 2
    per_stream_gaps_ms = 1000 * metrics.value("mockstream_write_gap_seconds_sum", dialect="chat") / STREAMS
    assert abs(per_stream_gaps_ms - sum(client_gaps) / STREAMS) < 50
    # A quantile read from the buckets (as Prometheus's histogram_quantile does) falls in the bucket of what the
    # clients measured, or next to it: a busy machine writes late, then closer together, and moves a few across.
    for name, measured in (("time_to_first_token", client_ttft), ("write_gap", client_gaps)):
        buckets = metrics.buckets(f"mockstream_{name}_seconds", dialect="chat")
        for q in (0.5, 0.9, 0.99):
            server_ms = 1000 * quantile(q, buckets)
            client_ms = exact_quantile(q, measured)
            assert abs(bucket_of(server_ms) - bucket_of(client_ms)) <= 1, (name, q, server_ms, client_ms)


# ---------------------------------------------------------------- the examples users copy ---
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_the_scrape_config_scrapes_the_default_port_at_metrics():
    import yaml

    from mockstream.process.flags import SERVE_FLAGS

    port = next(flag.default for flag in SERVE_FLAGS if flag.name == "port")
    config = yaml.safe_load((EXAMPLES / "prometheus" / "prometheus.yml").read_text())
    [job] = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"][0]["targets"] == [f"127.0.0.1:{port}"]


def test_the_grafana_dashboard_asks_only_for_metrics_the_server_exposes(make_server):
    srv = make_server(metrics=True)
    cut = {"tokens": ["a", "b"], "fault": {"kind": "truncate", "at_token": 1}}
    with plain_http() as http:  # a stream a fault cut short, and a refusal: every metric has a sample
        assert http.post(f"{srv.url}{ROUTE}", json={**CHAT, "stream": True, "mockstream": cut}).status_code == 200
        assert http.post(f"{srv.url}{ROUTE}", content=b"[", headers={"content-type": "application/json"}).is_error
    settled(srv, 2)
    exposed = {name for name, _, _ in scrape(srv.url).samples}
    dashboard = json.loads((EXAMPLES / "grafana" / "mockstream.json").read_text())
    panels = [panel for panel in dashboard["panels"] if panel["type"] != "row"]
    exprs = [target["expr"] for panel in panels for target in panel["targets"]]
    assert len(exprs) >= len(panels) >= 10
    asked = {name for expr in exprs for name in re.findall(r"\bmockstream_\w+", expr)}
    assert asked <= exposed, asked - exposed
    families = {re.sub(r"_(total|bucket|sum|count)$", "", name) for name in exposed if not name.endswith("_created")}
    assert families <= {re.sub(r"_(total|bucket|sum|count)$", "", name) for name in asked}, "a metric has no panel"
    assert sum("histogram_quantile" in expr for expr in exprs) == 6
    assert [panel["type"] for panel in panels].count("heatmap") == 2
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
