"""Shared fixtures: a real mockstream server on a real socket, never a mock of it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mockstream.testing import MockServer


@pytest.fixture(scope="session")
def server() -> Iterator[MockServer]:
    """One server for the session, no pacing delays (speed 0), seed 0."""
    with MockServer(speed=0) as srv:
        yield srv


@pytest.fixture
def make_server() -> Iterator:
    """Start servers with their own settings (`make_server(scenarios, speed=1, seed=7)`); stopped after the test."""
    started: list[MockServer] = []

    def make(scenarios=(), **options) -> MockServer:
        srv = MockServer(scenarios, **options).start()
        started.append(srv)
        return srv

    yield make
    for srv in reversed(started):
        srv.stop()
