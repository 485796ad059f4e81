"""Prometheus metrics at `/metrics`: requests by route, dialect, scenario and outcome; open streams; time to
the first content token and the gaps between writes, as measured where the bytes were written; bytes and
events sent; faults struck; requests rejected.

Nothing runs per write, and next to nothing per request: `Metrics.ended` (a journal listener) only sets the
ended entry aside, and the requests set aside are counted a slice at a time, from what each entry recorded (its
timeline above all): when `/metrics` is read, as soon as the loop is free once SLICE wait, and FLUSH_S after
the first otherwise. Counting each request as it ended cost about 24 us of a 500 us request in the server
(prometheus_client's calls take a lock each, and a histogram's `observe` walks its bounds per value); in
slices it is about 6 us, off the answer's path. `prometheus_client` is imported only when metrics are
made, so `create_app(metrics=False)` (`--metrics off`) costs neither the import nor the route.

With `--workers`, each worker keeps its values in memory-mapped files in one directory (prometheus_client's
multiprocess mode) and a scrape, whichever worker it lands on, reads every worker's files: what another worker
counted shows there within FLUSH_S.
"""

from __future__ import annotations

import asyncio
import os
from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aiohttp import web
    from prometheus_client import Counter, Histogram

    from .journal import Entry

# Upper bounds (ms) of the histograms' buckets, from 1 ms to 10 s; a last bucket (+Inf) takes the rest. The
# timeline counts the gaps past its write limit into the same buckets (`bucket_of`), so both agree.
GAP_BOUNDS_MS: tuple[float, ...] = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
BUCKETS_S = tuple(bound / 1000 for bound in GAP_BOUNDS_MS)
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
REJECTED = ("rejected", "unmatched")
FLUSH_S = 1.0  # s: what is set aside is counted this soon at the latest
# Requests counted in one go (fewer when they wrote SLICE_WRITES together): a slice waiting is counted as soon
# as the loop is free, and no paced write waits behind more than one slice (at most 1.3 ms measured in the
# server, 1000 streams of 100 writes).
SLICE = 64
SLICE_WRITES = 2000


def bucket_of(ms: float) -> int:
    """The index of the bucket a gap of `ms` falls in (len(GAP_BOUNDS_MS): +Inf): the first bound >= ms, as
    Prometheus counts (`le`)."""
    return bisect_left(GAP_BOUNDS_MS, ms)


def bucketed(values_ms: Iterable[float]) -> tuple[list[int], float]:
    """How many of the values fall in each bucket (the last: +Inf), and their sum: sorted once, then one
    bisection per bound, instead of a walk over the bounds per value."""
    ordered = sorted(values_ms)
    counts = [0] * (len(GAP_BOUNDS_MS) + 1)
    seen = 0
    for index, bound in enumerate(GAP_BOUNDS_MS):
        upto = bisect_right(ordered, bound, seen)
        counts[index] = upto - seen
        seen = upto
        if seen == len(ordered):
            break
    else:
        counts[-1] = len(ordered) - seen
    return counts, sum(ordered)


class _Children:
    """One dialect's children of the per-dialect metrics (looked up once, not per flush)."""

    __slots__ = ("bytes", "events", "gaps", "ttft")

    def __init__(self, metrics: Metrics, dialect: str):
        self.ttft = metrics.ttft.labels(dialect)
        self.gaps = metrics.gaps.labels(dialect)
        self.bytes = metrics.bytes.labels(dialect)
        self.events = metrics.events.labels(dialect)


class _Batch:
    """What one flush counts for one dialect, before it reaches the metrics."""

    __slots__ = ("bytes", "events", "gaps", "more", "more_ms", "ttft")

    def __init__(self) -> None:
        self.bytes = self.events = 0
        self.ttft: list[float] = []  # ms
        self.gaps: list[float] = []  # ms, between the writes the timelines kept: to sort and count
        self.more = [0] * (len(GAP_BOUNDS_MS) + 1)  # gaps already counted per bucket (past a timeline's
        self.more_ms = 0.0  # limit, or a stream whose gaps all fall in one bucket), and their sum


