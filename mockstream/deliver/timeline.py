"""A stream's timeline: when each write left, how big it was, and where the stream's moments fell.

Recorded where the bytes are handed to the socket (not where they were planned), for the inspector and the
metrics. Bounded: the first LIMIT writes are kept as three float32 numbers each (12 bytes a write); past
that only their count (and, when metrics want them, the gaps between them as bucket counts).
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Iterator, Sequence

LIMIT = 2000  # writes kept per stream


class Timeline:
    """What one stream's writes did, in ms from the request's arrival (`origin`, on the loop's clock)."""

    __slots__ = (
        "fault_ms",
        "first_token_ms",
        "gap_bounds",
        "gap_counts",
        "gap_sum_ms",
        "last_ms",
        "left_ms",
        "marks",
        "origin",
        "writes",
    )

    def __init__(self, origin: float, gap_bounds: Sequence[float] | None = None):
        self.origin = origin
        self.marks = array("f")  # (offset_ms, bytes, events) per write, flattened: the first LIMIT writes
        self.writes = 0  # every write made
        self.last_ms = 0.0
        self.first_token_ms: float | None = None  # the write that carried the first content token
        self.fault_ms: float | None = None  # where a delivery fault struck
        self.left_ms: float | None = None  # when the client went away
        # Past LIMIT, the gaps between writes are still counted for the metrics, per bucket (ms upper bounds)
        self.gap_bounds = gap_bounds
        self.gap_counts: list[int] | None = None
        self.gap_sum_ms = 0.0

    def wrote(self, now: float, size: int, events: int) -> None:
        """A write of `size` bytes completing `events` SSE events left at `now` (loop time)."""
        ms = (now - self.origin) * 1000.0
        if self.writes < LIMIT:
            self.marks.extend((ms, size, events))
        elif self.gap_bounds is not None:
            counts = self.gap_counts
            if counts is None:
                counts = self.gap_counts = [0] * (len(self.gap_bounds) + 1)
            gap = ms - self.last_ms
            counts[bisect_left(self.gap_bounds, gap)] += 1
            self.gap_sum_ms += gap
        self.writes += 1
        self.last_ms = ms

    def at(self, now: float) -> float:
        """`now` (loop time) in ms from the request's arrival."""
        return round((now - self.origin) * 1000.0, 3)

    def entries(self, start: int = 0) -> list[tuple[float, int, int]]:
        """The kept writes from the `start`-th on, as (offset_ms, bytes, events)."""
        marks = self.marks
        return [(round(marks[i], 3), int(marks[i + 1]), int(marks[i + 2])) for i in range(3 * start, len(marks), 3)]

    def gaps_ms(self) -> Iterator[float]:
        """The ms between consecutive kept writes."""
        marks = self.marks
        for i in range(3, len(marks), 3):
            yield marks[i] - marks[i - 3]

    @property
    def kept(self) -> int:
        return len(self.marks) // 3
