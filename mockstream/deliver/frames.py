"""What flows from the encoder to the socket: frames (one SSE event each), then writes (what one send holds).

A frame's `data` is its bytes, or a `Strike`: a delivery fault's marker, which the stream acts on when its
turn comes (close, reset, stall). Delivery knows nothing else of faults.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, ClassVar, NamedTuple, Protocol

if TYPE_CHECKING:
    from .stream import Stream

# Frame kinds, so a fault can count tokens without knowing the dialect: a TOKEN carries one delta of the
# answer; a TAIL ends it (finish chunk, usage, [DONE], response.completed); an EVENT is anything else
# (role chunk, item and block boundaries).
EVENT, TOKEN, TAIL = 0, 1, 2


class Strike(Protocol):
    """A delivery fault, as the stream sees it: something that acts on the stream when its turn comes."""

    @property
    def outcome(self) -> str: ...

    def strike(self, stream: Stream, loop: asyncio.AbstractEventLoop) -> bool:
        """Act on `stream`; True when the stream goes on writing at once, False when it must wait or ends."""
        ...


class _Frame(NamedTuple):
    due: float  # offset in s from the stream's start
    data: bytes | Strike
    kind: int  # EVENT, TOKEN or TAIL


class Frame(_Frame):
    """One SSE event of the encoded answer; sent alone, it is a write of one event."""

    __slots__ = ()
    events: ClassVar[int] = 1  # what a stream counts per write (a class attribute: read once per event)


class Write(NamedTuple):
    """What one socket write sends, when writes are cut or grouped (`chunk_bytes`, `events_per_write`)."""

    due: float  # offset in s from the stream's start
    data: bytes | Strike
    events: int  # SSE events the write completes
    tokens: int = 0  # content tokens (TOKEN frames) the write completes


Item = Frame | Write  # what a stream sends, one socket write each


# Made per token: `new(Frame, (due, data, kind))` is the same object as `Frame(due, data, kind)` at a third of
# the cost (no Python-level __new__ call): 0.20 against 0.58 us on these machines, of about 7 us per event.
new = tuple.__new__
