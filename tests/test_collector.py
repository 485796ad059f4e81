"""Full garbage collections wait until no request is in flight (unless long overdue)."""

from __future__ import annotations

import asyncio
import gc
import sys

import pytest

from mockstream.process import collector
from mockstream.process.collector import IdleCollector

pytestmark = pytest.mark.skipif(sys.version_info >= (3, 14), reason="3.14's incremental collector is left alone")


def _make_cycles(until_due: int) -> None:
    """Garbage only the collector frees, until `until_due` middle-generation collections have run."""
    for _ in range(10_000):
        if gc.get_count()[2] >= until_due:
            return
        for _ in range(1000):
            cycle: list = []
            cycle.append(cycle)
    raise AssertionError(f"no {until_due} middle-generation collections: {gc.get_count()}")


@pytest.fixture
def full_collections():
    seen: list[dict] = []

    def record(phase: str, info: dict) -> None:
        if phase == "stop" and info["generation"] == 2:
            seen.append(info)

    gc.collect()
    gc.callbacks.append(record)
    yield seen
    gc.callbacks.remove(record)


async def test_a_due_full_collection_waits_until_no_request_is_in_flight(monkeypatch, full_collections):
    monkeypatch.setattr(collector, "LOOK_EVERY", 0.01)
    thresholds = gc.get_threshold()
    in_flight = True
    idle_collector = IdleCollector(asyncio.get_running_loop(), idle=lambda: not in_flight)
    try:
        _make_cycles(collector.DUE + 2)  # CPython would have collected fully by now
        await asyncio.sleep(0.05)
        assert full_collections == []
        in_flight = False
        await asyncio.sleep(0.05)
        assert len(full_collections) == 1
        assert gc.get_count()[2] < collector.DUE
    finally:
        idle_collector.close()
    assert gc.get_threshold() == thresholds


async def test_an_overdue_full_collection_runs_under_load(monkeypatch, full_collections):
    monkeypatch.setattr(collector, "LOOK_EVERY", 0.01)
    monkeypatch.setattr(collector, "OVERDUE", collector.DUE + 5)
    idle_collector = IdleCollector(asyncio.get_running_loop(), idle=lambda: False)
    try:
        _make_cycles(collector.DUE + 1)
        await asyncio.sleep(0.05)
        assert full_collections == []  # due, but requests are in flight
        _make_cycles(collector.OVERDUE)
        await asyncio.sleep(0.05)
        assert len(full_collections) == 1
    finally:
        idle_collector.close()
