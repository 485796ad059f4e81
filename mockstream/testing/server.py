"""A real mock server in a background thread, usable from any test runner, sync or async.

The server runs its own event loop in a daemon thread, so a plain sync test, an asyncio test and a
test on any other loop all reach it over a real socket. `MockHandle` is one test's view of it: its scripts,
its requests, its recordings (`record()`: replay a directory of recordings, or record what no scenario
answers through the server's upstream) and the requests that matched nothing (`misses()`).
"""

from __future__ import annotations

import asyncio
import difflib
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from aiohttp import web

from .. import server
from ..plan.schema import SCENARIO_SUFFIXES, Scenario, load_scenarios
from ..server.direct import route_directly
from ..server.journal import Entry
from ..server.state import State
from . import RECORD_MODES

if TYPE_CHECKING:
    from ..record import Proxy

__all__ = ["Entry", "MockHandle", "MockServer", "UnmatchedRequests", "create_app"]


def create_app(scenarios: Iterable[Scenario] = (), *, speed: float = 0.0, **options: Any) -> web.Application:
    """The server's app for in-loop tests (pytest-aiohttp's `aiohttp_client`): like
    `mockstream.server.create_app`, but with no pacing delays unless a test asks for them."""
    return server.create_app(scenarios, speed=speed, **options)


T = TypeVar("T")


class MockServer:
    """`with MockServer() as server: OpenAI(base_url=server.base_url, api_key="x")`.

    `upstream` (a base URL such as `https://api.openai.com`) gives the server a recorder (`proxy`, see
    `mockstream.record.Proxy`): it forwards nothing by itself; `MockHandle.record` says when it does.
    `app_options` go to `mockstream.server.create_app` (`strict=True`, `on_miss="error"`, `routes`...)."""

    def __init__(
        self,
        scenarios: Iterable[Scenario] = (),
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int = 0,
        speed: float = 0.0,
        upstream: str | None = None,
        **app_options: Any,
    ):
        self.app = create_app(scenarios, seed=seed, speed=speed, **app_options)
        self.state = State.of(self.app)
        self.proxy: Proxy | None = None
        if upstream is not None:
            from ..record import attach

            self.proxy = attach(self.app, upstream)  # its client session closes with the server
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
        route_directly(self._runner)
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

    @property
    def recordings(self) -> list[Path | None]:
        """Which recording answered each of this test's requests, oldest first: the file it replayed, or the
        file the upstream's answer was recorded to; None for a request no recording answered."""
        files = [entry.extra.get("recording") for entry in self.requests]
        return [None if file is None else Path(file) for file in files]

    def misses(self) -> list[Entry]:
        """This test's requests that matched nothing: refused as unmatched (a strict server, or recordings
        loaded by `record()`), or answered by the built-in default though nothing scripted them. Each has its
        miss report in `entry.miss`. A request forwarded to the upstream (and recorded) is not one."""
        return [
            entry
            for entry in self.requests
            if (entry.outcome == "unmatched" or entry.miss is not None) and "upstream" not in entry.extra
        ]

    def assert_matched(self) -> None:
        """Raise `UnmatchedRequests` (an AssertionError showing each miss report) if any request of this test
        matched nothing (see `misses()`); what the pytest plugin's strict mode does at teardown."""
        misses = self.misses()
        if misses:
            raise UnmatchedRequests(misses)

    @contextmanager
    def strict(self, enabled: bool = True) -> Iterator[None]:
        """Inside the block the server is strict (or, with False, not): a request no scenario matches gets a
        404 naming the closest scenarios, not the built-in default. The server's setting comes back after."""
        settings = self.server.state.settings

        def switch(value: bool) -> bool:
            before, settings.strict = settings.strict, value
            return before

        before = self.server.call(lambda: switch(enabled))
        try:
            yield
        finally:
            self.server.call(lambda: switch(before))

    @contextmanager
    def record(self, directory: str | Path, mode: str = "none") -> Iterator[Path]:
        """Make `directory` this block's recordings, in one of pytest-recording's modes (RECORD_MODES):

        - `none`: if the directory exists, its recordings answer, and a request none of them (nor a script)
          answers is refused with a 404 naming the closest; nothing is forwarded, ever.
        - `once`: as `none` if the directory exists; else a request no scenario answers goes to the server's
          upstream and is recorded into the directory (created then), so the next run replays it.
        - `new_episodes`: the recordings there answer, and what they do not is recorded next to them.
        - `all`: the recordings there are deleted first, then every request no script answers is recorded.

        Recording needs the server's upstream (`MockServer(upstream=URL)`). When the block ends the server is
        as before: the recordings loaded or made here unloaded, its miss handling and the recorder's `out`
        restored. Yields the directory."""
        if mode not in RECORD_MODES:
            close = difflib.get_close_matches(mode, RECORD_MODES, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"unknown record mode {mode!r}{hint}; expected one of: {', '.join(RECORD_MODES)}")
        folder = Path(directory)
        recording = mode in ("new_episodes", "all") or (mode == "once" and not folder.is_dir())
        proxy = self.server.proxy
        if recording and proxy is None:
            raise RuntimeError(f"record mode {mode!r} records through an upstream: MockServer(upstream=URL) has none")
        if mode == "all" and folder.is_dir():
            for path in folder.iterdir():
                if path.suffix in SCENARIO_SUFFIXES and path.is_file():
                    path.unlink()
        replaying = not recording and folder.is_dir()  # none, or once with the directory there: misses are errors
        loaded = load_scenarios(folder) if folder.is_dir() else []
        state = self.server.state
        settings, scenarios = state.settings, state.scenarios
        before: dict[str, Scenario] = {}
        saved = (settings.on_miss, None if proxy is None else proxy.out, proxy is None or proxy.replays)

        def begin() -> None:
            before.update((scenario.name, scenario) for scenario in scenarios)
            for scenario in loaded:
                scenarios.add(scenario)
            if recording:
                assert proxy is not None
                # what the test records does not answer its repeats: a retried request is recorded again,
                # as the next take, and a run that replays later answers them in order
                settings.on_miss, proxy.out, proxy.replays = "proxy", folder, False
            elif replaying:
                settings.on_miss = "error"

        def end() -> None:
            settings.on_miss = saved[0]
            if proxy is not None and saved[1] is not None:
                proxy.out, proxy.replays = saved[1], saved[2]
            for scenario in list(scenarios):
                if scenario.name not in before:
                    scenarios.remove(scenario.name)
            for name, scenario in before.items():
                if name not in scenarios or scenarios.named(name, "") is not scenario:
                    scenarios.add(scenario)

        self.server.call(begin)
        try:
            yield folder
        finally:
            self.server.call(end)

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


