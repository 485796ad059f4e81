"""The framing of Google's streamed JSON array (`streamGenerateContent` without `alt=sse`): `[` + the first
object, then `\\n,\\r\\n` + each next object, then `\\n]`, as the API writes it."""

from __future__ import annotations

from collections.abc import Iterator

from .frames import TAIL, Frame, new

FIRST, NEXT, CLOSE = b"[", b"\n,\r\n", b"\n]"


def array(frames: Iterator[Frame]) -> Iterator[Frame]:
    """Frames whose data is one JSON object each, framed as the elements of one array."""
    sep = FIRST
    last = 0.0
    for due, data, kind in frames:
        last = due
        if isinstance(data, bytes):
            yield new(Frame, (due, sep + data, kind))
            sep = NEXT
        else:  # a delivery fault's marker: it takes no place in the array
            yield new(Frame, (due, data, kind))
    yield Frame(last, b"[]" if sep is FIRST else CLOSE, TAIL)
