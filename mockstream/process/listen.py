"""Listen: take every connection waiting on the socket at once, then let them in at a pace the streams allow.

libuv, and so uvloop, accepts one connection per pass of its loop (libuv/libuv#3696). A server busy with
thousands of paced streams makes each pass last milliseconds, and a burst of new clients then waits in the
kernel's queue for seconds (2000 clients ramped over 0.5 s got their headers at about 300 per second, and
a third of their streams could not finish in time). The stdlib loop accepts up to `backlog` connections per
wake-up; `AcceptingSite` does the same on any loop, and decides itself when each connection is set up.

Letting connections in is the cheap part: the handler work of their requests (a few hundred microseconds
each) comes later, in the pass after their bytes arrive, and every running stream waits for it. So the
listener also bounds how many connections are on their way in at once (`Arrivals`).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections import deque
from collections.abc import Callable

from aiohttp import web

from ..server.aiohttp_private import set_site_server, site_backlog, site_factory

log = logging.getLogger("mockstream")

ADMIT = 8  # connections set up per pass of the loop (about 4 ms of handler work)
MAX_WAIT = 1.5  # s a new connection waits at most while the streams already running come first
ON_THEIR_WAY = 16  # connections let in whose first request has not begun, at most (see Arrivals)
FIRST_REQUEST_WAIT = 0.5  # s a connection let in counts as on its way at most (a client that says nothing)
WINDOW_FULL_RETRY = 0.001  # s between looks at a full window (a busy loop looks every pass anyway)
PAUSE_WHEN_OUT_OF_FILES = 1.0  # s without accepting when the process has no file descriptor left (as asyncio)
_OUT_OF_RESOURCES = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


class Arrivals:
    """Connections let in whose first request has not begun: all their handler work is still ahead.

    The requests of a burst of new clients arrive together and are handled back to back in the loop's next
    pass, while every running stream waits: ADMIT per pass over a few quick passes is dozens of requests,
    tens of milliseconds. The listener lets new connections in only while fewer than ON_THEIR_WAY are on
    their way, so the running streams wait a few milliseconds at a time. The handler says when a request
    begins; a connection that sends nothing for FIRST_REQUEST_WAIT stops counting."""

    def __init__(self) -> None:
        self._since: dict[asyncio.BaseProtocol, float] = {}  # protocol -> when it was set up, oldest first

    def arrived(self, protocol: asyncio.BaseProtocol, now: float) -> None:
        self._since[protocol] = now

    def begun(self, protocol: asyncio.BaseProtocol) -> None:
        """A request began on `protocol`'s connection (a no-op after its first)."""
        self._since.pop(protocol, None)

    def on_their_way(self, now: float) -> int:
        since = self._since
        while since:
            oldest = next(iter(since))
            if now - since[oldest] < FIRST_REQUEST_WAIT:
                break
            del since[oldest]
        return len(since)


