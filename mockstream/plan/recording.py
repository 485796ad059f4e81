"""A recorded exchange: what an upstream answered, write by write, as one more source of a plan.

A scenario file's `recording` field holds it: the status, the headers that matter, every write the upstream
made (`at_ms` from the request's arrival, and its bytes: `text` where they are valid UTF-8, `base64` where a
write splits a character) and how the answer ended. Replaying it sends the same bytes in the same writes at
the same offsets (see `deliver/replay.py`).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import Problem
from .checks import Invalid, integer, number, type_name

# How a recorded answer ended: the upstream finished it, closed the connection mid-body, reset it, or went
# silent for longer than the recorder waited.
ENDS = ("completed", "upstream_closed", "reset", "timeout")
FIELDS = ("status", "headers", "writes", "end", "take", "request", "upstream")
MAX_AT_MS = 86_400_000.0  # a day
# The id of a recorded answer: the first Responses or Anthropic message id in its bytes.
_ANSWER_ID = re.compile(rb'"id"\s*:\s*"((?:resp|msg)_[^"]+)"')


@dataclass(frozen=True, slots=True)
class RecordedWrite:
    at: float  # seconds from the request's arrival
    data: bytes


@dataclass(frozen=True, slots=True)
class Recording:
    status: int
    headers: tuple[tuple[str, str], ...]  # lower-case names, in the order recorded
    writes: tuple[RecordedWrite, ...]
    end: str = "completed"
    take: int = 1  # the same request recorded again is take 2, 3...: answered in this order
    request: Any = None  # the request as it was recorded (secrets redacted): for reading, never matched
    upstream: str = ""  # where it was recorded from
    # Worked out once from the writes (every replay reads them):
    body: bytes = field(init=False, repr=False, compare=False)  # the writes joined
    answer_id: str | None = field(init=False, repr=False, compare=False)  # the resp_/msg_ id it answered with

    def __post_init__(self) -> None:
        body = b"".join(write.data for write in self.writes)
        found = _ANSWER_ID.search(body)
        object.__setattr__(self, "body", body)
        object.__setattr__(self, "answer_id", found.group(1).decode("utf-8", "replace") if found else None)

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((value for key, value in self.headers if key == name), None)

    @property
    def streamed(self) -> bool:
        """An event stream (replayed write by write), else a whole body (replayed at once, at its time)."""
        return (self.header("content-type") or "").startswith("text/event-stream") or self.end != "completed"

    def to_dict(self) -> dict[str, Any]:
        """The YAML/JSON form of a scenario file's `recording` field."""
        out: dict[str, Any] = {"status": self.status, "headers": dict(self.headers), "end": self.end}
        if self.take != 1:
            out["take"] = self.take
        if self.upstream:
            out["upstream"] = self.upstream
        out["writes"] = [_write_dict(write) for write in self.writes]
        if self.request is not None:
            out["request"] = self.request
        return out


def _write_dict(write: RecordedWrite) -> dict[str, Any]:
    at_ms = round(write.at * 1000, 3)
    try:
        return {"at_ms": at_ms, "text": write.data.decode("utf-8")}
    except UnicodeDecodeError:  # the write splits a character (or is not text): its bytes as they were
        return {"at_ms": at_ms, "base64": base64.b64encode(write.data).decode("ascii")}


@dataclass(frozen=True, slots=True)
class Replay:
    """A recording as one request's plan answers with it."""

    recording: Recording
    source: str  # the file it came from
    factor: float  # a recorded offset times this is the replayed one (1 / (speed * replay_speed); 0: at once)
    retimed: bool  # ttft_ms or itl_ms given: the content events follow the plan's pacing, not the recording

    def due(self, at: float) -> float:
        return at * self.factor


def replay(recording: Recording, source: str, knobs: Mapping[str, Any], speed: float) -> Replay:
    """How a request's knobs and the server's speed replay `recording`."""
    rate = speed * knobs.get("replay_speed", 1.0)
    return Replay(recording, source, 1 / rate if rate > 0 else 0.0, "ttft_ms" in knobs or "itl_ms" in knobs)


