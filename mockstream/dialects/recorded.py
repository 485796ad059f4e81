"""What kind of frame a recorded event is, so faults count a replay's tokens as they count a plan's.

A recording holds another server's bytes, in any of the dialects: each event is read as JSON once and
judged by the shape every API gives its deltas (they do not collide): a TOKEN carries a piece of the answer,
a TAIL ends it, anything else is an EVENT.
"""

from __future__ import annotations

import json
from typing import Any

from ..deliver.frames import EVENT, TAIL, TOKEN
from ..deliver.sse import data_of

_TAIL_TYPES = frozenset(
    {"response.completed", "response.failed", "response.incomplete", "message_delta", "message_stop", "error"}
)


def kind_of(event: bytes) -> int:
    """TOKEN, TAIL or EVENT for one SSE event of a recorded stream."""
    data = data_of(event)
    if data == b"[DONE]":
        return TAIL
    try:
        value = json.loads(data)
    except ValueError:
        return EVENT
    if not isinstance(value, dict):
        return EVENT
    kind = value.get("type")
    if isinstance(kind, str):  # Responses and Anthropic Messages name each event
        if kind in _TAIL_TYPES:
            return TAIL
        return TOKEN if kind.endswith(".delta") or kind == "content_block_delta" else EVENT
    choices = value.get("choices")
    if isinstance(choices, list):  # Chat Completions and legacy Completions chunks
        if not choices and value.get("usage"):
            return TAIL
        ended = False
        for choice in choices:
            if isinstance(choice, dict):
                if _carries_text(choice):  # a last piece with its finish_reason (vLLM sends them together)
                    return TOKEN
                ended = ended or bool(choice.get("finish_reason"))
        if ended:
            return TAIL
    return EVENT


def _carries_text(choice: dict[str, Any]) -> bool:
    if choice.get("text"):
        return True
    delta = choice.get("delta")
    if not isinstance(delta, dict):
        return False
    if delta.get("content") or delta.get("reasoning_content") or delta.get("reasoning") or delta.get("refusal"):
        return True
    calls = delta.get("tool_calls")
    return isinstance(calls, list) and any(
        isinstance(call, dict) and isinstance(call.get("function"), dict) and call["function"].get("arguments")
        for call in calls
    )