class Metrics:
    """The server's metrics, in a registry of their own (tests make many apps in one process).

    `multiprocess_dir`: keep the values in that directory's files (one set per process) and expose every
    process's values at `/metrics`: the `--workers` mode."""

    def __init__(self, multiprocess_dir: str | None = None) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.multiprocess_dir = multiprocess_dir
        self.registry = CollectorRegistry()
        own: CollectorRegistry | None = self.registry
        if multiprocess_dir is not None:
            from prometheus_client.multiprocess import MultiProcessCollector

            _mmap_values(multiprocess_dir)
            MultiProcessCollector(self.registry, path=multiprocess_dir)
            own = None  # the values are read back from the files, every process's, not from these objects
        p = "mockstream_"
        self.requests = Counter(
            p + "requests",
            "API requests by route, dialect, scenario and outcome, counted when they end",
            ("route", "dialect", "scenario", "outcome"),
            registry=own,
        )
        self.open_streams = Gauge(
            p + "open_streams", "Streamed answers being written now", registry=own, multiprocess_mode="livesum"
        )
        def per_dialect(name: str, documentation: str) -> Histogram:
            return Histogram(p + name, documentation, ("dialect",), registry=own, buckets=BUCKETS_S)

        self.ttft = per_dialect(
            "time_to_first_token_seconds",
            "From the request's arrival to the write that carried the first content token, per streamed answer",
        )
        self.gaps = per_dialect("write_gap_seconds", "Time between two consecutive writes of a streamed answer")
        self.bytes = Counter(p + "bytes_sent", "Body bytes written", ("dialect",), registry=own)
        self.events = Counter(p + "events_sent", "SSE events written", ("dialect",), registry=own)
        self.faults = Counter(p + "faults", "Faults that struck, by kind", ("kind",), registry=own)
        self.rejected = Counter(
            p + "rejected",
            "Requests refused (4xx for the request itself, or no scenario matched), by reason",
            ("reason",),
            registry=own,
        )
        self._requests: dict[tuple[str, str, str, str], Counter] = {}
        self._children: dict[str, _Children] = {}
        self._pending: list[Entry] = []  # ended, not counted yet
        self._open = 0  # streams open now; the gauge learns it at the next flush
        self._shown_open = 0
        self._timer: asyncio.Handle | None = None  # the next `_slice`
        self._soon = False  # it runs as soon as the loop is free (else FLUSH_S after it was scheduled)

    # ---- what the server tells us: set aside, counted soon
    def stream_opened(self) -> None:
        self._open += 1
        if self._timer is None:
            self._schedule(False)

    def stream_closed(self) -> None:
        self._open -= 1
        if self._timer is None:
            self._schedule(False)

    def ended(self, entry: Entry) -> None:
        """One API request has ended (a `Journal` listener)."""
        pending = self._pending
        pending.append(entry)
        if self._timer is None:
            self._schedule(len(pending) >= SLICE)
        elif len(pending) == SLICE and not self._soon:
            self._timer.cancel()
            self._schedule(True)

    def _schedule(self, soon: bool) -> None:
        """Count a slice of what is set aside as soon as the loop is free (`soon`: a slice is waiting), else
        FLUSH_S from now."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a journal used by hand): count at once
            self.flush()
            return
        self._soon = soon
        self._timer = loop.call_soon(self._slice) if soon else loop.call_later(FLUSH_S, self._slice)

    def _slice(self) -> None:
        self._timer = None
        self._count(SLICE)
        if self._pending:
            self._schedule(len(self._pending) >= SLICE)

    # ---- counting
    def flush(self) -> None:
        """Count everything set aside, and the streams open now (what a scrape shows)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._count(None)

    def _take(self, limit: int | None) -> list[Entry]:
        """The first `limit` requests set aside (None: all), or fewer when they wrote SLICE_WRITES together."""
        pending = self._pending
        cut = len(pending)
        if limit is not None:
            writes = 0
            for index, entry in enumerate(pending):
                timeline = entry.timeline
                writes += 1 if timeline is None else timeline.kept
                if index + 1 >= limit or writes >= SLICE_WRITES:
                    cut = index + 1
                    break
        taken, self._pending = pending[:cut], pending[cut:]
        return taken

    def _count(self, limit: int | None) -> None:
        """Count the first `limit` requests set aside (None: all), and the streams open now."""
        if self._open != self._shown_open:
            self.open_streams.set(self._open)
            self._shown_open = self._open
        pending = self._take(limit)
        if not pending:
            return
        requests: dict[tuple[str, str, str, str], int] = {}
        faults: dict[str, int] = {}
        rejected: dict[str, int] = {}
        batches: dict[str, _Batch] = {}
        for entry in pending:
            dialect = entry.dialect or ""
            outcome = entry.outcome
            key = (entry.route or "", dialect, entry.scenario or "", outcome)
            requests[key] = requests.get(key, 0) + 1
            batch = batches.get(dialect)
            if batch is None:
                batch = batches[dialect] = _Batch()
            batch.bytes += entry.bytes_sent
            batch.events += entry.events_sent
            struck = outcome.startswith("fault:")
            timeline = entry.timeline
            if timeline is not None:
                if timeline.first_token_ms is not None:
                    batch.ttft.append(timeline.first_token_ms)
                if len(timeline.marks) > 2:  # two writes kept, or more
                    gaps = timeline.gaps_ms()
                    low = bisect_left(GAP_BOUNDS_MS, min(gaps))
                    if low == bisect_left(GAP_BOUNDS_MS, max(gaps)):  # all in one bucket (steady, or no pacing)
                        batch.more[low] += len(gaps)
                        batch.more_ms += sum(gaps)
                    else:  # sorted with the others, once
                        batch.gaps.extend(gaps)
                more = timeline.gap_counts
                if more is not None:
                    batch.more = [a + b for a, b in zip(batch.more, more, strict=True)]
                    batch.more_ms += timeline.gap_sum_ms
                struck = struck or timeline.fault_ms is not None
            if struck:
                fault = entry.extra.get("fault")
                kind = (fault.get("kind") if isinstance(fault, dict) else None) or outcome.removeprefix("fault:")
                faults[kind] = faults.get(kind, 0) + 1
            if outcome in REJECTED:
                reason = entry.extra.get("rejected") or outcome
                rejected[reason] = rejected.get(reason, 0) + 1
        for key, count in requests.items():
            counter = self._requests.get(key)
            if counter is None:
                counter = self._requests[key] = self.requests.labels(*key)
            counter.inc(count)
        for kind, count in faults.items():
            self.faults.labels(kind).inc(count)
        for reason, count in rejected.items():
            self.rejected.labels(reason).inc(count)
        for dialect, batch in batches.items():
            self._add(dialect, batch)

    def _add(self, dialect: str, batch: _Batch) -> None:
        children = self._children.get(dialect)
        if children is None:
            children = self._children[dialect] = _Children(self, dialect)
        if batch.bytes:
            children.bytes.inc(batch.bytes)
        if batch.events:
            children.events.inc(batch.events)
        if batch.ttft:
            counts, total_ms = bucketed(batch.ttft)
            add_to_histogram(children.ttft, counts, total_ms / 1000)
        counts, total_ms = bucketed(batch.gaps)
        counts = [a + b for a, b in zip(counts, batch.more, strict=True)]
        add_to_histogram(children.gaps, counts, (total_ms + batch.more_ms) / 1000)

    # ---- GET /metrics
    async def handle(self, request: web.Request) -> web.Response:
        """The exposition, in the format the scraper asks for (Prometheus text, or OpenMetrics), with every
        request ended so far counted."""
        from aiohttp import hdrs, web
        from prometheus_client.exposition import choose_encoder

        self.flush()
        encode, content_type = choose_encoder(",".join(request.headers.getall(hdrs.ACCEPT, [])))
        return web.Response(body=encode(self.registry), headers={hdrs.CONTENT_TYPE: content_type})


