"""Full garbage collections when no request is in flight, not in the middle of a thousand streams.

CPython collects its oldest generation after every tenth collection of the middle one, wherever the
program is: with 1000 streams open, that scan of every live object paused them all for 20-30 ms, the
longest stall a loaded server had. `IdleCollector` turns the automatic trigger off and runs the same
collection itself once no request is in flight, or, when the load never pauses, once it is OVERDUE.
Python 3.14's incremental collector bounds its own pauses: it is left alone there.
"""

from __future__ import annotations

import asyncio
import gc
import sys
from collections.abc import Callable

DUE = 10  # middle-generation collections since the last full one: CPython's own trigger (its threshold2)
OVERDUE = 100  # the same, when the load never pauses: collect anyway, ten times later than CPython would
LOOK_EVERY = 0.1  # s between looks at the count
_NEVER = 2**31 - 1  # a threshold the count never reaches


class IdleCollector:
    """Moves the full collections of this process to moments when `idle()` (no request in flight)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, idle: Callable[[], bool]):
        self._loop = loop
        self._idle = idle
        self._thresholds = gc.get_threshold()
        self._timer: asyncio.TimerHandle | None = None
        if sys.version_info < (3, 14) and gc.isenabled():
            gc.set_threshold(self._thresholds[0], self._thresholds[1], _NEVER)
            self._timer = loop.call_later(LOOK_EVERY, self._look)

    def _look(self) -> None:
        due = gc.get_count()[2]  # middle-generation collections since the last full one
        if due >= OVERDUE or (due >= DUE and self._idle()):
            gc.collect()
        self._timer = self._loop.call_later(LOOK_EVERY, self._look)

    def close(self) -> None:
        """Give the collector its own trigger back."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            gc.set_threshold(*self._thresholds)
