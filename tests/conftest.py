"""Shared fixtures: a real mockstream server on a real socket, never a mock of it."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from helpers import async_openai_sdk, openai_sdk, plain_http

from mockstream.testing import MockServer

pytest_plugins = ["pytester"]  # tests/test_readme_examples.py runs the README's test files in a fresh project


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


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    """A plain-http client (no CA bundle to load), closed after the test."""
    with plain_http() as client:
        yield client


@pytest.fixture
def srv(server: MockServer) -> MockServer:
    """The session server with an empty journal, fresh sequence positions and re-seeded fault rolls."""
    with plain_http() as client:
        client.post(f"{server.url}/_mockstream/reset").raise_for_status()
    return server


@pytest.fixture(scope="module")
def client(server: MockServer) -> Iterator:
    """openai-python's sync client on the session server, for a module (no retries)."""
    with openai_sdk(server) as sdk:
        yield sdk


@pytest.fixture
async def aclient(server: MockServer):
    """openai-python's async client on the session server, for a test (no retries)."""
    async with async_openai_sdk(server) as sdk:
        yield sdk