class UnmatchedRequests(AssertionError):
    """Requests no scenario matched (`MockHandle.misses()`); the message shows each one's miss report: the
    loaded scenarios that came closest and, for each, the rule that failed with what it wanted and got."""

    def __init__(self, entries: Iterable[Entry]):
        self.entries = list(entries)
        super().__init__(_described(self.entries))


def _described(entries: list[Entry]) -> str:
    count = len(entries)
    lines = [f"{count} request{'s' if count != 1 else ''} matched no scenario:"]
    for entry in entries:
        body = entry.body
        model = body.get("model") if isinstance(body, dict) else None
        shown = f", model {model!r}" if model is not None else ""
        if entry.outcome == "unmatched":
            how = f"refused with a {entry.status} (no scenario matched)"
        else:
            how = f"answered by the built-in default ({entry.outcome})"
        lines.append(f"  request {entry.id}: {entry.method} {entry.path}{shown}: {how}")
        report = entry.miss or []
        if not report:
            lines.append("    no loaded scenario has match rules")
        for closest in report:
            lines.append(f"    closest: {closest['scenario']}")
            for failed in closest["failed"]:
                lines.append(f"      {failed['rule']}: wanted {_shown(failed['wanted'])}, got {_shown(failed['got'])}")
    return "\n".join(lines)


def _shown(value: Any) -> str:
    return "nothing" if value is None else repr(value)
