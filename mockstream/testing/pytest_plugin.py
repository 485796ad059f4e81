"""The pytest plugin (registered through the `pytest11` entry point): a real mock server in every test.

Fixtures: `mockstream_server` (one server per session, started on first use, in a thread with its own
loop) and `mockstream` (a per-test `MockHandle` that resets journal, sequences and scripts first).
Marker: `@pytest.mark.mockstream(content="Hi", chunk_bytes=1, fault={...})` scripts one test's stream.

Settings, strongest first: command-line option > ini value > default. Nothing heavy is imported until a
test asks for a server, so installing mockstream costs other test sessions nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import pytest

if TYPE_CHECKING:
    from .server import MockHandle, MockServer

OPTIONS = (
    ("speed", "0", "divide pacing delays by this; 0 (default) means tests never wait on pacing"),
    ("scenarios", "", "scenario directory (or file) for the session's server; an ini value is relative to the ini"),
    ("seed", "0", "server seed (same seed + same request = byte-identical answer)"),
)
SETTINGS = pytest.StashKey["tuple[float, int, Path | None]"]()
T = TypeVar("T")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("mockstream", "mockstream mock server")
    for name, default, help_text in OPTIONS:
        group.addoption(f"--mockstream-{name}", dest=f"mockstream_{name}", default=None, help=help_text)
        parser.addini(f"mockstream_{name}", help_text, default=default)


def pytest_configure(config: pytest.Config) -> None:
    config.stash[SETTINGS] = _settings(config)  # a bad value stops the session at once, not test by test
    config.addinivalue_line(
        "markers",
        "mockstream(**knobs): script the mock stream for this test (the knobs of a request's "
        "\"mockstream\" object, e.g. content='Hi', chunk_bytes=1, fault={'kind': 'disconnect', 'at_token': 2})",
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


def _settings(config: pytest.Config) -> tuple[float, int, Path | None]:
    speed, seed = _setting(config, "speed", _speed), _setting(config, "seed", _seed)
    directory = _setting(config, "scenarios", str)
    if not directory:
        return speed, seed, None
    path, source = Path(directory), "--mockstream-scenarios"
    if config.getoption("mockstream_scenarios") is None:
        source = "ini value mockstream_scenarios"
        if config.inipath is not None:
            path = config.inipath.parent / path  # relative to the ini file, wherever pytest runs from
    if not path.exists():
        raise pytest.UsageError(f"mockstream: {source}: no such file or directory: {str(path)!r}")
    return speed, seed, path


@pytest.fixture(scope="session")
def mockstream_server(pytestconfig: pytest.Config) -> Iterator[MockServer]:
    """The session's mock server (127.0.0.1, a free port); each xdist worker gets its own."""
    from ..plan.schema import load_scenarios
    from .server import MockServer

    speed, seed, directory = pytestconfig.stash[SETTINGS]
    scenarios = load_scenarios(directory) if directory is not None else []
    server = MockServer(scenarios, speed=speed, seed=seed).start()
    yield server
    server.stop()


@pytest.fixture
def mockstream(mockstream_server: MockServer, request: pytest.FixtureRequest) -> Iterator[MockHandle]:
    """This test's handle on the session server: `.base_url`, `.script(...)`, `.requests`, `.openai()`."""
    from .server import MockHandle

    handle = MockHandle(mockstream_server)
    handle.reset()
    marker = request.node.get_closest_marker("mockstream")
    if marker is not None:
        if marker.args:
            raise pytest.UsageError("@pytest.mark.mockstream takes knobs as keyword arguments only")
        handle.script(**marker.kwargs)
    yield handle
    errors = handle.errors()
    handle.reset()
    if errors:
        raise errors[0]


@pytest.fixture(autouse=True)
def _mockstream_marker(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test with the marker gets its script even when it only asks for `mockstream_server`; a test that
    only asks for the server still has the server's errors raised at its teardown, like `mockstream` does."""
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

    handle = MockHandle(request.getfixturevalue("mockstream_server"))
    handle.errors()  # what an earlier test left behind is not this test's doing
    yield
    errors = handle.errors()
    if errors:
        raise errors[0]
