"""State shared by every worker and replica that points at one Redis (`--state redis://...`).

What a client depends on across requests: sequence positions (one atomic INCR per step, so two workers never
hand out the same step), the fault-roll counter (the n-th roll is the n-th draw of the server seed's
generator, as in one process), runtime scenarios (kept as their JSON; each request first compares one epoch
key, so a scenario posted to one worker answers on every other from the next request on) and the journal (each
ended request's summary in a capped Redis stream). Every key is under the prefix, so several mocks can share
one Redis. Streaming never waits on Redis: the state is read when a request is planned, written when it ends.

Redis lost while running: requests that need it (a sequence step, a fault roll) get a 503 naming the store;
the others stream on with the scenarios known last; `/healthz` says `degraded`; ended requests wait in memory
(bounded) for the journal; a probe each PROBE seconds notices when Redis is back.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import re
import secrets
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..errors import RequestError, ScenarioError, StateUnavailable
from ..plan.matching import Scenarios, Sequences
from ..plan.schema import Scenario, parse_scenarios

if TYPE_CHECKING:
    from ..plan import Plan
    from .state import State

log = logging.getLogger("mockstream")

PROBE = 1.0  # s between pings while Redis is away
TIMEOUT = 1.0  # s a Redis call may take before the store counts as lost
BACKLOG = 10_000  # ended requests kept for the journal while Redis is away
CONNECTIONS = 8  # to Redis, per process


def install(app: web.Application, state: State, url: str, prefix: str, journal_size: int) -> None:
    """Keep the server's sequence positions, fault rolls, runtime scenarios and journal in Redis at `url`."""
    from .detail import summary

    store = state.shared = SharedState(url, prefix, state.settings.seed, journal_size)
    state.sequences = SharedSequences()
    state.rolls = SharedRolls()
    pid = os.getpid()
    state.journal.listeners.append(lambda entry: store.ended({**summary(entry, state), "pid": pid}))

    async def connect(app: web.Application) -> None:
        await store.connect()

    async def close(app: web.Application) -> None:
        await store.close()

    app.on_startup.append(connect)
    app.on_cleanup.append(close)


async def planned(state: State, plan: Callable[[], Plan | None]) -> Plan | None:
    """`plan()` with the state in Redis: the runtime scenarios brought up to date first, then each sequence
    step and fault roll the planner asks for taken from the store, planning again with it."""
    store, sequences, rolls = state.shared, state.sequences, state.rolls
    assert store is not None and isinstance(sequences, SharedSequences) and isinstance(rolls, SharedRolls)
    await store.refresh(state)
    steps: dict[tuple, int] = {}
    roll: float | None = None
    while True:
        sequences.known, rolls.known = steps, roll  # the planner runs without awaiting: this request's alone
        try:
            return plan()
        except NeedStep as need:
            steps[need.key] = await store.step(need.key)
        except NeedRoll:
            roll = await store.roll()
        finally:
            sequences.known, rolls.known = {}, None


class NeedStep(Exception):
    """The planner needs this sequence step from the store (see `SharedSequences`)."""

    def __init__(self, key: tuple):
        super().__init__(key)
        self.key = key


class NeedRoll(Exception):
    """The planner needs a fault roll from the store (see `SharedRolls`)."""


class SharedSequences(Sequences):
    """Sequences whose steps come from the store: the handler fetches each step the planner asks for (it
    raises NeedStep) and plans again. The planner runs without awaiting, so `known` is this request's alone."""

    def __init__(self) -> None:
        super().__init__()
        self.known: dict[tuple, int] = {}

    def step(self, key: tuple, length: int, cycle: bool) -> int:
        if key not in self.known:
            raise NeedStep(key)
        count = self.known[key]
        return count % length if cycle else min(count, length - 1)

    def reset(self) -> None:
        self.known = {}


class SharedRolls(random.Random):
    """Fault rolls from the store, the same way (raises NeedRoll when this request has none yet)."""

    known: float | None = None

    def random(self) -> float:
        if self.known is None:
            raise NeedRoll()
        return self.known

    def seed(self, a: Any = None, version: int = 2) -> None:
        self.known = None


