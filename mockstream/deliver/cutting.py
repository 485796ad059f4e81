"""Write cutting: frames grouped into socket writes (`events_per_write`) or cut into pieces (`chunk_bytes`)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from .frames import TOKEN, Frame, Item, Write


def writes(frames: Iterable[Frame], chunk_bytes: int | None = None, events_per_write: int = 1) -> Iterator[Item]:
    """Group frames into socket writes.

    `events_per_write` N: N frames per write, sent when the last of them is due. `chunk_bytes` N: the
    body cut into writes of at most N bytes, across SSE-event and UTF-8 boundaries (frames due together
    are cut as one run of bytes). A delivery fault passes through as its own item, after what came before.
    Otherwise each frame is a write of its own.
    """
    if chunk_bytes:
        return _cut(frames, chunk_bytes)
    if events_per_write > 1:
        return _grouped(frames, events_per_write)
    return iter(frames)


def _grouped(frames: Iterable[Frame], size: int) -> Iterator[Write]:
    group: list[bytes] = []
    tokens = 0
    due = 0.0
    for due, data, kind in frames:
        if not isinstance(data, bytes):  # a delivery fault: what came before it goes first
            if group:
                yield Write(due, b"".join(group), len(group), tokens)
                group, tokens = [], 0
            yield Write(due, data, 0)
            continue
        group.append(data)
        tokens += kind == TOKEN
        if len(group) == size:
            yield Write(due, b"".join(group), size, tokens)
            group, tokens = [], 0
    if group:
        yield Write(due, b"".join(group), len(group), tokens)


def _cut(frames: Iterable[Frame], size: int) -> Iterator[Write]:
    buffer = b""
    # where each frame in the buffer ends, and whether it is a content token: what a piece completes
    ends: list[int] = []
    tokens: list[bool] = []
    buffer_due = 0.0
    for due, data, kind in frames:
        if buffer and (due != buffer_due or not isinstance(data, bytes)):
            yield Write(buffer_due, buffer, len(ends), sum(tokens))
            buffer, ends, tokens = b"", [], []
        if not isinstance(data, bytes):  # a delivery fault: its own item
            yield Write(due, data, 0)
            continue
        buffer += data
        ends.append(len(buffer))
        tokens.append(kind == TOKEN)
        buffer_due = due
        while len(buffer) >= size:
            done = sum(1 for end in ends if end <= size)
            ends = [end - size for end in ends[done:]]
            yield Write(due, buffer[:size], done, sum(tokens[:done]))
            tokens = tokens[done:]
            buffer = buffer[size:]
    if buffer:
        yield Write(buffer_due, buffer, len(ends), sum(tokens))
