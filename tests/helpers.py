"""Helpers shared by the test modules (imported as `from helpers import ...`, as `wire` is: pytest puts this
folder on `sys.path`, since it has no `__init__.py`). Fixtures live in `conftest.py`; reading a dialect's
stream off the socket lives in `wire.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import httpx
import pytest

from mockstream.testing import MockServer

T = TypeVar("T")

# the console script of the venv that runs the tests
MOCKSTREAM = str(Path(sys.executable).with_name("mockstream"))


# ---------------------------------------------------------------- tools a test needs ---
def unavailable(reason: str) -> NoReturn:
    """A system tool the test needs is missing (`reason` says which and how to install it): a skip on a
    developer's machine, a failure under `CI=true`, where `.ci/run` installs every tool."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true, so every test must run, but {reason}", pytrace=False)
    pytest.skip(reason)


# ---------------------------------------------------------------- processes and ports ---
def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_env(**variables: str) -> dict[str, str]:
    """This process's environment without any MOCKSTREAM_* setting (nor an import-time profile), plus
    `variables`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOCKSTREAM_") and k != "PYTHONPROFILEIMPORTTIME"}
    env.update(variables)
    return env


def wait_until(condition: Callable[[], Any], timeout: float = 5.0, step: float = 0.02) -> bool:
    """Poll `condition` until it holds (True) or `timeout` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(step)
    return True


# ---------------------------------------------------------------- `mockstream serve` as a process ---
URL_LINE = re.compile(r"listening on (http://127\.0\.0\.1:(\d+))\b")


@dataclass
class Server:
    process: subprocess.Popen
    url: str
    port: int
    out: Path  # stdout: the start line, then the access log
    err: Path

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def stdout_lines(self) -> list[str]:
        return self.out.read_text(encoding="utf-8").splitlines()

    def access_lines(self) -> list[str]:
        return self.stdout_lines()[1:]

    def stderr(self) -> str:
        return self.err.read_text(encoding="utf-8", errors="replace")

    def signal_and_time(self, signum: int = signal.SIGTERM, timeout: float = 15) -> tuple[int, float]:
        """Send `signum`; the exit code and how long the process took to exit."""
        start = time.monotonic()
        self.process.send_signal(signum)
        code = self.process.wait(timeout=timeout)
        return code, time.monotonic() - start


@contextlib.contextmanager
def serve(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[Server]:
    """`mockstream serve ARGS` with stdout and stderr in files; killed at the end if still running."""
    stamp = time.monotonic_ns()
    out, err = tmp_path / f"out-{stamp}.log", tmp_path / f"err-{stamp}.log"
    with out.open("w") as stdout, err.open("w") as stderr:
        process = subprocess.Popen([MOCKSTREAM, "serve", *args], stdout=stdout, stderr=stderr, text=True,
                                   env=env if env is not None else clean_env())
    try:
        def started() -> bool:
            return process.poll() is not None or bool(URL_LINE.search(out.read_text(encoding="utf-8")))

        assert wait_until(started, timeout=30), f"no start line within 30 s; stderr: {err.read_text()[-2000:]}"
        found = URL_LINE.search(out.read_text(encoding="utf-8"))
        assert found and process.poll() is None, f"serve did not start: {err.read_text()[-2000:]}"
        yield Server(process, found[1], int(found[2]), out, err)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


# ---------------------------------------------------------------- an in-process server ---
def on_loop(server: MockServer, fn: Callable[[], T]) -> T:
    """Run `fn()` on the server's own event loop (its thread) and return its result."""
    return server.call(fn)


def open_tasks(server: MockServer) -> int:
    """The tasks alive on the server's loop."""
    return on_loop(server, lambda: len(asyncio.all_tasks()))


# ---------------------------------------------------------------- http ---
def plain_http(**options: Any) -> httpx.Client:
    """A client for plain http on localhost: no CA bundle to load (that costs ~70 ms per client)."""
    return httpx.Client(**{"timeout": 10, "verify": False, **options})


def journal(server: MockServer, **filters: str) -> list[dict[str, Any]]:
    """The journal through the admin API (`GET /_mockstream/requests`), oldest first."""
    with plain_http() as http:
        response = http.get(f"{server.url}/_mockstream/requests", params=filters)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    return response.json()


def settled(server: MockServer, count: int = 1, timeout: float = 5.0) -> list[dict[str, Any]]:
    """The journal once `count` entries have ended (a server finishes its side a moment after the client)."""
    deadline = time.monotonic() + timeout
    while True:
        entries = journal(server)
        if sum(e["outcome"] != "in_progress" for e in entries) >= count or time.monotonic() > deadline:
            return entries
        time.sleep(0.02)


# ---------------------------------------------------------------- SDK clients ---
def openai_sdk(server: MockServer, **options: Any):
    """openai-python's sync client on the server: no retries, 10 s timeout unless told, no CA bundle."""
    import openai

    options = {"api_key": "sk-test", "max_retries": 0, "timeout": 10, **options}
    return openai.OpenAI(base_url=server.base_url, http_client=openai.DefaultHttpxClient(verify=False), **options)


def async_openai_sdk(server: MockServer, **options: Any):
    import openai

    options = {"api_key": "sk-test", "max_retries": 0, "timeout": 10, **options}
    return openai.AsyncOpenAI(base_url=server.base_url, http_client=openai.DefaultAsyncHttpxClient(verify=False),
                              **options)


def anthropic_sdk(server: MockServer, **options: Any):
    """The anthropic SDK's sync client on the server (its base URL has no /v1)."""
    import anthropic

    options = {"api_key": "sk-ant-test", "max_retries": 0, "timeout": 10, **options}
    return anthropic.Anthropic(base_url=server.url, http_client=anthropic.DefaultHttpxClient(verify=False), **options)


def async_anthropic_sdk(server: MockServer, **options: Any):
    import anthropic

    options = {"api_key": "sk-ant-test", "max_retries": 0, "timeout": 10, **options}
    return anthropic.AsyncAnthropic(base_url=server.url,
                                    http_client=anthropic.DefaultAsyncHttpxClient(verify=False), **options)
