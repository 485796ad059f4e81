"""The pytest plugin (registered through the `pytest11` entry point): a real mock server in every test.

Fixtures: `mockstream_server` (one server per session, started on first use, in a thread with its own
loop) and `mockstream` (a per-test `MockHandle` that resets journal, sequences and scripts first).
Marker: `@pytest.mark.mockstream(content="Hi", chunk_bytes=1, fault={...})` scripts one test's stream;
its `strict=True` (or False) sets strict mode for that test alone; every other argument is a knob.

Strict mode (`--mockstream-strict`, ini `mockstream_strict = true`, or the marker's `strict=True`): the
server refuses a request no scenario matches with a 404 naming the closest scenarios, and a test that made
such a request (or one the built-in default answered though nothing scripted it) fails at teardown, showing
each request's miss report: the closest scenarios, the rule each failed, what it wanted and what it got.

Record modes (`--mockstream-record`, ini `mockstream_record`; pytest-recording's words), with the upstream
from `--mockstream-upstream URL`, ini `mockstream_upstream` or `MOCKSTREAM_UPSTREAM`. Each test has its own
recordings directory, `<test file's dir>/recordings/<module>/<test name>/` (a class's test:
`<Class>.<test>`; characters a file name cannot hold become `-`):
- `none` (default): the test's recordings, if its directory exists, answer its requests; a request they do not
  match is refused (404 with the miss report) and fails the test at teardown; the network is never used.
- `once`: as `none` if the directory exists; else a request no scenario answers is forwarded to the upstream,
  streamed back and recorded into the directory, so the next run replays it.
- `new_episodes`: the recordings answer what they match; what they do not is recorded next to them.
- `all`: the directory's recordings are deleted first, then every request no script answers is recorded.
Recordings are loaded into the session's server for their test only. `handle.recordings` names the file that
answered each request (replayed or just recorded).

Settings, strongest first: command-line option > ini value > default (for a test, its marker's `strict`
wins). Nothing heavy is imported until a test asks for a server, so installing mockstream costs other test
sessions nothing.
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from . import RECORD_MODES

if TYPE_CHECKING:
    from ..server.journal import Entry
    from .server import MockHandle, MockServer

OPTIONS = (
    ("speed", "0", "divide pacing delays by this; 0 (default) means tests never wait on pacing"),
    ("scenarios", "", "scenario directory (or file) for the session's server; an ini value is relative to the ini"),
    ("seed", "0", "server seed (same seed + same request = byte-identical answer)"),
    (
        "record",
        "none",
        "record mode: none (default: replay a test's recordings, never the network), once (record a test whose "
        "recordings directory does not exist), new_episodes (record what the recordings do not answer), all "
        "(record everything again)",
    ),
    ("upstream", "", "the server a record mode forwards to (https://api.openai.com...); else $MOCKSTREAM_UPSTREAM"),
)
STRICT_HELP = (
    "strict mode: a request no scenario matches gets a 404 naming the closest, and fails its test at teardown "
    "(so does one the built-in default answered)"
)
UPSTREAM_ENV = "MOCKSTREAM_UPSTREAM"
UNSAFE = "<>?%*:|\"'/\\"  # not in a directory name (pytest-recording's set): each becomes "-"


@dataclass(frozen=True)
class Options:
    """The session's mockstream settings, read once at configure time."""

    speed: float
    seed: int
    scenarios: Path | None
    strict: bool
    record: str
    upstream: str | None


SETTINGS = pytest.StashKey[Options]()
T = TypeVar("T")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("mockstream", "mockstream mock server")
    for name, default, help_text in OPTIONS:
        group.addoption(f"--mockstream-{name}", dest=f"mockstream_{name}", default=None, help=help_text)
        parser.addini(f"mockstream_{name}", help_text, default=default)
    group.addoption(
        "--mockstream-strict", dest="mockstream_strict", action="store_true", default=None, help=STRICT_HELP
    )
    parser.addini("mockstream_strict", STRICT_HELP, type="bool", default=False)


def pytest_configure(config: pytest.Config) -> None:
    config.stash[SETTINGS] = _settings(config)  # a bad value stops the session at once, not test by test
    config.addinivalue_line(
        "markers",
        "mockstream(strict=None, **knobs): script the mock stream for this test (the knobs of a request's "
        "\"mockstream\" object, e.g. content='Hi', chunk_bytes=1, fault={'kind': 'disconnect', 'at_token': 2}); "
        "strict=True fails the test at teardown for a request no scenario matched",
    )


def _speed(text: str) -> float:
    value = float(text)
    if not 0 <= value < math.inf:
        raise ValueError(f"expected a finite number >= 0, got {text!r}")
    return value


