"""Every dialect's clock: each choice's frames put on the plan's due times."""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator

from ..deliver.frames import TAIL, TOKEN, Frame, new
from ..plan import Plan


def interleave(
    plan: Plan, slots: list[Iterator[tuple[bytes, int]]], finish: Callable[[int], bytes | None]
) -> Generator[Frame, None, float]:
    """Put every choice's frames on the plan's clock. Each TOKEN frame takes the next due time (slot k of
    every choice is due at the k-th due time); other frames follow the token before them at once, and a
    choice's `finish` frame (if any) follows its last frame. Returns the last due time (for the frames
    that close the stream)."""
    last = 0.0
    times = plan.due_times()
    if len(slots) == 1:  # one choice (the common case): the same frames and times, without the bookkeeping
        for data, kind in slots[0]:
            if kind == TOKEN:
                last = next(times)
            yield new(Frame, (last, data, kind))
        closing = finish(0)
        if closing is not None:
            yield Frame(last, closing, TAIL)
        return last
    live = list(enumerate(slots))
    while live:
        due = next(times)
        still = []
        for i, frames in live:
            for data, kind in frames:
                if kind == TOKEN:
                    yield new(Frame, (due, data, TOKEN))
                    still.append((i, frames))
                    break
                yield Frame(last, data, kind)
            else:
                closing = finish(i)
                if closing is not None:
                    yield Frame(last, closing, TAIL)
        if still:
            last = due
        live = still
    return last
