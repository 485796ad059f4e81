"""The listener: a burst of new connections is taken at once, and waits its turn while streams run late or
while earlier connections have not begun their requests."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time

import pytest

from mockstream.process import listen
from mockstream.process.listen import Arrivals, Listener, bind


class Counted(asyncio.Protocol):
    made: list[asyncio.BaseTransport]
    arrivals: Arrivals | None = None  # told at once that a request began (else it never begins)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.made.append(transport)
        if self.arrivals is not None:
            self.arrivals.begun(self)


@contextlib.asynccontextmanager
async def _burst(count: int, arrivals: Arrivals, *, begin_at_once: bool, busy: bool = False):
    """A Listener with `count` clients connecting at once; yields the transports set up so far. Their
    requests begin as they are set up (`begin_at_once`), or never."""
    loop = asyncio.get_running_loop()
    made: list[asyncio.BaseTransport] = []
    protocol = type("P", (Counted,), {"made": made, "arrivals": arrivals if begin_at_once else None})
    sockets = bind("127.0.0.1", 0, 4096, False)
    listener = Listener(loop, sockets, protocol, 4096, busy=lambda: busy, arrivals=arrivals)
    clients = [socket.create_connection(("127.0.0.1", sockets[0].getsockname()[1])) for _ in range(count)]
    try:
        yield made
    finally:
        listener.close()
        for transport in made:
            transport.close()
        for client in clients:
            client.close()


async def _passes_until_all_connected(count: int, busy: bool, pass_s: float) -> tuple[int, float, list[int]]:
    """Open `count` connections at once to a Listener on a loop whose every pass costs `pass_s`; return the
    passes and the seconds until all were set up, and how many were set up by each pass."""
    async with _burst(count, Arrivals(), begin_at_once=True, busy=busy) as made:
        started, passes, progress = time.monotonic(), 0, []
        while len(made) < count and passes < 5000:
            time.sleep(pass_s)  # the CPU other work (paced streams) takes in every pass
            await asyncio.sleep(0)
            passes += 1
            progress.append(len(made))
        return passes, time.monotonic() - started, progress


def test_a_burst_of_connections_is_taken_in_a_few_passes_of_a_busy_uvloop():
    """uvloop's own server takes one connection per pass of its loop: 300 passes for 300 clients."""
    uvloop = pytest.importorskip("uvloop")
    passes, _, _ = uvloop.run(_passes_until_all_connected(300, busy=False, pass_s=0.002))
    assert passes <= 300 // listen.ADMIT + 10, passes


def test_while_streams_run_late_new_connections_trickle_in_yet_none_waits_past_max_wait(monkeypatch):
    monkeypatch.setattr(listen, "MAX_WAIT", 0.4)
    passes, took, progress = asyncio.run(_passes_until_all_connected(200, busy=True, pass_s=0.002))
    assert progress[0] <= 20, progress[:10]  # the first pass takes a few, not a batch of ADMIT or all
    assert took < 0.4 + 0.3, (took, progress[-10:])
    assert passes > 200 // listen.ADMIT + 10, passes  # spread out, not taken in batches


async def test_connections_wait_while_too_many_are_on_their_way_in(monkeypatch):
    """A burst of clients is let in ON_THEIR_WAY at a time: the next wait until requests begin (their handler
    work is done) or the ones on their way have said nothing for FIRST_REQUEST_WAIT."""
    monkeypatch.setattr(listen, "ON_THEIR_WAY", 5)
    monkeypatch.setattr(listen, "FIRST_REQUEST_WAIT", 0.6)
    arrivals = Arrivals()
    async with _burst(12, arrivals, begin_at_once=False) as made:
        await asyncio.sleep(0.1)
        assert len(made) == 5  # none has begun a request: the window is full
        for transport in made[:3]:
            arrivals.begun(transport.get_protocol())  # type: ignore[arg-type]
        await asyncio.sleep(0.05)
        assert len(made) == 8  # three requests began: three more let in
        deadline = time.monotonic() + 3
        while len(made) < 12 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert len(made) == 12  # clients that never send a request stop holding the window


def test_bind_names_the_address_in_use():
    taken = bind("127.0.0.1", 0, 16, False)
    try:
        port = taken[0].getsockname()[1]
        with pytest.raises(OSError) as failure:
            bind("127.0.0.1", port, 16, False)
        assert str(port) in str(failure.value)
    finally:
        for sock in taken:
            sock.close()
