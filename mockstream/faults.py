"""The fault catalogue: every way a real stream (or a proxy in front of it) misbehaves.

One small class per kind, registered by its `kind`. The Plan says *that* a fault strikes and *where*;
the layer that owns it makes it happen:
- `http`: the server answers with an error status, or holds the headers back, before any SSE byte;
- `encode`: an in-band event replaces or joins the frames (error event, malformed line, clean truncation);
- `deliver`: the transport acts on the socket (close, reset, stall) after K tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from .checks import Invalid, closest, integer, number, optional, string, type_name

# Frame kinds, so a fault can count tokens without knowing the dialect: a TOKEN carries one delta of the
# answer; a TAIL ends it (finish chunk, usage, [DONE], response.completed); an EVENT is anything else
# (role chunk, item and block boundaries).
EVENT, TOKEN, TAIL = 0, 1, 2

KINDS: dict[str, type[Fault]] = {}


@dataclass(frozen=True)
class Fault:
    """Fields shared by every fault: `probability` (0..1) that it strikes, rolled from the server seed."""

    kind: ClassVar[str] = ""
    layer: ClassVar[str] = ""
    checks: ClassVar[dict[str, Callable[[Any, str], Any]]] = {}
    probability: float = 1.0

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.kind in KINDS:
            raise TypeError(f"fault kind {cls.kind!r} is already registered by {KINDS[cls.kind].__name__}")
        KINDS[cls.kind] = cls

    @property
    def outcome(self) -> str:
        return f"fault:{self.kind}"


_MS = number(0, 86_400_000)
_TOKEN = integer(0)
_TEXT = optional(string)


@dataclass(frozen=True)
class HttpError(Fault):
    """That status before any SSE byte, with the API's error body and headers."""

    kind = "http_error"
    layer = "http"
    checks = {
        "status": integer(400, 599),
        "retry_after": optional(number(0, 86_400)),
        "retry_after_ms": optional(number(0, 86_400_000)),
        "message": _TEXT,
        "type": _TEXT,
        "code": _TEXT,
    }
    status: int = 500
    retry_after: float | None = None
    retry_after_ms: float | None = None
    message: str | None = None
    type: str | None = None
    code: str | None = None


@dataclass(frozen=True)
class SlowHeaders(Fault):
    """The response headers themselves come `ms` late."""

    kind = "slow_headers"
    layer = "http"
    checks = {"ms": _MS}
    ms: float = 0.0


@dataclass(frozen=True)
class ErrorEvent(Fault):
    """K tokens, then an in-band error event, then the stream ends."""

    kind = "error_event"
    layer = "encode"
    checks = {"at_token": _TOKEN, "message": _TEXT, "type": _TEXT, "code": _TEXT}
    at_token: int = 0
    message: str | None = None
    type: str | None = None
    code: str | None = None


@dataclass(frozen=True)
class Malformed(Fault):
    """K tokens, then one data line that is not valid JSON (SSE framing intact), then the stream goes on."""

    kind = "malformed"
    layer = "encode"
    checks = {"at_token": _TOKEN, "data": _TEXT}
    at_token: int = 0
    data: str | None = None


@dataclass(frozen=True)
class Truncate(Fault):
    """K tokens, then the body ends cleanly: no finish_reason, no [DONE]."""

    kind = "truncate"
    layer = "encode"
    checks = {"at_token": _TOKEN}
    at_token: int = 0


@dataclass(frozen=True)
class Disconnect(Fault):
    """K tokens, then the connection closes (FIN) in the middle of the chunked body."""

    kind = "disconnect"
    layer = "deliver"
    checks = {"at_token": _TOKEN}
    at_token: int = 0


@dataclass(frozen=True)
class Reset(Fault):
    """K tokens, then a TCP RST (SO_LINGER 0) instead of a FIN."""

    kind = "reset"
    layer = "deliver"
    checks = {"at_token": _TOKEN}
    at_token: int = 0


@dataclass(frozen=True)
class Stall(Fault):
    """K tokens, then silence for `ms` (then the stream goes on); without `ms`, until the client gives up."""

    kind = "stall"
    layer = "deliver"
    checks = {"at_token": _TOKEN, "ms": optional(_MS)}
    at_token: int = 0
    ms: float | None = None


def parse(raw: Any, path: str) -> Fault:
    """Validate a `fault` object: its kind, that kind's fields (listing the valid ones) and probability."""
    if not isinstance(raw, Mapping):
        raise Invalid(path, f"expected an object with a 'kind', got {type_name(raw)}")
    kind = raw.get("kind")
    if kind not in KINDS:
        valid = ", ".join(sorted(KINDS))
        hint = closest(str(kind), KINDS) if isinstance(kind, str) else ""
        raise Invalid(f"{path}.kind", f"unknown fault {kind!r}{hint}; expected one of: {valid}")
    cls = KINDS[kind]
    allowed = ("kind", "probability", *cls.checks)
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "kind":
            continue
        if key == "probability":
            values[key] = number(0, 1)(value, f"{path}.probability")
        elif key in cls.checks:
            values[key] = cls.checks[key](value, f"{path}.{key}")
        else:
            raise Invalid(
                f"{path}.{key}",
                f"unknown field for fault {kind!r}{closest(str(key), allowed)}; expected one of: {', '.join(allowed)}",
            )
    return cls(**values)


def describe(fault: Fault) -> dict[str, Any]:
    """The fault as JSON (for the journal and the admin API)."""
    return {"kind": fault.kind, **{f.name: getattr(fault, f.name) for f in fields(fault)}}


# ---------------------------------------------------------------- encode layer ---
Frame = tuple[float, Any, int]  # (due, bytes or a delivery Fault, EVENT, TOKEN or TAIL)


def inject(frames: Iterator[Frame], fault: Fault, error_frame: Callable[[ErrorEvent, int], bytes]) -> Iterator[Frame]:
    """Let `fault` strike after `at_token` token frames (or before the first tail frame if the answer is
    shorter). Encode-layer faults rewrite the frames here; delivery faults travel on as a marker that the
    transport acts on. `error_frame(fault, index)` spells the in-band error as the dialect does; `index` is
    how many events came before it (the Responses API numbers its events)."""
    at = getattr(fault, "at_token", 0)
    seen = 0
    for index, frame in enumerate(frames):
        due, data, kind = frame
        if (kind == TOKEN and seen == at) or kind == TAIL:
            if isinstance(fault, ErrorEvent):
                yield due, error_frame(fault, index), TAIL
                return
            if isinstance(fault, Truncate):
                return
            if isinstance(fault, Malformed):
                yield due, _malformed(data, fault.data), TAIL
            else:
                yield due, fault, TAIL
            yield frame
            yield from frames
            return
        seen += kind == TOKEN
        yield frame


def _malformed(frame: bytes, data: str | None) -> bytes:
    """The frame's data line with its JSON cut in half (or the given text): framing intact, JSON broken."""
    start = frame.rfind(b"data: ") + len(b"data: ")
    payload = frame[start:].rstrip(b"\n")
    broken = data.encode() if data is not None else payload[: max(1, len(payload) // 2)]
    return frame[:start] + broken + b"\n\n"