class Listener:
    """The listening sockets of a site: the part of `asyncio.Server` a site uses, accepting in batches.

    Accepted connections wait in a queue to be set up, ADMIT per pass of the loop. While `busy()` (the
    pacer writes late) they trickle in instead, spread over the time left until the oldest has waited
    MAX_WAIT: a burst of new clients then delays its own first bytes rather than every stream already
    running, the way a loaded LLM server queues new requests, and no client waits long. And at most
    ON_THEIR_WAY connections are on their way in at once (see `Arrivals`)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sockets: list[socket.socket],
        factory: Callable,
        batch: int,
        busy: Callable[[], bool] = lambda: False,
        arrivals: Arrivals | None = None,
    ):
        self._loop = loop
        self._sockets = sockets
        self._factory = factory
        self._batch = batch
        self._busy = busy
        self._arrivals = arrivals if arrivals is not None else Arrivals()
        self._waiting: deque[tuple[float, socket.socket]] = deque()
        self._admitting = False  # an admission pass is scheduled
        self._last_pass = loop.time()
        self._connecting: set[asyncio.Task] = set()
        for sock in sockets:
            loop.add_reader(sock.fileno(), self._accept, sock)

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return tuple(self._sockets)

    def close(self) -> None:
        for sock in self._sockets:
            self._loop.remove_reader(sock.fileno())
            sock.close()
        self._sockets = []
        while self._waiting:
            self._waiting.popleft()[1].close()
        for task in self._connecting:
            task.cancel()

    async def wait_closed(self) -> None:
        return None

    def _accept(self, listening: socket.socket) -> None:
        now = self._loop.time()
        for _ in range(self._batch):
            try:
                conn, _ = listening.accept()
            except (BlockingIOError, InterruptedError):
                break
            except ConnectionAbortedError:  # the client left before we took it: take the next one
                continue
            except OSError as exc:
                if exc.errno not in _OUT_OF_RESOURCES:
                    raise
                log.error("cannot accept connections for %.0f s: %s", PAUSE_WHEN_OUT_OF_FILES, exc)
                self._loop.remove_reader(listening.fileno())
                self._loop.call_later(PAUSE_WHEN_OUT_OF_FILES, self._resume, listening)
                break
            conn.setblocking(False)
            self._waiting.append((now, conn))
        if not self._admitting:
            self._last_pass = now
            self._admit()

    def _admit(self) -> None:
        """Set up the connections whose turn it is; come back next pass while some wait."""
        waiting = self._waiting
        now = self._loop.time()
        elapsed = now - self._last_pass
        if self._busy() and waiting:
            # Streams run late: spread the waiting connections over the time left before the oldest has
            # waited MAX_WAIT, one per pass at least.
            left = max(MAX_WAIT - (now - waiting[0][0]), elapsed, 1e-3)
            room = max(1, int(len(waiting) * elapsed / left))
        else:
            room = ADMIT
        self._last_pass = now
        room = min(room, ON_THEIR_WAY - self._arrivals.on_their_way(now))
        for _ in range(min(len(waiting), room)):
            conn = waiting.popleft()[1]
            protocol = self._factory()  # made here, not by the loop, to count as on its way from now on
            self._arrivals.arrived(protocol, now)
            task = self._loop.create_task(self._loop.connect_accepted_socket(_made(protocol), conn))
            self._connecting.add(task)
            task.add_done_callback(self._connected)
        self._admitting = bool(waiting)
        if waiting and room > 0:
            self._loop.call_soon(self._admit)
        elif waiting:
            self._loop.call_later(WINDOW_FULL_RETRY, self._admit)

    def _resume(self, listening: socket.socket) -> None:
        if listening in self._sockets:
            self._loop.add_reader(listening.fileno(), self._accept, listening)

    def _connected(self, task: asyncio.Task) -> None:
        self._connecting.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("could not set up an accepted connection: %s", task.exception())


def _made(protocol: asyncio.BaseProtocol) -> Callable[[], asyncio.BaseProtocol]:
    """A protocol factory that hands out the protocol already made."""
    return lambda: protocol


class AcceptingSite(web.BaseSite):
    """A TCP site like `web.TCPSite`, listening with a `Listener`; `busy()` says the streams run late, and
    the app's handlers tell `arrivals` when a request begins."""

    __slots__ = ("_arrivals", "_busy", "_host", "_port", "_reuse_port")

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        *,
        backlog: int,
        reuse_port: bool = False,
        busy: Callable[[], bool] = lambda: False,
        arrivals: Arrivals | None = None,
    ):
        super().__init__(runner, backlog=backlog)
        self._host = host
        self._port = port
        self._reuse_port = reuse_port
        self._busy = busy
        self._arrivals = arrivals

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        backlog = site_backlog(self)
        sockets = bind(self._host, self._port, backlog, self._reuse_port)
        loop = asyncio.get_running_loop()
        listener = Listener(loop, sockets, site_factory(self), backlog, self._busy, self._arrivals)
        set_site_server(self, listener)  # type: ignore[arg-type]  # it has what stop() calls: close, wait_closed


def bind(host: str, port: int, backlog: int, reuse_port: bool) -> list[socket.socket]:
    """Listening sockets on every address `host` names (as `loop.create_server` binds them)."""
    sockets: list[socket.socket] = []
    try:
        seen = set()
        found = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        for family, _, _, _, address in found:
            if (family, address) in seen:
                continue
            seen.add((family, address))
            sock = socket.create_server(address, family=family, backlog=backlog, reuse_port=reuse_port)
            sock.setblocking(False)
            sockets.append(sock)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets
