"""`mockstream serve` as a service: listen (one process or `--workers`), then stop on SIGTERM/SIGINT with a drain.

The drain: stop accepting at once, close idle keep-alive connections, let requests in flight finish for up to
the grace period, then cancel what is left and exit. It waits on the API handlers the app counts as in
flight and cancels them itself, rather than leaning on aiohttp's `shutdown_timeout`: measured on aiohttp
3.14, that timeout is spent twice (its cancel only fails the request's payload, so a streaming handler goes on
until the second wait ends: 5 s took 10 s), is rounded up to whole seconds above 5 s, and 0 waits forever.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

from aiohttp import web

from .. import __version__
from ..errors import StateUnavailable
from ..server import create_app
from ..server.access_log import AccessLog
from ..server.direct import DIRECT_ROUTES, route_directly
from ..server.state import InFlight, State
from .collector import IdleCollector
from .listen import AcceptingSite, Arrivals
from .logs import announce
from .workers import metrics_dir, reserve, supervise

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
CUT_TIMEOUT = 0.25  # after the grace period: how long a cancelled handler may take to journal its ending
# Connections the kernel queues before we accept them. aiohttp's default (128) overflows when a load test
# opens thousands of streams at once: the dropped SYNs come back 1 s and 3 s later, late by seconds.
BACKLOG = 4096
WORKER_HEADER = "x-mockstream-worker"


class Drain:
    """Waits for the API requests in flight to finish, and cuts them when the grace period runs out."""

    POLL = 0.01  # s between two looks at the requests in flight

    def __init__(self, in_flight: InFlight) -> None:
        self.in_flight = in_flight

    async def wait(self, grace: float) -> bool:
        """True when every request in flight ended within `grace` seconds; else cancel the rest (they
        journal how they ended) and give them CUT_TIMEOUT to do so."""
        if await self._settled(grace):
            return True
        self.in_flight.cut = True
        for task in list(self.in_flight.tasks):
            task.cancel()
        await self._settled(CUT_TIMEOUT)
        return False

    async def _settled(self, seconds: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while self.in_flight.tasks:
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(self.POLL)
        return True


async def _worker_header(request: web.Request, response: web.StreamResponse) -> None:
    """The worker pid on the answers that are not the API's (those carry it from the start)."""
    if WORKER_HEADER not in response.headers:
        response.headers[WORKER_HEADER] = str(os.getpid())


async def run(
    app: web.Application,
    host: str,
    port: int,
    *,
    grace: float = 5.0,
    reuse_port: bool = False,
    access_log: Any = None,
    aiohttp_log: bool = False,
    on_ready: Callable[[str, int], None] = lambda host, port: None,
    parent: int | None = None,
) -> None:
    """Serve `app` until SIGINT or SIGTERM (or until the process `parent` is gone), then drain and stop.

    `access_log` is an `AccessLog` or None; `aiohttp_log` also turns on aiohttp's own access log
    (Python logging, stderr). `on_ready(host, port)` runs once the socket listens."""
    state = State.of(app)
    drain = Drain(state.in_flight)
    state.settings.headers[WORKER_HEADER] = str(os.getpid())
    app.on_response_prepare.append(_worker_header)
    app[DIRECT_ROUTES].needless.append(_worker_header)  # an API answer carries the header from the start
    if access_log is not None:
        state.journal.listeners.append(access_log.ended)  # API requests: once their journal entry closes
        also = web.AccessLogger(web.access_logger, web.AccessLogger.LOG_FORMAT) if aiohttp_log else None
        logger_options: dict[str, Any] = {"access_log_class": access_log.for_aiohttp(also)}
    else:
        logger_options = {"access_log": web.access_logger if aiohttp_log else None}
    # No SO_KEEPALIVE probes (two system calls per connection): aiohttp closes idle connections itself.
    runner = web.AppRunner(
        app, handler_cancellation=True, shutdown_timeout=CUT_TIMEOUT, tcp_keepalive=False, **logger_options
    )
    # Signals are handled before anyone learns the address: a supervisor may send SIGTERM as soon as it does.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # a worker is born with them blocked
    if parent is not None:
        _watch_parent(loop, parent, stop)
    await runner.setup()
    route_directly(runner)
    collector: IdleCollector | None = None
    try:
        pacer = state.pacer
        state.arrivals = arrivals = Arrivals()
        site = AcceptingSite(
            runner, host, port, reuse_port=reuse_port, backlog=BACKLOG, busy=lambda: pacer.behind, arrivals=arrivals
        )
        await site.start()
        bound_host, bound_port = runner.addresses[0][:2]
        # What lives as long as the server (modules, scenarios, the app) leaves the collector's sight: a full
        # collection then scans only what requests made (one took 56 ms among 1000 streams, a pause all see),
        # and it runs while no request is in flight.
        gc.freeze()
        in_flight = state.in_flight.tasks
        collector = IdleCollector(loop, idle=lambda: not in_flight)
        on_ready(bound_host, bound_port)
        await stop.wait()
        await site.stop()  # stop accepting
        # close idle keep-alive connections; busy ones close after their answer (aiohttp >= 3.10)
        getattr(runner.server, "pre_shutdown", lambda: None)()
        await drain.wait(grace)
    finally:
        await runner.cleanup()  # closes the connections (anything still running gets CUT_TIMEOUT), on_cleanup
        if collector is not None:
            collector.close()
        if access_log is not None:
            access_log.flush()  # the lines of the requests that ended last