def _seed(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(f"expected an integer >= 0, got {text!r}")
    return value


def _setting(config: pytest.Config, name: str, parse: Callable[[str], T]) -> T:
    """The option if given, else the ini value; a bad one is a usage error naming where it came from."""
    value = config.getoption(f"mockstream_{name}")
    source = f"--mockstream-{name}"
    if value is None:
        value, source = config.getini(f"mockstream_{name}"), f"ini value mockstream_{name}"
    try:
        return parse(value)
    except ValueError as exc:
        raise pytest.UsageError(f"mockstream: {source}: {exc}") from None


def _mode(text: str) -> str:
    if text not in RECORD_MODES:
        close = difflib.get_close_matches(text, RECORD_MODES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown record mode {text!r}{hint}; expected one of: {', '.join(RECORD_MODES)}")
    return text


def _url(text: str) -> str:
    if text and not text.startswith(("http://", "https://")):
        raise ValueError(f"expected an http:// or https:// URL, got {text!r}")
    return text


def _settings(config: pytest.Config) -> Options:
    speed, seed = _setting(config, "speed", _speed), _setting(config, "seed", _seed)
    strict = bool(config.getoption("mockstream_strict") or config.getini("mockstream_strict"))
    record, upstream = _setting(config, "record", _mode), _setting(config, "upstream", _url)
    if not upstream and os.environ.get(UPSTREAM_ENV):
        try:
            upstream = _url(os.environ[UPSTREAM_ENV])
        except ValueError as exc:
            raise pytest.UsageError(f"mockstream: ${UPSTREAM_ENV}: {exc}") from None
    if record != "none" and not upstream:
        source = "--mockstream-record" if config.getoption("mockstream_record") is not None else "mockstream_record"
        raise pytest.UsageError(
            f"mockstream: {source}={record} records through an upstream, and none is given: pass "
            f"--mockstream-upstream URL (or set the ini value mockstream_upstream, or ${UPSTREAM_ENV})"
        )
    return Options(speed, seed, _scenarios(config), strict, record, upstream or None)


def _scenarios(config: pytest.Config) -> Path | None:
    directory = _setting(config, "scenarios", str)
    if not directory:
        return None
    path, source = Path(directory), "--mockstream-scenarios"
    if config.getoption("mockstream_scenarios") is None:
        source = "ini value mockstream_scenarios"
        if config.inipath is not None:
            path = config.inipath.parent / path  # relative to the ini file, wherever pytest runs from
    if not path.exists():
        raise pytest.UsageError(f"mockstream: {source}: no such file or directory: {str(path)!r}")
    return path


def recordings_directory(request: pytest.FixtureRequest) -> Path:
    """The test's recordings: `<test file's dir>/recordings/<module>/<test name>/` (a test of a class:
    `<Class>.<test name>`), the characters a file name cannot hold (in a parametrized id) replaced by `-`."""
    path = Path(request.node.path)
    name = request.node.name if request.cls is None else f"{request.cls.__name__}.{request.node.name}"
    for char in UNSAFE:
        name = name.replace(char, "-")
    return path.parent / "recordings" / path.stem / name


@pytest.fixture(scope="session")
def mockstream_server(pytestconfig: pytest.Config) -> Iterator[MockServer]:
    """The session's mock server (127.0.0.1, a free port); each xdist worker gets its own. Strict when the
    session is; with a record mode other than none, it has a recorder forwarding to the upstream."""
    from ..plan.schema import load_scenarios
    from .server import MockServer

    options = pytestconfig.stash[SETTINGS]
    scenarios = load_scenarios(options.scenarios) if options.scenarios is not None else []
    upstream = options.upstream if options.record != "none" else None
    server = MockServer(scenarios, speed=options.speed, seed=options.seed, strict=options.strict, upstream=upstream)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def mockstream(mockstream_server: MockServer, request: pytest.FixtureRequest) -> Iterator[MockHandle]:
    """This test's handle on the session server: `.base_url`, `.script(...)`, `.requests`, `.recordings`,
    `.openai()`. The test's recordings answer it (or its misses are recorded, by the record mode); in strict
    mode a request that matched nothing fails it at teardown."""
    from .server import MockHandle

    options = request.config.stash[SETTINGS]
    handle = MockHandle(mockstream_server)
    handle.reset()
    knobs: dict[str, Any] = {}
    strict = options.strict
    marker = request.node.get_closest_marker("mockstream")
    if marker is not None:
        if marker.args:
            raise pytest.UsageError("@pytest.mark.mockstream takes knobs as keyword arguments only")
        knobs = dict(marker.kwargs)
        strict = knobs.pop("strict", strict)
        if not isinstance(strict, bool):
            raise pytest.UsageError(f"@pytest.mark.mockstream(strict=...) takes True or False, got {strict!r}")
    if knobs:
        handle.script(**knobs)
    with handle.record(recordings_directory(request), options.record), handle.strict(strict):
        yield handle
        misses = handle.misses()
    errors = handle.errors()
    handle.reset()
    if errors:
        raise errors[0]
    _fail_on(misses, strict)


@pytest.fixture(autouse=True)
def _mockstream_marker(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test with the marker gets its script even when it only asks for `mockstream_server`; a test that
    only asks for the server still has the server's errors raised at its teardown, its recordings and its
    strict mode, like `mockstream` does."""
    if "mockstream" in request.fixturenames:
        yield
        return
    if request.node.get_closest_marker("mockstream") is not None:
        request.getfixturevalue("mockstream")
        yield
        return
    if "mockstream_server" not in request.fixturenames:
        yield
        return
    from .server import MockHandle

    options = request.config.stash[SETTINGS]
    handle = MockHandle(request.getfixturevalue("mockstream_server"))
    handle.errors()  # what an earlier test left behind is not this test's doing
    since = max((entry.id for entry in handle.requests), default=0)  # the journal is not reset for this test
    with handle.record(recordings_directory(request), options.record):
        yield
        misses = [entry for entry in handle.misses() if entry.id > since]
    errors = handle.errors()
    if errors:
        raise errors[0]
    _fail_on(misses, options.strict)


def _fail_on(misses: list[Entry], strict: bool) -> None:
    """Fail the test for its misses: every one in strict mode, else those refused as unmatched (recordings
    were loaded, or the server is strict)."""
    from .server import UnmatchedRequests

    shown = misses if strict else [entry for entry in misses if entry.outcome == "unmatched"]
    if shown:
        mode = "strict mode" if strict else "replaying recordings"
        pytest.fail(f"mockstream ({mode}): {UnmatchedRequests(shown)}", pytrace=False)
