"""Server-sent-event framing: the few byte shapes a stream is made of.

OpenAI's Chat and Completions streams use bare `data:` frames ending in `data: [DONE]`; the Responses
and Anthropic dialects name each event. Never an `id:` on the OpenAI routes (openai-python keeps it and
turns later blank lines into empty events), never an empty `data`, never a BOM.
"""

from __future__ import annotations

DONE = b"data: [DONE]\n\n"


def data(payload: bytes) -> bytes:
    return b"data: " + payload + b"\n\n"


def event(name: str, payload: bytes) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + payload + b"\n\n"


def comment(text: str = "") -> bytes:
    return b": " + text.encode() + b"\n\n"