def add_to_histogram(histogram: Histogram, counts: list[int], total: float) -> None:
    """Add `counts[i]` observations to bucket i (the last: +Inf) of a labelled histogram, and `total` to its
    sum, as that many `observe()` calls would.

    prometheus_client has no public call for many observations at once, and `observe()` takes a lock and a
    walk over the bounds per value: measured on these machines (prometheus_client 0.26, Python 3.11), 0.9-1.5
    us per gap in memory and 2.0-2.2 us in the multiprocess files, against 0.04-0.1 us per gap for sorting the
    gaps and adding the counts here (a 2000-write stream: 1.7 ms against 0.2 ms, where writing it costs
    ~7 us a write). So this reaches into the histogram's bucket values (`_buckets`, `_sum`: per-bucket, not
    cumulative, counts; in memory or in the multiprocess files alike); `tests/test_metrics.py` checks it
    against `observe()` and fails if they change."""
    buckets = histogram._buckets
    for index, count in enumerate(counts):
        if count:
            buckets[index].inc(count)
    if total:
        histogram._sum.inc(total)


def _mmap_values(directory: str) -> None:
    """Make the metrics created from now on keep their values in `directory`'s files.

    prometheus_client chooses where values live once, when it is first imported (in the mmap files of
    PROMETHEUS_MULTIPROC_DIR if that is set, else in memory), and every metric reads that choice
    (`values.ValueClass`) when it is made. `mockstream serve --workers` sets the variable before it forks, so
    the choice is already right; if prometheus_client came in earlier, make the choice again here."""
    os.environ[MULTIPROCESS_ENV] = directory
    from prometheus_client import values

    if not getattr(values.ValueClass, "_multiprocess", False):
        values.ValueClass = values.MultiProcessValue()
