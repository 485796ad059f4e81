"""The recent-results cache: a repeated plan is encoded once, and every stream reads its own copy."""

from __future__ import annotations

import asyncio

import aiohttp

from mockstream.server import recent
from mockstream.server.recent import Recent


class Plan:
    """Stands for a Plan: the cache keys replays by the object itself."""


def counting_encoder(calls: list[int], n: int = 5):
    def encode():
        calls.append(1)
        return iter([(i * 0.01, f"frame {i}".encode(), 1) for i in range(n)])

    return encode


def test_a_plan_is_encoded_once_and_each_reader_starts_at_the_beginning():
    cache, plan, calls = Recent(), Plan(), []
    first = cache.replay(plan, counting_encoder(calls))
    assert next(first)[1] == b"frame 0"
    assert next(first)[1] == b"frame 1"
    second = cache.replay(plan, counting_encoder(calls))  # joins while the first is half way
    assert [item[1] for item in second] == [f"frame {i}".encode() for i in range(5)]
    assert [item[1] for item in first] == [b"frame 2", b"frame 3", b"frame 4"]
    assert [item[1] for item in cache.replay(plan, counting_encoder(calls))][-1] == b"frame 4"
    assert len(calls) == 1


def test_another_plan_is_encoded_anew_and_the_oldest_replays_go_first():
    cache, calls = Recent(), []
    plans = [Plan() for _ in range(recent.REPLAYS + 1)]
    for plan in plans:
        list(cache.replay(plan, counting_encoder(calls)))
    assert len(calls) == recent.REPLAYS + 1
    list(cache.replay(plans[-1], counting_encoder(calls)))  # still kept
    assert len(calls) == recent.REPLAYS + 1
    list(cache.replay(plans[0], counting_encoder(calls)))  # the oldest was let go
    assert len(calls) == recent.REPLAYS + 2


def test_clear_forgets_replays():
    cache, plan, calls = Recent(), Plan(), []
    list(cache.replay(plan, counting_encoder(calls)))
    cache.clear()
    list(cache.replay(plan, counting_encoder(calls)))
    assert len(calls) == 2


async def test_identical_streams_at_once_get_identical_bodies(make_server):
    """Ten identical paced requests in flight together read one replay at different places."""
    srv = make_server(speed=1)
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}],
            "mockstream": {"random_tokens": 60, "ttft_ms": 0, "itl_ms": 3}}

    async def one(session: aiohttp.ClientSession, delay: float) -> bytes:
        await asyncio.sleep(delay)
        async with session.post(f"{srv.base_url}/chat/completions", json=body) as response:
            return await response.read()

    async with aiohttp.ClientSession() as session:
        bodies = await asyncio.gather(*(one(session, 0.02 * i) for i in range(10)))
    assert all(b == bodies[0] for b in bodies)
    assert bodies[0].count(b"data: ") == 60 + 3 and bodies[0].endswith(b"data: [DONE]\n\n")


def test_the_replays_kept_hold_a_bounded_number_of_tokens_the_oldest_going_first():
    cache, calls = Recent(), []
    long = recent.MAX_REPLAY_TOKENS
    plans = [Plan() for _ in range(recent.REPLAY_TOKENS // long + 1)]  # one more than the budget holds
    for plan in plans:
        list(cache.replay(plan, counting_encoder(calls), long))
    assert len(calls) == len(plans)
    list(cache.replay(plans[-1], counting_encoder(calls), long))  # the newest are kept
    list(cache.replay(plans[1], counting_encoder(calls), long))
    assert len(calls) == len(plans)
    list(cache.replay(plans[0], counting_encoder(calls), long))  # the oldest was let go: over the budget
    assert len(calls) == len(plans) + 1