_STATUS = integer(100, 599)
_TAKE = integer(1)
_AT_MS = number(0, MAX_AT_MS)


def parse(raw: Any, path: str) -> tuple[Recording | None, list[Problem]]:
    """Validate a `recording` object; every problem names its field (`recording.writes[3].base64`)."""
    if not isinstance(raw, Mapping):
        return None, [Problem(path, f"expected an object, got {type_name(raw)}")]
    problems: list[Problem] = []
    for key in raw:
        if key not in FIELDS:
            problems.append(Problem(f"{path}.{key}", f"unknown field; expected one of: {', '.join(FIELDS)}"))

    def check(key: str, checker: Any, default: Any) -> Any:
        if key not in raw:
            return default
        try:
            return checker(raw[key], f"{path}.{key}")
        except Invalid as exc:
            problems.append(exc.problem)
            return default

    status = check("status", _STATUS, None)
    if "status" not in raw:
        problems.append(Problem(f"{path}.status", "a recording needs the HTTP status it answered with"))
    take = check("take", _TAKE, 1)
    end = raw.get("end", "completed")
    if end not in ENDS:
        problems.append(Problem(f"{path}.end", f"expected one of: {', '.join(ENDS)}; got {end!r}"))
    headers: tuple[tuple[str, str], ...] = ()
    raw_headers = raw.get("headers", {})
    if isinstance(raw_headers, Mapping) and all(isinstance(v, str) for v in raw_headers.values()):
        headers = tuple((str(k).lower(), v) for k, v in raw_headers.items())
    else:
        problems.append(Problem(f"{path}.headers", "expected an object of header name -> string value"))
    upstream = raw.get("upstream", "")
    if not isinstance(upstream, str):
        problems.append(Problem(f"{path}.upstream", "expected a string"))
        upstream = ""
    writes = _writes(raw.get("writes", []), f"{path}.writes", problems)
    if problems or status is None:
        return None, problems
    return Recording(status, headers, writes, end, take, raw.get("request"), upstream), []


def _writes(raw: Any, path: str, problems: list[Problem]) -> tuple[RecordedWrite, ...]:
    if not isinstance(raw, list):
        problems.append(Problem(path, f"expected an array of {{at_ms, text | base64}}, got {type_name(raw)}"))
        return ()
    writes = []
    last = 0.0
    for i, item in enumerate(raw):
        where = f"{path}[{i}]"
        if not isinstance(item, Mapping):
            problems.append(Problem(where, f"expected an object {{at_ms, text | base64}}, got {type_name(item)}"))
            continue
        unknown = [key for key in item if key not in ("at_ms", "text", "base64")]
        if unknown:
            problems.append(Problem(f"{where}.{unknown[0]}", "unknown field; expected at_ms and text or base64"))
        try:
            at_ms = _AT_MS(item.get("at_ms"), f"{where}.at_ms")
        except Invalid as exc:
            problems.append(exc.problem)
            continue
        if at_ms < last:
            problems.append(
                Problem(f"{where}.at_ms", f"writes must be in time order: {at_ms} comes after {last} (writes[{i - 1}])")
            )
        last = max(last, at_ms)
        data = _data(item, where, problems)
        if data is not None:
            writes.append(RecordedWrite(at_ms / 1000, data))
    return tuple(writes)


def _data(item: Mapping[str, Any], where: str, problems: list[Problem]) -> bytes | None:
    if ("text" in item) == ("base64" in item):
        problems.append(Problem(where, "a write holds exactly one of text or base64"))
        return None
    if "text" in item:
        text = item["text"]
        if not isinstance(text, str):
            problems.append(Problem(f"{where}.text", f"expected a string, got {type_name(text)}"))
            return None
        return text.encode("utf-8", "surrogatepass")
    encoded = item["base64"]
    if not isinstance(encoded, str):
        problems.append(Problem(f"{where}.base64", f"expected a base64 string, got {type_name(encoded)}"))
        return None
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        problems.append(Problem(f"{where}.base64", f"not valid base64: {exc}"))
        return None
