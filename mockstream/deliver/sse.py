"""Server-sent-event framing: every byte of SSE syntax the server sends is written here.

OpenAI's Chat and Completions streams use bare `data:` frames ending in `data: [DONE]`; the Responses
and Anthropic dialects name each event. Never an `id:` on the OpenAI routes (openai-python keeps it and
turns later blank lines into empty events), never an empty `data`, never a BOM.

The line ending is a parameter (the `line_ending` knob): the SSE specification allows LF, CRLF and CR, real
proxies and servers emit CRLF, and a parser that splits on "\\n\\n" breaks on anything but LF. A payload is
one line of JSON (compact JSON never holds a raw line break), so only the framing around it changes.
"""

from __future__ import annotations

import re
from functools import cache

LINE_ENDINGS = {"lf": b"\n", "crlf": b"\r\n", "cr": b"\r"}


class Framing:
    """The SSE framing of one line ending. Dialects build a frame's JSON, this wraps it."""

    __slots__ = ("done", "end", "eol")

    def __init__(self, eol: bytes = b"\n"):
        self.eol = eol
        self.end = eol + eol  # a data line's end and the blank line that ends the event
        self.done = self.data(b"[DONE]")

    def data(self, payload: bytes) -> bytes:
        """An unnamed event: `data: <payload>`."""
        return b"data: " + payload + self.end

    def event(self, name: str, payload: bytes) -> bytes:
        """A named event: `event: <name>` then `data: <payload>`."""
        return b"event: " + name.encode() + self.eol + b"data: " + payload + self.end

    def around(self, head: bytes, tail: bytes, name: str | None = None) -> tuple[bytes, bytes]:
        """The bytes before and after the part of an event's JSON that changes from frame to frame, so a
        dialect frames a token as `before + token + after`, with no framing work per token."""
        opening = b"data: " if name is None else b"event: " + name.encode() + self.eol + b"data: "
        return opening + head, tail + self.end

    def with_id(self, number: int, frame: bytes) -> bytes:
        """The frame with an `id:` line first (a browser's EventSource sends it back as Last-Event-ID)."""
        return b"id: " + str(number).encode() + self.eol + frame

    def retry(self, ms: int) -> bytes:
        """A `retry:` hint: how soon an EventSource reconnects."""
        return b"retry: " + str(ms).encode() + self.end

    def broken(self, frame: bytes, data: str | None) -> bytes:
        """`frame` with the JSON of its data line cut in half (or replaced by `data`): framing intact, JSON
        broken, which is what a `malformed` fault sends."""
        start = frame.rfind(b"data: ") + len(b"data: ")
        payload = frame[start:].rstrip(b"\r\n")
        broken = data.encode() if data is not None else payload[: max(1, len(payload) // 2)]
        return frame[:start] + broken + self.end


@cache
def framing(line_ending: str = "lf") -> Framing:
    """The shared framing of a line ending: `lf`, `crlf` or `cr`."""
    return Framing(LINE_ENDINGS[line_ending])


LF = framing("lf")


# ---- reading what someone else framed (a recorded stream)
# A line ends at CRLF, LF or CR; an event ends at an empty line. A CR followed by LF is one line end.
_EVENT_END = re.compile(rb"(?:\r\n|\r(?!\n)|\n)(?:\r\n|\r(?!\n)|\n)")
_LINE_END = re.compile(rb"\r\n|\r|\n")


def event_ends(body: bytes) -> list[int]:
    """Where each complete event of an SSE body ends (the offset just after its blank line)."""
    return [match.end() for match in _EVENT_END.finditer(body)]


def data_of(event: bytes) -> bytes:
    """The `data` of one event: its data lines' values joined by LF, as an EventSource reads them."""
    values = []
    for line in _LINE_END.split(event):
        field, _, value = line.partition(b":")
        if field == b"data":
            values.append(value[1:] if value.startswith(b" ") else value)
    return b"\n".join(values)
