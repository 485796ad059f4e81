"""What every fault shares: its fields and their checks, the registry, and the hooks the layers call.

A fault acts in the layer that owns it, through hooks; no layer names a fault class:
- before the response: `refusal` (an error answer instead of the stream) and `header_delay`;
- on the encoded frames: `frames` (an `AtToken` fault strikes after `at_token` tokens: `struck`);
- at delivery: `strike`, for a `DeliveryFault` (close, reset, stall), which travels in the frames as a marker;
- on a non-streamed answer: `complete`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar

from ..deliver.frames import TAIL, TOKEN, Frame
from ..plan.checks import Invalid, closest, integer, number, type_name

if TYPE_CHECKING:
    from ..deliver.stream import Stream
    from ..dialects import Dialect, Reply
    from ..plan import Plan

Check = Callable[[Any, str], Any]

_KINDS: dict[str, type[Fault]] = {}
KINDS: Mapping[str, type[Fault]] = MappingProxyType(_KINDS)  # kind -> class, read-only


@dataclass(frozen=True)
class Fault:
    """Fields shared by every fault: `probability` (0..1) that it strikes, rolled from the server seed.

    A subclass with a `kind` is registered under it; its docstring is its one-line documentation and
    `checks` validate its fields (name -> check)."""

    kind: ClassVar[str] = ""
    checks: ClassVar[dict[str, Check]] = {}
    before_response: ClassVar[bool] = False  # acts before the response starts (refusal or header_delay)
    probability: float = 1.0

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.kind:
            return  # a base for kinds, not a kind
        if cls.kind in _KINDS:
            raise TypeError(
                f"fault kind {cls.kind!r} of {cls.__name__} is already registered by {_KINDS[cls.kind].__name__}"
            )
        if issubclass(cls, DeliveryFault) and cls.strike is DeliveryFault.strike:
            raise TypeError(f"delivery fault {cls.__name__} ({cls.kind!r}) does not say what it does: define strike()")
        _KINDS[cls.kind] = cls

    @property
    def outcome(self) -> str:
        """How the journal says an answer ended when this fault struck."""
        return f"fault:{self.kind}"

    # ---- before the response
    def refusal(self, plan: Plan, dialect: Dialect) -> Reply | None:
        """An answer in place of the whole stream (an HTTP error), or None."""
        return None

    def header_delay(self) -> float:
        """Seconds the response headers wait."""
        return 0.0

    # ---- on the frames
    def frames(self, frames: Iterator[Frame], plan: Plan, dialect: Dialect) -> Iterator[Frame]:
        """The encoded frames, as this fault changes them."""
        return frames

    # ---- a non-streamed answer
    async def complete(
        self, reply: Reply, plan: Plan, dialect: Dialect, transport: asyncio.BaseTransport | None
    ) -> Reply | None:
        """The non-streamed answer, as this fault changes it; None when the connection is gone instead."""
        return reply


AT_TOKEN: Check = integer(0)
PROBABILITY: Check = number(0, 1)  # every fault's `probability` field


@dataclass(frozen=True)
class AtToken(Fault):
    """A fault that strikes in the stream after `at_token` token frames (before the first tail frame if the
    answer is shorter)."""

    at_token: int = 0

    def frames(self, frames: Iterator[Frame], plan: Plan, dialect: Dialect) -> Iterator[Frame]:
        at = self.at_token
        seen = 0
        for index, frame in enumerate(frames):
            kind = frame.kind
            if (kind == TOKEN and seen == at) or kind == TAIL:
                instead, goes_on = self.struck(frame, index, plan, dialect)
                yield from instead
                if goes_on:
                    yield from frames
                return
            seen += kind == TOKEN
            yield frame

    def struck(self, frame: Frame, index: int, plan: Plan, dialect: Dialect) -> tuple[list[Frame], bool]:
        """What replaces `frame` (the one the fault strikes at; `index` frames came before it), and whether
        the frames after it follow."""
        raise NotImplementedError


@dataclass(frozen=True)
class DeliveryFault(AtToken):
    """A fault the stream acts on at delivery: it travels in the frames as a marker, just before the frame
    it strikes at."""

    def struck(self, frame: Frame, index: int, plan: Plan, dialect: Dialect) -> tuple[list[Frame], bool]:
        return [Frame(frame.due, self, TAIL), frame], True

    def strike(self, stream: Stream, loop: asyncio.AbstractEventLoop) -> bool:
        """Act on the stream when the marker's turn comes; True when the stream goes on writing at once."""
        raise NotImplementedError


def parse(raw: Any, path: str) -> Fault:
    """Validate a `fault` object: its kind, that kind's fields (listing the valid ones) and probability."""
    if not isinstance(raw, Mapping):
        raise Invalid(path, f"expected an object with a 'kind', got {type_name(raw)}")
    kind = raw.get("kind")
    if kind not in _KINDS:
        valid = ", ".join(sorted(_KINDS))
        hint = closest(str(kind), _KINDS) if isinstance(kind, str) else ""
        raise Invalid(f"{path}.kind", f"unknown fault {kind!r}{hint}; expected one of: {valid}")
    cls = _KINDS[kind]
    allowed = ("kind", "probability", *cls.checks)
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "kind":
            continue
        if key == "probability":
            values[key] = PROBABILITY(value, f"{path}.probability")
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
