"""A stream's timeline: when each write left, how big it was, and where the stream's moments fell.

Recorded where the bytes are handed to the socket (not where they were planned), for the inspector and the
metrics. The stream appends two numbers per write straight into a packed array (16 bytes a write; about
0.17 us, a few per cent of a write: a list packed every few writes cost the same, a tuple per write more,
since the garbage collector tracks tuples). Bounded: the first LIMIT writes are kept; past that only their
count (and, when metrics want them, the gaps between them as bucket counts).
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Sequence
from itertools import repeat
from operator import mul, sub

LIMIT = 2000  # writes kept per stream
KEPT = 2 * LIMIT  # numbers `marks` holds at most
EVENTS = 1 << 20  # a write's bytes and events are one number: bytes * EVENTS + events


class Timeline:
    """What one stream's writes did; times are the loop's clock, shown in ms from the request's arrival
    (`origin`)."""

    __slots__ = (
        "fault_ms",
        "first_token_ms",
        "gap_bounds",
        "gap_counts",
        "gap_sum_ms",
        "last",
        "left_ms",
        "marks",
        "origin",
        "past",
    )

    def __init__(self, origin: float, gap_bounds: Sequence[float] | None = None):
        self.origin = origin
        self.marks = array("d")  # (loop time, bytes * EVENTS + events) per write, flattened: the first LIMIT
        self.past = 0  # writes made past LIMIT
        self.last = 0.0  # loop time of the last of them
        self.first_token_ms: float | None = None  # the write that carried the first content token
        self.fault_ms: float | None = None  # where a delivery fault struck
        self.left_ms: float | None = None  # when the client went away
        # Past LIMIT, the gaps between writes are still counted for the metrics, per bucket (ms upper bounds)
        self.gap_bounds = gap_bounds
        self.gap_counts: list[int] | None = None
        self.gap_sum_ms = 0.0

    def wrote(self, now: float, size: int, events: int) -> None:
        """A write of `size` bytes completing `events` SSE events left at `now` (loop time). The stream
        inlines the common case (see Stream.take)."""
        marks = self.marks
        if len(marks) < KEPT:
            marks.append(now)
            marks.append(size * EVENTS + events)
        else:
            self.beyond(now)

    def beyond(self, now: float) -> None:
        """A write past LIMIT: counted, and its gap too when the metrics want gaps."""
        bounds = self.gap_bounds
        if bounds is not None:
            counts = self.gap_counts
            if counts is None:
                counts = self.gap_counts = [0] * (len(bounds) + 1)
            gap = (now - (self.last if self.past else self.marks[-2])) * 1000.0
            counts[bisect_left(bounds, gap)] += 1
            self.gap_sum_ms += gap
        self.past += 1
        self.last = now

    @property
    def count(self) -> int:
        """Every write made so far."""
        return len(self.marks) // 2 + self.past

    @property
    def kept(self) -> int:
        return len(self.marks) // 2

    def at(self, now: float) -> float:
        """`now` (loop time) in ms from the request's arrival."""
        return round((now - self.origin) * 1000.0, 3)

    def entries(self, start: int = 0) -> list[tuple[float, int, int]]:
        """The kept writes from the `start`-th on, as (offset_ms, bytes, events)."""
        marks, origin = self.marks, self.origin
        return [
            (round((marks[i] - origin) * 1000.0, 3), *divmod(int(marks[i + 1]), EVENTS))
            for i in range(2 * start, len(marks), 2)
        ]

    def gaps_ms(self) -> list[float]:
        """The ms between consecutive kept writes (in C's loops: a fifth of the cost of a Python one)."""
        times = self.marks[::2]
        return list(map(mul, map(sub, times[1:], times), repeat(1000.0, len(times) - 1)))