class SharedState:
    """The Redis side of a server's state."""

    def __init__(self, url: str, prefix: str, seed: int, journal_size: int):
        import redis.asyncio as redis  # only a server with `--state redis://` needs it

        self.url = _shown(url)  # as messages name it: without a password
        self.prefix = prefix
        self.seed = seed
        self.journal_size = journal_size
        # A few connections, shared: a burst of requests must not open one connection each
        pool = redis.BlockingConnectionPool.from_url(
            url, max_connections=CONNECTIONS, timeout=TIMEOUT, socket_connect_timeout=TIMEOUT, socket_timeout=TIMEOUT
        )
        self.client = redis.Redis(connection_pool=pool)
        self.error: str | None = None  # why the store is unreachable (None: it answers)
        self._epoch: Any = b"unread"  # the runtime scenarios' version last read
        self._draws = random.Random(seed)  # the seed's rolls, drawn as far as the counter has gone
        self._drawn = 0
        self._backlog: deque[str] = deque(maxlen=BACKLOG)  # journal entries not written yet
        self._probe: asyncio.Task | None = None
        # Reading the epoch: requests that arrive while one read is on its way share the next one
        self._asked = 0  # reads asked for
        self._read = 0  # reads done (each covers every request that asked before it began)
        self._waiting: list[tuple[int, asyncio.Future]] = []
        self._reader: asyncio.Task | None = None
        self._writes: set[asyncio.Task] = set()

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    # ---- the store's health
    async def connect(self) -> None:
        """Reach Redis once at start: a server that cannot is told why, naming the URL."""
        try:
            await self.client.ping()
        except Exception as exc:
            raise StateUnavailable(f"--state {self.url}: cannot reach Redis ({_reason(exc)})") from None

    async def close(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
        for task in list(self._writes):
            await asyncio.gather(task, return_exceptions=True)
        await self.client.aclose()

    def _lost(self, exc: BaseException) -> RequestError:
        if self.error is None:
            log.warning("state store %s unreachable: %s", self.url, _reason(exc))
        self.error = f"the state store {self.url} is unreachable ({_reason(exc)})"
        if self._probe is None or self._probe.done():
            self._probe = asyncio.get_running_loop().create_task(self._wait_for_store())
        return RequestError(
            503,
            f"mockstream's state store ({self.url}) is unreachable: this request needs it (a sequence step or "
            f"a fault roll). It answers again once Redis is back.",
            None,
            "state_unavailable",
            "server_error",
        )

    def _found(self) -> None:
        if self.error is not None:
            log.warning("state store %s reachable again", self.url)
            self.error = None
            if self._backlog:
                self._spawn(self._flush())

    async def _wait_for_store(self) -> None:
        while self.error is not None:
            await asyncio.sleep(PROBE)
            try:
                await self.client.ping()
            except Exception:
                continue
            self._found()

    # ---- planning: read before a request is planned
    async def refresh(self, state: State) -> None:
        """Take up the runtime scenarios other workers added, replaced or reset since this request arrived.

        One GET of the epoch key when nothing changed, shared: requests that arrive while a read is on its way
        wait for the next read, which begins after they arrived (so none misses a change made before it), and
        a burst of a thousand requests costs a few reads, not a thousand. While the store is away, nothing is
        read (the scenarios known last answer) until the probe finds it again."""
        if self.error is not None:
            return
        self._asked += 1
        asked = self._asked
        future = asyncio.get_running_loop().create_future()
        self._waiting.append((asked, future))
        if self._reader is None or self._reader.done():
            self._reader = asyncio.get_running_loop().create_task(self._read_epochs(state))
        await future

    async def _read_epochs(self, state: State) -> None:
        while self._read < self._asked:
            covers = self._asked  # every request that asked before this read begins
            await self._read_epoch(state)
            self._read = covers
            still = []
            for asked, future in self._waiting:
                if asked <= covers:
                    if not future.done():
                        future.set_result(None)
                else:
                    still.append((asked, future))
            self._waiting = still

    async def _read_epoch(self, state: State) -> None:
        try:
            epoch = await self.client.get(self.key("scenarios", "epoch"))
            if epoch != self._epoch:
                stored = await self.client.hgetall(self.key("scenarios"))
                epoch = await self.client.get(self.key("scenarios", "epoch"))
                self._adopt(state, stored)
                self._epoch = epoch
        except Exception as exc:  # the scenarios known last go on answering
            self._lost(exc)
            return
        self._found()

    def _adopt(self, state: State, stored: dict[Any, Any]) -> None:
        runtime: list[Scenario] = []
        for name, text in sorted(stored.items()):
            try:
                runtime.extend(parse_scenarios(json.loads(text), f"runtime scenario {name!r}"))
            except (ValueError, ScenarioError) as exc:  # checked when posted: only a foreign writer gets here
                log.warning("runtime scenario %r in %s is not valid: %s", name, self.url, exc)
        scenarios = Scenarios(state.loaded)
        scenarios.fallback = state.scenarios.fallback
        for scenario in runtime:
            scenarios.add(scenario)
        state.scenarios = scenarios

    async def step(self, key: tuple) -> int:
        """Take the next step of a sequence: how many calls took one before this one."""
        try:
            count = await self.client.incr(self.key("sequence", json.dumps(key, default=str)))
        except Exception as exc:
            raise self._lost(exc) from None
        self._found()
        return int(count) - 1

    async def roll(self) -> float:
        """The next fault roll: the n-th draw of the server seed's generator, n counted in the store."""
        try:
            count = int(await self.client.incr(self.key("rolls")))
        except Exception as exc:
            raise self._lost(exc) from None
        self._found()
        if count <= self._drawn:  # the counter restarted (a reset): draw again from the start
            self._draws.seed(self.seed)
            self._drawn = 0
        value = 0.0
        while self._drawn < count:
            value = self._draws.random()
            self._drawn += 1
        return value

    # ---- the admin API
    async def add_scenarios(self, documents: Iterable[tuple[str, dict[str, Any]]]) -> None:
        """Keep runtime scenarios (name, the JSON posted) for every worker; a new epoch tells them."""
        mapping: dict[Any, Any] = {name: json.dumps(document, ensure_ascii=False) for name, document in documents}
        epoch = secrets.token_hex(8).encode()
        try:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.hset(self.key("scenarios"), mapping=mapping)
                pipe.set(self.key("scenarios", "epoch"), epoch)
                await pipe.execute()
        except Exception as exc:
            raise self._lost(exc) from None
        self._epoch = b"unread"  # this worker too reads them all back at its next request (others' included)
        self._found()

    async def reset(self) -> None:
        """Forget everything under the prefix: journal, sequence positions, rolls, runtime scenarios (each
        worker takes that up at its next request)."""
        try:
            keys = [key async for key in self.client.scan_iter(match=_glob_escaped(self.prefix) + "*", count=1000)]
            if keys:
                await self.client.delete(*keys)
        except Exception as exc:
            raise self._lost(exc) from None
        self._backlog.clear()
        self._epoch = b"unread"
        self._found()

    # ---- the journal
    def ended(self, summary: dict[str, Any]) -> None:
        """An ended request for the shared journal (written in the background; kept while Redis is away)."""
        self._backlog.append(json.dumps(summary, ensure_ascii=False, default=str))
        if self.error is None and len(self._backlog) == 1:
            self._spawn(self._flush())

    async def _flush(self) -> None:
        backlog = self._backlog
        key = self.key("journal")
        while backlog:
            batch = list(backlog)
            try:
                async with self.client.pipeline(transaction=False) as pipe:
                    for text in batch:
                        pipe.xadd(key, {"e": text}, maxlen=self.journal_size, approximate=False)
                    await pipe.execute()
            except Exception as exc:
                self._lost(exc)
                return
            for _ in batch:
                backlog.popleft()

    async def journal(self) -> list[dict[str, Any]]:
        """Every worker's ended requests, by arrival."""
        try:
            rows: Any = await self.client.xrange(self.key("journal"))
        except Exception as exc:
            raise self._lost(exc) from None
        self._found()
        entries = [json.loads(fields[b"e"]) for _, fields in rows]
        entries.sort(key=lambda entry: entry.get("time") or 0)
        return entries

    async def clear_journal(self) -> None:
        try:
            await self.client.delete(self.key("journal"))
        except Exception as exc:
            raise self._lost(exc) from None

    def _spawn(self, coroutine: Any) -> None:
        try:
            task = asyncio.get_running_loop().create_task(coroutine)
        except RuntimeError:  # no loop running (closing): nothing to write with
            coroutine.close()
            return
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)


def _shown(url: str) -> str:
    """The URL without the password it may carry (`redis://:secret@host` -> `redis://***@host`)."""
    return re.sub(r"^([a-z]+://)[^@/]*@", r"\1***@", url)


def _glob_escaped(text: str) -> str:
    """`text` matched literally by Redis's glob patterns (SCAN MATCH)."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0]
