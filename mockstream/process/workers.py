"""`mockstream serve --workers N`: N processes, each a whole server, sharing one port through SO_REUSEPORT.

The kernel spreads new connections over the workers. The supervisor (the process you started) forks them,
prints the start line once all of them listen, passes SIGINT/SIGTERM on, and exits when they all have: 0 when
every worker drained cleanly. Each worker keeps its own journal, sequence positions and runtime scenarios,
unless `--state` names a Redis they share (server/shared.py). The metrics are shared either way: every
worker keeps its values in files in one directory (`metrics_dir`), so a scrape of any worker sees them all.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Callable, Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def reserve(host: str, port: int) -> socket.socket:
    """Bind (without listening) the address the workers will share, with SO_REUSEPORT as they will set it.

    Port 0 becomes one real port for all; an address held by another program fails here, before any fork.
    A socket that does not listen receives no connections, so holding it until the workers listen is safe."""
    found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = found[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


def supervise(count: int, work: Callable[[int, int], int], announce: Callable[[list[int]], None]) -> int:
    """Fork `count` workers running `work(number, ready_fd)` (number: 1 to count; it writes one byte to
    ready_fd once listening and returns an exit code); `announce(pids)` once all are ready. Returns the exit
    code of the whole."""
    read_end, write_end = os.pipe()
    pids: list[int] = []
    stopping: list[int] = []  # the signal that asked us to stop, if any

    def forward(signum: int, frame: object) -> None:
        stopping.append(signum)
        for pid in pids:
            _kill(pid, signum)

    sys.stdout.flush()
    sys.stderr.flush()
    # Blocked across the forks: a worker installs its own handlers before it unblocks them, and the
    # supervisor forwards only once it knows every worker.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    previous = {sig: signal.signal(sig, forward) for sig in STOP_SIGNALS}
    try:
        for number in range(1, count + 1):
            pid = os.fork()
            if pid == 0:  # the worker
                os.close(read_end)
                for sig in STOP_SIGNALS:
                    signal.signal(sig, signal.SIG_DFL)
                code = 1
                try:
                    code = work(number, write_end)
                finally:
                    sys.stdout.flush()
                    sys.stderr.flush()
                    os._exit(code)
            pids.append(pid)
    finally:
        os.close(write_end)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    try:
        ready = _wait_ready(read_end, count)
        if ready == count and not stopping:
            announce(pids)
        elif not stopping:
            forward(signal.SIGTERM, None)  # one worker could not start: stop the others
        return _reap(pids, forward)
    finally:
        os.close(read_end)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _wait_ready(read_end: int, count: int) -> int:
    """Each worker writes one byte when it listens and closes its end; EOF comes when all have (or died)."""
    ready = 0
    while ready < count:
        chunk = os.read(read_end, count)
        if not chunk:
            break
        ready += len(chunk)
    return ready


def _reap(pids: list[int], forward: Callable) -> int:
    codes: dict[int, int] = {}
    while len(codes) < len(pids):
        pid, status = os.waitpid(-1, 0)
        if pid not in pids:
            continue
        codes[pid] = code = os.waitstatus_to_exitcode(status)
        if code != 0 and len(codes) < len(pids):
            print(f"mockstream: worker {pid} exited with {code}; stopping the others", file=sys.stderr, flush=True)
            forward(signal.SIGTERM, None)
    bad = [code for code in codes.values() if code != 0]
    return 0 if not bad else (bad[0] if bad[0] > 0 else 1)


def _kill(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


# The variable prometheus_client reads, when first imported, to keep its values in files (multiprocess mode).
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"


@contextlib.contextmanager
def metrics_dir(wanted: bool) -> Iterator[str | None]:
    """A fresh directory for the workers' metrics files (None when metrics are off), named in the environment
    the workers inherit, so each worker's prometheus_client starts in multiprocess mode; removed, with the
    variable, once the workers are gone. Fresh each run: old files would add a previous run's counts."""
    if not wanted:
        yield None
        return
    directory = tempfile.mkdtemp(prefix="mockstream-metrics-")
    before = os.environ.get(MULTIPROCESS_ENV)
    os.environ[MULTIPROCESS_ENV] = directory
    try:
        yield directory
    finally:
        if before is None:
            os.environ.pop(MULTIPROCESS_ENV, None)
        else:
            os.environ[MULTIPROCESS_ENV] = before
        shutil.rmtree(directory, ignore_errors=True)