def _watch_parent(loop: asyncio.AbstractEventLoop, parent: int, stop: asyncio.Event) -> None:
    """A worker whose supervisor died (SIGKILL) stops by itself instead of serving on as an orphan."""

    def check() -> None:
        if os.getppid() != parent:
            stop.set()
        else:
            loop.call_later(1.0, check)

    loop.call_later(1.0, check)


# ---------------------------------------------------------------- `mockstream serve` ---
def start(scenarios: list, options: dict[str, Any]) -> int:
    """Serve with the options of `mockstream serve` (flag names as keys): one process, or `--workers` of them."""
    if options["workers"] == 1:
        return serve_one(scenarios, options, lambda host, port: announce_start(options, host, port, len(scenarios)))
    return serve_many(scenarios, options)


def announce_start(
    options: dict[str, Any], host: str, port: int, loaded: int, workers: list[int] | None = None
) -> None:
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}"
    several = f", {len(workers)} workers" if workers else ""
    announce(
        f"mockstream {__version__} listening on {url} (base_url {url}/v1, {loaded} scenarios loaded{several})",
        options["log_format"],
        url=url,
        base_url=f"{url}/v1",
        scenarios=loaded,
        workers=workers or [os.getpid()],
    )


def serve_one(
    scenarios: list,
    options: dict[str, Any],
    on_ready: Callable[[str, int], None],
    reuse_port: bool = False,
    parent: int | None = None,
    worker: tuple[int, int] | None = None,
) -> int:
    """One server process (the only one, or `worker` (number, count) of `--workers`): exit code 0 after a
    drain, 1 if it cannot listen."""
    app = create_app(
        scenarios,
        seed=options["seed"],
        speed=options["speed"],
        journal_size=options["journal_size"],
        cors_origins=options["cors_origin"],
        routes=dict(options["route"]),
        static=options["static"],
        read_timeout=options["read_timeout"],
        strict=options.get("strict", False),
        on_miss=options.get("on_miss", "default"),
        record_all=options.get("record_all", False),
        admin=options.get("admin", True),
        metrics=options.get("metrics", False),
        multiprocess_dir=options.get("metrics_dir"),
        state=options.get("state", "memory"),
        state_prefix=options.get("state_prefix", "mockstream:"),
    )
    if worker is not None:
        State.of(app).worker, State.of(app).workers = worker
    if options.get("upstream"):
        from ..record import attach

        attach(
            app,
            options["upstream"],
            options["out"],
            redact=options["redact"],
            timeout=options["upstream_timeout"],
        )
    try:
        import uvloop
    except ImportError:
        runner: Callable = asyncio.run
    else:
        runner = uvloop.run
    service = run(
        app,
        options["host"],
        options["port"],
        grace=options["shutdown_grace"],
        reuse_port=reuse_port,
        access_log=AccessLog(options["log_format"]) if options["access_log"] else None,
        aiohttp_log=options["log_level"] == "debug",
        on_ready=on_ready,
        parent=parent,
    )
    try:
        runner(service)
    except StateUnavailable as exc:  # the shared state's store did not answer at start: before the start line
        print(f"mockstream: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(
            f"mockstream: cannot listen on {options['host']}:{options['port']}: {exc.strerror or exc}", file=sys.stderr
        )
        return 1
    return 0


# ---------------------------------------------------------------- `mockstream record` ---
# What `mockstream record` leaves as `mockstream serve` would have it: no scenarios, one process, no pacing.
RECORD_SETTINGS = {
    "seed": 0,
    "speed": 1.0,
    "static": None,
    "workers": 1,
    "strict": False,
    "on_miss": "proxy",
    "record_all": True,
}


def record(options: dict[str, Any]) -> int:
    """`mockstream record`: the server with no scenarios, every API request forwarded to the upstream and
    recorded in `--out`."""
    options = {**RECORD_SETTINGS, **options}

    def ready(host: str, port: int) -> None:
        shown = f"[{host}]" if ":" in host else host
        url = f"http://{shown}:{port}"
        out = os.path.abspath(options["out"])
        announce(
            f"mockstream {__version__} listening on {url} (base_url {url}/v1), recording {options['upstream']} "
            f"to {out}",
            options["log_format"],
            url=url,
            base_url=f"{url}/v1",
            upstream=options["upstream"],
            out=out,
        )

    return serve_one([], options, ready)


def serve_many(scenarios: list, options: dict[str, Any]) -> int:
    """`--workers N`: the supervisor reserves the port, forks the workers and waits for them."""
    try:
        reserved = reserve(options["host"], options["port"])
    except OSError as exc:
        print(
            f"mockstream: cannot listen on {options['host']}:{options['port']}: {exc.strerror or exc}", file=sys.stderr
        )
        return 1
    host, port = reserved.getsockname()[:2]
    supervisor = os.getpid()
    count = options["workers"]

    def work(number: int, ready_fd: int) -> int:
        reserved.close()

        def ready(host: str, port: int) -> None:
            os.write(ready_fd, b"1")
            os.close(ready_fd)

        settings = {**options, "port": port, "metrics_dir": directory}
        return serve_one(scenarios, settings, ready, reuse_port=True, parent=supervisor, worker=(number, count))

    def all_ready(pids: list[int]) -> None:
        reserved.close()
        announce_start(options, host, port, len(scenarios), pids)

    try:
        with metrics_dir(options.get("metrics", False)) as directory:
            return supervise(count, work, all_ready)
    finally:
        reserved.close()
