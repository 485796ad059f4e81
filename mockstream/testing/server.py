"""A real mock server in a background thread, usable from any test runner, sync or async.

The server runs its own event loop in a daemon thread, so a plain sync test, an asyncio test and a
test on any other loop all reach it over a real socket.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from .. import server
from ..plan.schema import Scenario, load_scenarios
from ..server.journal import Entry
from ..server.state import State

__all__ = ["Entry", "MockHandle", "MockServer", "create_app"]


def create_app(scenarios: Iterable[Scenario] = (), *, speed: float = 0.0, **options: Any) -> web.Application:
    """The server's app for in-loop tests (pytest-aiohttp's `aiohttp_client`): like
    `mockstream.server.create_app`, but with no pacing delays unless a test asks for them."""
    return server.create_app(scenarios, speed=speed, **options)


T = TypeVar("T")


class MockServer:
    """`with MockServer() as server: OpenAI(base_url=server.base_url, api_key="x")`."""

    def __init__(
        self,
        scenarios: Iterable[Scenario] = (),
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int = 0,
        speed: float = 0.0,
        **app_options: Any,
    ):
        self.app = create_app(scenarios, seed=seed, speed=speed, **app_options)
        self.state = State.of(self.app)
        self.host = host
        self.port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def start(self) -> MockServer:
        if self._thread is not None:
            return self
        ready = threading.Event()
        failure: list[BaseException] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, args=(ready, failure), name="mockstream", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            self._thread = None
            raise failure[0]
        return self

    def _serve(self, ready: threading.Event, failure: list[BaseException]) -> None:
        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._start())
        except BaseException as exc:
            failure.append(exc)
            ready.set()
            loop.close()
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            if self._runner is not None:
                loop.run_until_complete(self._runner.cleanup())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _start(self) -> None:
        self._runner = web.AppRunner(self.app, handler_cancellation=True, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]

    def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the server's loop and return its result: the only safe way to touch server state."""
        if self._loop is None or self._thread is None:
            return fn()
        done = threading.Event()
        result: list[Any] = []

        def run() -> None:
            try:
                result.append((True, fn()))
            except BaseException as exc:
                result.append((False, exc))
            finally:
                done.set()

        self._loop.call_soon_threadsafe(run)
        done.wait()
        ok, value = result[0]
        if not ok:
            raise value
        return value

    def stop(self) -> None:
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._thread = None

    def __enter__(self) -> MockServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class MockHandle:
    """One test's view of a shared `MockServer`: script the next answers, read this test's requests.

    `reset()` (called before each test by the pytest fixture) clears the journal, sequence positions,
    fault rolls and whatever the previous test scripted.
    """

    def __init__(self, server: MockServer):
        self.server = server
        self._scripted: list[str] = []
        self._count = 0

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def script(self, scenario: Scenario | None = None, /, **knobs: Any) -> str:
        """Make every request of this test that names no scenario answer with these knobs (or this
        Scenario); returns the scenario's name, to pass as `X-Mockstream-Scenario` or knob `scenario`."""
        if scenario is None:
            self._count += 1
            scenario = Scenario.from_dict({"name": f"test-script-{self._count}", **knobs}, "script()")
        elif knobs:
            raise TypeError("script() takes a Scenario or knobs, not both")
        scenarios = self.server.state.scenarios

        def install() -> None:
            scenarios.add(scenario)
            scenarios.fallback = scenario.name

        self.server.call(install)
        self._scripted.append(scenario.name)
        return scenario.name

    def load(self, *paths: str | Path) -> list[str]:
        """Load scenario files (or directories) into the server for this test; returns their names."""
        loaded = load_scenarios(*paths)
        scenarios = self.server.state.scenarios

        def install() -> None:
            for scenario in loaded:
                scenarios.add(scenario)

        self.server.call(install)
        self._scripted.extend(s.name for s in loaded)
        return [s.name for s in loaded]

    @property
    def requests(self) -> list[Entry]:
        """This test's API requests, oldest first (copies, safe to keep)."""
        journal = self.server.state.journal
        return self.server.call(lambda: [replace(entry) for entry in journal])

    def openai(self, **options: Any) -> Any:
        """An `openai.OpenAI` client pointed at the server (needs the `openai` package)."""
        import openai

        return openai.OpenAI(**self._client_options(options, openai.DefaultHttpxClient))

    def async_openai(self, **options: Any) -> Any:
        """An `openai.AsyncOpenAI` client pointed at the server (needs the `openai` package)."""
        import openai

        return openai.AsyncOpenAI(**self._client_options(options, openai.DefaultAsyncHttpxClient))

    def _client_options(self, options: dict[str, Any], http_client: Callable[..., Any]) -> dict[str, Any]:
        options = {"base_url": self.base_url, "api_key": "mockstream", **options}
        if "http_client" not in options and str(options["base_url"]).startswith("http://"):
            # Plain HTTP needs no TLS: without verify=False httpx loads the CA store for every client,
            # which costs more than the whole rest of a short streaming test.
            options["http_client"] = http_client(verify=False)
        return options

    def errors(self) -> list[BaseException]:
        """Unexpected exceptions the server raised since the last reset (taken: each is reported once)."""
        errors = self.server.state.errors
        return self.server.call(lambda: [errors.pop(0) for _ in range(len(errors))])

    def reset(self) -> None:
        """The server's reset (as `POST /_mockstream/reset`), and this handle's scripts removed."""
        state = self.server.state
        scripted, self._scripted = self._scripted, []

        def clear() -> None:
            state.reset()
            for name in scripted:
                state.scenarios.remove(name)
            state.scenarios.fallback = None

        self.server.call(clear)
