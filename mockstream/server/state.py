"""The server's state: what requests share across calls, in one object every room is handed.

`reset()` is the one reset: the admin route (`POST /_mockstream/reset`) and the test fixture both call it.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from aiohttp import web

from ..deliver.pacer import Pacer
from ..plan.checks import closest
from ..plan.matching import Scenarios, Sequences
from ..plan.schema import Scenario
from .conversations import Conversations
from .journal import DEFAULT_SIZE, Entry, Journal
from .recent import Recent

if TYPE_CHECKING:
    from ..dialects import Dialect
    from ..process.listen import Arrivals
    from .metrics import Metrics
    from .shared import SharedState


DEFAULT_READ_TIMEOUT = 60.0  # s a request's body may take to arrive


@dataclass
class Settings:
    """What `mockstream serve` flags set for the whole server."""

    seed: int = 0
    speed: float = 1.0
    read_timeout: float = DEFAULT_READ_TIMEOUT
    headers: dict[str, str] = field(default_factory=dict)  # sent with every API answer
    strict: bool = False  # a request no scenario matched gets a 404 naming the closest (else the default answers)
    on_miss: str = "default"  # what answers such a request: default, error (the 404) or proxy (`State.proxy`)
    record_all: bool = False  # every API request goes to `State.proxy`, unplanned (`mockstream record`)

    def __post_init__(self) -> None:
        if self.on_miss not in ON_MISS:
            hint = closest(self.on_miss, ON_MISS)
            raise ValueError(f"on_miss: unknown value {self.on_miss!r}{hint}; expected one of: {', '.join(ON_MISS)}")


ON_MISS = ("default", "error", "proxy")


class Proxy(Protocol):
    """What answers a request from an upstream server (mockstream/record/proxy.py): it streams the answer
    back, closes `entry` in the journal, and may add the recording to `state.scenarios`. `raw` is the body as
    read (its Content-Encoding undone; None for a GET)."""

    async def forward(
        self, request: web.Request, raw: bytes | None, dialect: Dialect, entry: Entry
    ) -> web.StreamResponse: ...


class InFlight:
    """The API requests being answered: what a graceful stop waits for, and cancels once its grace runs out."""

    __slots__ = ("cut", "tasks")

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task] = set()
        self.cut = False  # the stop's grace ran out: a request cancelled now ends as "shutdown"


class State:
    """Scenarios, sequence positions, fault rolls and the journal; and the per-process machinery of a
    server (its pacer, the requests in flight, the errors kept for tests)."""

    def __init__(
        self,
        scenarios: Iterable[Scenario] = (),
        *,
        seed: int = 0,
        speed: float = 1.0,
        journal_size: int = DEFAULT_SIZE,
        cors_origins: Iterable[str] = ("*",),
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        strict: bool = False,
        on_miss: str = "default",
        record_all: bool = False,
        admin: bool = True,
    ):
        self.settings = Settings(
            seed=seed, speed=speed, read_timeout=read_timeout, strict=strict, on_miss=on_miss, record_all=record_all
        )
        self.loaded = list(scenarios)  # the scenarios the server started with (runtime ones come and go)
        self.scenarios = Scenarios(self.loaded)
        self.sequences = Sequences()
        self.conversations = Conversations()  # what earlier answers said, for requests that continue them
        self.journal = Journal(journal_size)
        self.rolls = random.Random(seed)  # does a fault with a probability strike this call?
        self.recent = Recent()  # bodies parsed and planned recently (see planner.py)
        self.pacer = Pacer()
        self.arrivals: Arrivals | None = None  # told when a request begins (`mockstream serve`'s listener)
        self.in_flight = InFlight()
        self.errors: list[BaseException] = []  # unexpected exceptions, kept for the test that caused them
        self.cors_origins = tuple(cors_origins)
        self.proxy: Proxy | None = None  # answers from an upstream: on a miss (on_miss "proxy"), or always (record_all)
        self.admin = admin  # /_mockstream/* is served: the journal keeps what the inspector shows
        self.metrics: Metrics | None = None  # /metrics is served (see metrics.py)
        self.gap_bounds: tuple[float, ...] | None = None  # its write-gap buckets (ms), for timelines past their limit
        self.worker: int | None = None  # this process's number among `--workers` (None: the only one)
        self.workers = 1
        self.shared: SharedState | None = None  # the Redis side (`--state redis://...`), see shared.py

    @property
    def keeps_details(self) -> bool:
        """Does the journal keep what rebuilds an answer's detail (its plan, a whole answer's body)?"""
        return self.admin

    @property
    def keeps_timelines(self) -> bool:
        """Is each stream's timeline recorded (someone reads it: the admin API or the metrics)?"""
        return self.admin or self.metrics is not None

    def reset(self) -> None:
        """Clear the journal, every sequence position, the conversations kept, what was parsed and planned,
        and the kept errors;
        re-seed the fault rolls. Loaded scenarios stay."""
        self.journal.clear()
        self.recent.clear()
        self.sequences.reset()
        self.conversations = Conversations()
        self.rolls.seed(self.settings.seed)
        self.errors.clear()

    @staticmethod
    def of(app: web.Application) -> State:
        """The state of an app made by `create_app`."""
        return app[STATE]


STATE = web.AppKey("state", State)
