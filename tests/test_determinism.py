"""Same seed + same request => the same bytes: ids, created, tokens and tool-call ids included."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from helpers import plain_http

MESSAGES = [{"role": "user", "content": "Be random, reproducibly."}]
# every random part of an answer: ids, created, fingerprint, Faker text, tool-call ids, n > 1
RICH = {"random_tokens": 25, "tool_calls": [{"name": "lookup", "arguments": {"q": "seeds"}}]}


def body_for(knobs: dict[str, Any], stream: bool = True, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": stream,
                            "mockstream": knobs, **fields}
    if stream:
        body.setdefault("stream_options", {"include_usage": True})
    return body


def fetch(server, body: dict[str, Any]) -> tuple[str, bytes]:
    """(x-request-id, the raw response body)."""
    with plain_http() as client, client.stream(
        "POST", f"{server.base_url}/chat/completions", json=body
    ) as response:
        raw = b"".join(response.iter_raw())
    assert response.status_code == 200, raw
    return response.headers["x-request-id"], raw


def first_chunk(raw: bytes) -> dict[str, Any]:
    return json.loads(raw.split(b"\n\n", 1)[0].removeprefix(b"data: "))


def identity(raw: bytes) -> dict[str, Any]:
    """The random identity of a streamed answer: ids, created, fingerprint and tool-call ids."""
    chunks = [json.loads(line[6:]) for line in raw.decode().split("\n\n") if line.startswith("data: {")]
    call_ids = [call["id"] for c in chunks if c["choices"]
                for call in c["choices"][0]["delta"].get("tool_calls") or [] if "id" in call]
    first = chunks[0]
    return {"id": first["id"], "created": first["created"], "fingerprint": first["system_fingerprint"],
            "call_ids": call_ids}


def text_of(raw: bytes, index: int = 0) -> str:
    chunks = [json.loads(line[6:]) for line in raw.decode().split("\n\n") if line.startswith("data: {")]
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks
                   if c["choices"] and c["choices"][0]["index"] == index)


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "complete"])
def test_same_seed_same_request_gives_identical_bytes_on_two_servers(make_server, stream):
    a, b = make_server(seed=7, speed=0), make_server(seed=7, speed=0)
    body = body_for(RICH, stream=stream, n=2)
    id_a, raw_a = fetch(a, body)
    id_b, raw_b = fetch(b, body)
    assert raw_a == raw_b
    assert id_a == id_b
    assert b'"id":"chatcmpl-' in raw_a.replace(b" ", b"")
    assert b"call_" in raw_a
    assert b'"created":' in raw_a.replace(b" ", b"")


def test_the_same_server_repeats_itself(make_server):
    srv = make_server(seed=3, speed=0)
    body = body_for(RICH)
    assert fetch(srv, body) == fetch(srv, body)


def test_a_repeated_body_is_answered_from_the_scenario_that_answers_it_now(make_server):
    """The same body, again and again: planned once, yet a scenario replaced meanwhile answers at once."""
    srv = make_server(speed=0)
    with httpx.Client(base_url=srv.url, timeout=10) as http:
        def answer() -> str:
            body = {"model": "again", "messages": [{"role": "user", "content": "hi"}]}
            return http.post("/v1/chat/completions", json=body).json()["choices"][0]["message"]["content"]

        assert http.post("/_mockstream/scenarios", json={"name": "again", "content": "first"}).status_code == 200
        assert answer() == answer() == "first"
        assert http.post("/_mockstream/scenarios", json={"name": "again", "content": "second"}).status_code == 200
        assert answer() == "second"


def test_another_server_seed_changes_the_ids_but_not_scripted_text(make_server):
    one, two = make_server(seed=1, speed=0), make_server(seed=2, speed=0)
    knobs = {"content": "Scripted text stays put.", "tool_calls": [{"name": "f", "arguments": {"a": 1}}]}
    id_one, raw_one = fetch(one, body_for(knobs))
    id_two, raw_two = fetch(two, body_for(knobs))
    assert id_one != id_two
    ident_one, ident_two = identity(raw_one), identity(raw_two)
    assert ident_one["id"] != ident_two["id"]
    assert ident_one["fingerprint"] != ident_two["fingerprint"]
    assert ident_one["call_ids"] != ident_two["call_ids"]
    assert text_of(raw_one) == text_of(raw_two) == "Scripted text stays put."


def test_knob_seed_changes_the_ids(server):
    knobs = {"content": "Same text.", "tool_calls": [{"name": "f", "arguments": {}}]}
    id_1, raw_1 = fetch(server, body_for({**knobs, "seed": 1}))
    id_2, raw_2 = fetch(server, body_for({**knobs, "seed": 2}))
    assert id_1 != id_2
    assert identity(raw_1)["id"] != identity(raw_2)["id"]
    assert identity(raw_1)["call_ids"] != identity(raw_2)["call_ids"]
    assert text_of(raw_1) == text_of(raw_2) == "Same text."


def test_knob_seed_makes_the_answer_independent_of_the_server_seed(make_server):
    one, two = make_server(seed=1, speed=0), make_server(seed=2, speed=0)
    body = body_for({**RICH, "seed": 99})
    assert fetch(one, body) == fetch(two, body)


def test_another_request_gets_other_ids(server):
    _, raw_a = fetch(server, body_for({"content": "x"}))
    _, raw_b = fetch(server, {**body_for({"content": "x"}), "messages": [{"role": "user", "content": "Other."}]})
    assert identity(raw_a)["id"] != identity(raw_b)["id"]


def test_the_scenario_is_part_of_the_seed(make_server):
    # design: randomness is seeded from (server seed, scenario, request); two different answers to the same
    # body must not share an id
    from mockstream.plan.schema import Scenario

    srv = make_server([Scenario.from_dict({"name": "a", "content": "A"}),
                       Scenario.from_dict({"name": "b", "content": "B"})], seed=0, speed=0)
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True}
    with plain_http() as client:
        ids = {}
        for name in ("a", "b"):
            response = client.post(f"{srv.base_url}/chat/completions", json=body,
                                   headers={"X-Mockstream-Scenario": name})
            assert response.status_code == 200
            ids[name] = (response.headers["x-request-id"], identity(response.content)["id"])
            assert text_of(response.content) == name.upper()
    assert ids["a"][0] != ids["b"][0]
    assert ids["a"][1] != ids["b"][1]


def test_random_tokens_same_seed_same_text(make_server):
    a, b = make_server(seed=11, speed=0), make_server(seed=11, speed=0)
    body = body_for({"random_tokens": 40})
    text = text_of(fetch(a, body)[1])
    assert text == text_of(fetch(b, body)[1])
    assert len(text.split()) > 10


def test_random_tokens_other_server_seed_other_text(make_server):
    a, b = make_server(seed=11, speed=0), make_server(seed=12, speed=0)
    body = body_for({"random_tokens": 40})
    assert text_of(fetch(a, body)[1]) != text_of(fetch(b, body)[1])


def test_random_tokens_other_knob_seed_other_text(server):
    text_1 = text_of(fetch(server, body_for({"random_tokens": 40, "seed": 1}))[1])
    text_2 = text_of(fetch(server, body_for({"random_tokens": 40, "seed": 2}))[1])
    text_1_again = text_of(fetch(server, body_for({"random_tokens": 40, "seed": 1}))[1])
    assert text_1 != text_2
    assert text_1 == text_1_again


def test_random_tokens_in_a_locale_are_reproducible(make_server):
    a, b = make_server(seed=5, speed=0), make_server(seed=5, speed=0)
    body = body_for({"random_tokens": 20, "locale": "ja_JP"})
    assert text_of(fetch(a, body)[1]) == text_of(fetch(b, body)[1])


@pytest.mark.parametrize("delivery", [
    {"chunk_bytes": 3}, {"events_per_write": 4}, {"itl_ms": 1, "ttft_ms": 5}, {"jitter_ms": 1, "itl_ms": 1},
])
def test_delivery_knobs_leave_the_bytes_alone(server, delivery):
    """The same answer paced or cut differently is the same body: only how it reaches the socket changes."""
    plain = fetch(server, body_for({"random_tokens": 30}))[1]
    assert fetch(server, body_for({"random_tokens": 30, **delivery}))[1] == plain
    assert fetch(server, body_for({"random_tokens": 31, **delivery}))[1] != plain
