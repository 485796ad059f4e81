"""Every fault, seen by real clients on a real socket, and by the request journal.

"At token K" means exactly K content deltas reach the client before the fault (K = 0: right after
the role chunk). openai-python shows what an application sees; httpx and a plain socket show the bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from helpers import async_openai_sdk, journal, openai_sdk, settled, wait_until
from openai import AsyncOpenAI, OpenAI

from mockstream import load_scenarios
from mockstream.testing import MockServer

MESSAGES = [{"role": "user", "content": "Tell me something."}]
TOKENS = [f"t{i} " for i in range(6)]
SCENARIOS = Path(__file__).parent.parent / "scenarios"


# ---------------------------------------------------------------- helpers ---
def post(url: str, **kwargs: Any) -> httpx.Response:
    return httpx.post(url, verify=False, **kwargs)  # plain HTTP: no need to load the CA bundle (~0.1 s a client)


def get(url: str, **kwargs: Any) -> httpx.Response:
    return httpx.get(url, verify=False, **kwargs)


def header(entry: dict[str, Any], name: str) -> str | None:
    return next((v for k, v in entry["headers"].items() if k.lower() == name.lower()), None)


def body(knobs: dict[str, Any] | None = None, *, stream: bool = True, **fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": stream, **fields}
    if knobs is not None:
        data["mockstream"] = knobs
    return data


def create(client: OpenAI, knobs: dict[str, Any] | None, *, stream: bool = True, **kwargs: Any):
    return client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=stream, extra_body={"mockstream": knobs or {}}, **kwargs
    )


def collect(client: OpenAI, knobs: dict[str, Any]) -> tuple[list[str], list[str], BaseException | None]:
    """Content deltas and finish reasons the SDK yielded, and what it raised (if anything)."""
    deltas: list[str] = []
    finishes: list[str] = []
    try:
        for chunk in create(client, knobs):
            for choice in chunk.choices:
                if choice.delta.content:
                    deltas.append(choice.delta.content)
                if choice.finish_reason:
                    finishes.append(choice.finish_reason)
    except Exception as exc:
        return deltas, finishes, exc
    return deltas, finishes, None


async def acollect(client: AsyncOpenAI, knobs: dict[str, Any]) -> tuple[list[str], BaseException | None]:
    deltas: list[str] = []
    try:
        stream = await client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, extra_body={"mockstream": knobs}
        )
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                deltas.append(chunk.choices[0].delta.content)
    except Exception as exc:
        return deltas, exc
    return deltas, None


def data_lines(srv: MockServer, knobs: dict[str, Any]) -> list[str]:
    """The `data:` payloads of a stream as httpx reads them, raw."""
    with (
        httpx.Client(timeout=10, verify=False) as client,
        client.stream("POST", f"{srv.base_url}/chat/completions", json=body(knobs)) as response,
    ):
        assert response.status_code == 200
        return [line[len("data: "):] for line in response.iter_lines() if line.startswith("data: ")]


def timed_deltas(srv: MockServer, knobs: dict[str, Any]) -> tuple[list[float], list[str]]:
    """When each content delta arrived (s since the request was sent), and the raw data payloads."""
    times: list[float] = []
    lines: list[str] = []
    with httpx.Client(timeout=10, verify=False) as client:
        started = time.monotonic()
        with client.stream("POST", f"{srv.base_url}/chat/completions", json=body(knobs)) as response:
            for line in response.iter_lines():
                if not line.startswith("data: "):
                    continue
                payload = line[len("data: "):]
                lines.append(payload)
                if payload != "[DONE]":
                    choices = json.loads(payload)["choices"]
                    if choices and choices[0]["delta"].get("content"):
                        times.append(time.monotonic() - started)
    return times, lines


def deltas_of(lines: list[str]) -> list[str]:
    out = []
    for line in lines:
        if line == "[DONE]":
            continue
        choices = json.loads(line).get("choices") or []
        if choices and choices[0]["delta"].get("content"):
            out.append(choices[0]["delta"]["content"])
    return out


@dataclass
class Raw:
    """A response read from a plain socket until EOF or an error."""

    head: bytes
    body: bytes  # de-chunked
    complete: bool  # the terminating zero-size chunk arrived
    error: BaseException | None  # what recv() raised

    @property
    def status(self) -> int:
        return int(self.head.split(b" ", 2)[1])

    def frames(self) -> list[bytes]:
        return [f for f in self.body.split(b"\n\n") if f]


def raw_post(srv: MockServer, data: dict[str, Any]) -> Raw:
    payload = json.dumps(data).encode()
    request = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {srv.host}:{srv.port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
    ).encode() + payload
    received, error = b"", None
    with socket.create_connection((srv.host, srv.port), timeout=10) as sock:
        sock.sendall(request)
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except ConnectionResetError as exc:
            error = exc
    head, _, rest = received.partition(b"\r\n\r\n")
    chunked, complete = _dechunk(rest)
    return Raw(head, chunked if b"chunked" in head.lower() else rest, complete, error)


def _dechunk(raw: bytes) -> tuple[bytes, bool]:
    out, pos = b"", 0
    while (end := raw.find(b"\r\n", pos)) >= 0:
        size = int(raw[pos:end].split(b";")[0], 16)
        if size == 0:
            return out, True
        out += raw[end + 2 : end + 2 + size]
        pos = end + 2 + size + 2
    return out, False


def content_frames(raw: Raw) -> list[bytes]:
    return [f for f in raw.frames() if b'"content":"' in f and b'"content":""' not in f]


# ---------------------------------------------------------------- http_error: retries ---
RATE_LIMITED_ONCE = {
    "sequence": [{"fault": {"kind": "http_error", "status": 429, "retry_after": 0.5}}, {"content": "Made it."}]
}


def assert_retried_after_half_a_second(entries: list[dict[str, Any]]) -> None:
    assert len(entries) == 2, entries
    first, second = entries
    assert [first["status"], second["status"]] == [429, 200]
    assert [first["outcome"], second["outcome"]] == ["fault:http_error", "completed"]
    assert [header(first, "x-stainless-retry-count"), header(second, "x-stainless-retry-count")] == ["0", "1"]
    gap = second["time"] - first["time"]
    assert 0.45 <= gap < 3.0, f"the retry came {gap:.3f} s after the 429 (Retry-After: 0.5)"


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "plain"])
def test_sync_client_rides_through_a_429_with_retry_after(srv, stream):
    with openai_sdk(srv, max_retries=2) as client:
        started = time.monotonic()
        answer = create(client, RATE_LIMITED_ONCE, stream=stream)
        if stream:
            text = "".join(c.choices[0].delta.content or "" for c in answer if c.choices)
        else:
            text = answer.choices[0].message.content
        elapsed = time.monotonic() - started
    assert text == "Made it."
    assert elapsed >= 0.45
    assert_retried_after_half_a_second(settled(srv, 2))


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "plain"])
async def test_async_client_rides_through_a_429_with_retry_after(srv, stream):
    async with async_openai_sdk(srv, max_retries=2) as client:
        answer = await client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=stream, extra_body={"mockstream": RATE_LIMITED_ONCE}
        )
        if stream:
            text = "".join([c.choices[0].delta.content or "" async for c in answer if c.choices])
        else:
            text = answer.choices[0].message.content
    assert text == "Made it."
    entries = await asyncio.to_thread(settled, srv, 2)
    assert_retried_after_half_a_second(entries)


def test_retry_after_ms_wins_over_retry_after(srv):
    knobs = {"sequence": [{"fault": {"kind": "http_error", "status": 429, "retry_after": 30, "retry_after_ms": 600}},
                          {"content": "ok"}]}
    with openai_sdk(srv, max_retries=1) as client:
        assert create(client, knobs, stream=False).choices[0].message.content == "ok"
    first, second = settled(srv, 2)
    assert 0.55 <= second["time"] - first["time"] < 5, "the client did not wait the 600 ms of retry-after-ms"


def test_a_client_that_runs_out_of_retries_sees_the_429(srv):
    knobs = {"fault": {"kind": "http_error", "status": 429, "retry_after": 0.1}}
    with openai_sdk(srv, max_retries=2) as client, pytest.raises(openai.RateLimitError):
        create(client, knobs)
    entries = settled(srv, 3)
    assert [e["status"] for e in entries] == [429, 429, 429]


# ---------------------------------------------------------------- http_error: status mapping ---
STATUSES = [
    (401, openai.AuthenticationError, "invalid_request_error", "invalid_api_key"),
    (403, openai.PermissionDeniedError, "invalid_request_error", "unsupported_country_region_territory"),
    (404, openai.NotFoundError, "invalid_request_error", "model_not_found"),
    (429, openai.RateLimitError, "requests", "rate_limit_exceeded"),
    (500, openai.InternalServerError, "server_error", None),
    (503, openai.InternalServerError, "service_unavailable_error", "server_is_overloaded"),
]


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "plain"])
@pytest.mark.parametrize(("status", "exc_class", "type_", "code"), STATUSES, ids=[str(s[0]) for s in STATUSES])
def test_http_error_maps_to_the_sdk_exception(srv, status, exc_class, type_, code, stream):
    with openai_sdk(srv) as client, pytest.raises(exc_class) as caught:
        create(client, {"fault": {"kind": "http_error", "status": status}}, stream=stream)
    error = caught.value
    assert error.status_code == status
    assert error.type == type_
    assert error.code == code
    assert error.param is None
    assert isinstance(error.body, dict) and error.body["message"]
    assert error.request_id and error.request_id.startswith("req_")
    if status == 404:
        assert "gpt-4o-mini" in error.body["message"]
    [entry] = settled(srv)
    assert (entry["status"], entry["outcome"]) == (status, "fault:http_error")
    assert (entry["events_sent"], entry["bytes_sent"], entry["first_byte_at"]) == (0, 0, None)
    assert entry["fault"]["status"] == status


async def test_async_http_error_maps_to_the_sdk_exception(srv):
    async with async_openai_sdk(srv) as client:
        with pytest.raises(openai.AuthenticationError) as caught:
            await client.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, stream=True,
                extra_body={"mockstream": {"fault": {"kind": "http_error", "status": 401}}},
            )
    assert caught.value.code == "invalid_api_key"
    assert "Incorrect API key" in caught.value.body["message"]


def test_custom_message_type_and_code_override_the_defaults(srv):
    fault = {"kind": "http_error", "status": 429, "message": "You exceeded your current quota.",
             "type": "insufficient_quota", "code": "insufficient_quota"}
    with openai_sdk(srv) as client, pytest.raises(openai.RateLimitError) as caught:
        create(client, {"fault": fault})
    assert caught.value.body == {"message": "You exceeded your current quota.", "type": "insufficient_quota",
                                 "param": None, "code": "insufficient_quota"}
    assert "You exceeded your current quota." in str(caught.value)


@pytest.mark.parametrize("speed", [0, 2])
def test_a_429_carries_retry_headers_and_rate_limit_headers(make_server, speed):
    srv = make_server(speed=speed)
    fault = {"kind": "http_error", "status": 429, "retry_after": 1.5, "retry_after_ms": 1500}
    response = post(f"{srv.base_url}/chat/completions", json=body({"fault": fault}), timeout=10)
    assert response.status_code == 429
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["retry-after"] == "1.5"  # a fault's time is literal: never scaled by --speed
    assert response.headers["retry-after-ms"] == "1500"
    assert response.headers["x-ratelimit-remaining-requests"] == "0"
    for name in ("limit-requests", "reset-requests", "limit-tokens", "remaining-tokens", "reset-tokens"):
        assert response.headers[f"x-ratelimit-{name}"], name
    assert response.headers["x-request-id"].startswith("req_")
    assert response.json()["error"]["code"] == "rate_limit_exceeded"
    assert b"data:" not in response.content


@pytest.mark.parametrize(("field", "value", "shown"), [
    ("retry_after_ms", 1234567, "1234567"),  # not 1.23457e+06
    ("retry_after_ms", 86_400_000, "86400000"),
    ("retry_after_ms", 0.25, "0.25"),
    ("retry_after", 86_400, "86400"),
    ("retry_after", 0.1, "0.1"),
])
def test_retry_headers_carry_the_exact_number(srv, field, value, shown):
    fault = {"kind": "http_error", "status": 429, field: value}
    response = post(f"{srv.base_url}/chat/completions", json=body({"fault": fault}), timeout=10)
    header_name = "retry-after-ms" if field == "retry_after_ms" else "retry-after"
    assert response.headers[header_name] == shown
    assert float(response.headers[header_name]) == value


def test_an_error_status_without_retry_after_sends_no_retry_headers(srv):
    response = post(f"{srv.base_url}/chat/completions",
                          json=body({"fault": {"kind": "http_error", "status": 500}}), timeout=10)
    assert response.status_code == 500
    assert "retry-after" not in response.headers
    assert "retry-after-ms" not in response.headers
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


# ---------------------------------------------------------------- error_event ---
@pytest.mark.parametrize("k", [0, 3])
def test_error_event_raises_api_error_after_k_deltas(srv, k):
    fault = {"kind": "error_event", "at_token": k, "message": "Overloaded mid-stream.", "code": "rate_limit_exceeded"}
    with openai_sdk(srv) as client:
        deltas, finishes, error = collect(client, {"tokens": TOKENS, "fault": fault})
    assert deltas == TOKENS[:k]
    assert finishes == []
    assert type(error) is openai.APIError  # no status: the 200 had already started
    assert error.message == "Overloaded mid-stream."
    assert error.code == "rate_limit_exceeded"
    [entry] = settled(srv)
    assert (entry["status"], entry["outcome"]) == (200, "fault:error_event")
    assert entry["events_sent"] == 1 + k + 1  # role chunk, K deltas, the error


@pytest.mark.parametrize("k", [0, 3])
async def test_async_error_event_raises_api_error_after_k_deltas(srv, k):
    async with async_openai_sdk(srv) as client:
        deltas, error = await acollect(client, {"tokens": TOKENS, "fault": {"kind": "error_event", "at_token": k}})
    assert deltas == TOKENS[:k]
    assert type(error) is openai.APIError
    assert error.message == "The server had an error while processing your request. Sorry about that!"


def test_error_event_bytes(srv):
    lines = data_lines(srv, {"tokens": TOKENS, "fault": {"kind": "error_event", "at_token": 2, "type": "tokens"}})
    assert deltas_of(lines[:-1]) == TOKENS[:2]
    error = json.loads(lines[-1])
    assert set(error) == {"error"}
    assert error["error"]["type"] == "tokens"
    assert set(error["error"]) == {"message", "type", "param", "code"}
    assert "[DONE]" not in lines
    assert not any('"finish_reason":"' in line for line in lines)


# ---------------------------------------------------------------- disconnect and reset ---
@pytest.mark.parametrize("kind", ["disconnect", "reset"])
@pytest.mark.parametrize("k", [0, 3])
def test_connection_faults_raise_a_connection_error_after_k_deltas(srv, kind, k):
    with openai_sdk(srv) as client:
        deltas, finishes, error = collect(client, {"tokens": TOKENS, "fault": {"kind": kind, "at_token": k}})
    assert deltas == TOKENS[:k]
    assert finishes == []
    assert isinstance(error, openai.APIConnectionError), repr(error)
    [entry] = settled(srv)
    assert (entry["status"], entry["outcome"]) == (200, f"fault:{kind}")
    assert entry["events_sent"] == 1 + k


@pytest.mark.parametrize("kind", ["disconnect", "reset"])
async def test_async_connection_faults_raise_a_connection_error(srv, kind):
    async with async_openai_sdk(srv) as client:
        deltas, error = await acollect(client, {"tokens": TOKENS, "fault": {"kind": kind, "at_token": 2}})
    assert deltas == TOKENS[:2]
    assert isinstance(error, openai.APIConnectionError), repr(error)


@pytest.mark.parametrize("k", [0, 3])
def test_reset_is_an_rst_on_the_socket(srv, k):
    raw = raw_post(srv, body({"tokens": TOKENS, "fault": {"kind": "reset", "at_token": k}}))
    assert raw.status == 200
    assert isinstance(raw.error, ConnectionResetError), "expected ECONNRESET, got a clean close"
    assert not raw.complete
    assert len(content_frames(raw)) == k
    assert raw.frames()[0].count(b'"role":"assistant"') == 1  # the role chunk came before the fault


@pytest.mark.parametrize("k", [0, 3])
def test_disconnect_is_a_clean_eof_in_the_middle_of_the_chunked_body(srv, k):
    raw = raw_post(srv, body({"tokens": TOKENS, "fault": {"kind": "disconnect", "at_token": k}}))
    assert raw.status == 200
    assert b"transfer-encoding: chunked" in raw.head.lower()
    assert raw.error is None, "expected a FIN, got a reset"
    assert not raw.complete, "the chunked body was finished"
    assert len(content_frames(raw)) == k
    assert b"[DONE]" not in raw.body
    assert raw.body.endswith(b"\n\n")  # cut between events, not inside one


def test_httpx_sees_disconnect_as_an_incomplete_body(srv):
    knobs = {"tokens": TOKENS, "fault": {"kind": "disconnect", "at_token": 1}}
    lines: list[str] = []
    with (
        httpx.Client(timeout=10, verify=False) as client,
        client.stream("POST", f"{srv.base_url}/chat/completions", json=body(knobs)) as response,
        pytest.raises(httpx.RemoteProtocolError),
    ):
        for line in response.iter_lines():
            lines.append(line)
    assert deltas_of([line[6:] for line in lines if line.startswith("data: ")]) == TOKENS[:1]


# ---------------------------------------------------------------- truncate ---
@pytest.mark.parametrize("k", [0, 3])
def test_truncate_ends_cleanly_without_finish_reason_or_done(srv, k):
    knobs = {"tokens": TOKENS, "fault": {"kind": "truncate", "at_token": k}}
    lines = data_lines(srv, knobs)  # httpx read to a clean end: no exception
    assert deltas_of(lines) == TOKENS[:k]
    assert "[DONE]" not in lines
    assert all(c["finish_reason"] is None for line in lines for c in json.loads(line)["choices"])
    raw = raw_post(srv, body(knobs))
    assert raw.complete and raw.error is None
    with openai_sdk(srv) as client:
        deltas, finishes, error = collect(client, knobs)
    assert (deltas, finishes, error) == (TOKENS[:k], [], None)  # the silent truncation naive clients miss
    entries = settled(srv, 3)
    assert [e["outcome"] for e in entries] == ["fault:truncate"] * 3
    assert [e["status"] for e in entries] == [200] * 3


# ---------------------------------------------------------------- stall ---
@pytest.mark.parametrize("speed", [0, 2])
def test_stall_with_ms_delays_the_next_delta_and_is_not_scaled_by_speed(make_server, speed):
    srv = make_server(speed=speed)
    itl = 100 if speed else 0  # 50 ms between deltas at speed 2
    knobs = {"tokens": TOKENS, "itl_ms": itl, "fault": {"kind": "stall", "at_token": 2, "ms": 300}}
    times, lines = timed_deltas(srv, knobs)
    assert deltas_of(lines) == TOKENS
    assert lines[-1] == "[DONE]"
    assert json.loads(lines[-2])["choices"][0]["finish_reason"] == "stop"
    gaps = [b - a for a, b in itertools.pairwise(times)]
    stall = gaps[1]  # between delta 2 and delta 3
    expected = 0.3 + itl / 1000 / (speed or 1) if speed else 0.3
    assert expected - 0.03 <= stall <= expected + 0.4, f"stall gap {stall:.3f} s, expected ~{expected:.3f} s"
    others = gaps[:1] + gaps[2:]
    assert max(others) < 0.2, f"only the stall should be long: {gaps}"
    [entry] = settled(srv)
    assert (entry["status"], entry["outcome"]) == (200, "fault:stall")
    assert entry["events_sent"] == 1 + len(TOKENS) + 2  # role, tokens, finish, [DONE]


def test_stall_without_ms_times_the_client_out_and_frees_the_stream(srv):
    with openai_sdk(srv, timeout=1) as client:
        stream = create(client, {"tokens": TOKENS, "fault": {"kind": "stall", "at_token": 2}})
        deltas: list[str] = []
        last = time.monotonic()
        with pytest.raises(openai.APITimeoutError):
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    deltas.append(chunk.choices[0].delta.content)
                    last = time.monotonic()
        waited = time.monotonic() - last
    assert deltas == TOKENS[:2]
    assert 0.9 <= waited <= 2.5, f"timed out {waited:.2f} s after the last delta"
    [entry] = settled(srv)
    assert entry["outcome"] == "client_disconnected"
    assert entry["events_sent"] == 3
    assert wait_until(lambda: len(srv.state.pacer) == 0)


async def test_async_stall_without_ms_times_out(srv):
    async with async_openai_sdk(srv, timeout=1) as client:
        started = time.monotonic()
        deltas, error = await acollect(client, {"tokens": TOKENS, "fault": {"kind": "stall", "at_token": 0}})
    assert deltas == []
    assert isinstance(error, openai.APITimeoutError)
    assert 0.9 <= time.monotonic() - started <= 3
    [entry] = await asyncio.to_thread(settled, srv)
    assert entry["outcome"] == "client_disconnected"


# ---------------------------------------------------------------- malformed ---
@pytest.mark.parametrize("k", [0, 3])
def test_malformed_raises_a_json_error_after_k_deltas(srv, k):
    with openai_sdk(srv) as client:
        deltas, _, error = collect(client, {"tokens": TOKENS, "fault": {"kind": "malformed", "at_token": k}})
    assert deltas == TOKENS[:k]
    assert isinstance(error, json.JSONDecodeError), repr(error)
    [entry] = settled(srv)
    assert entry["status"] == 200
    assert entry["fault"]["kind"] == "malformed"
    # the stream goes on after the bad line, so the SDK may close the connection before it ends
    assert entry["outcome"] in ("fault:malformed", "client_disconnected")


def test_a_client_that_stops_at_the_malformed_line_is_journaled_as_leaving(make_server):
    srv = make_server(speed=1)
    knobs = {"tokens": TOKENS, "itl_ms": 100, "fault": {"kind": "malformed", "at_token": 1}}
    with openai_sdk(srv) as client:
        deltas, _, error = collect(client, knobs)
    assert deltas == TOKENS[:1]
    assert isinstance(error, json.JSONDecodeError)
    [entry] = settled(srv)
    assert entry["outcome"] == "client_disconnected"
    assert 3 <= entry["events_sent"] <= 4  # role, one delta, the bad line (and the delta it shares a deadline with)
    assert wait_until(lambda: len(srv.state.pacer) == 0)


def test_malformed_line_keeps_the_framing_and_the_stream_goes_on(srv):
    lines = data_lines(srv, {"tokens": TOKENS, "fault": {"kind": "malformed", "at_token": 3}})
    broken = [i for i, line in enumerate(lines) if line != "[DONE]" and not _is_json(line)]
    assert len(broken) == 1
    [at] = broken
    assert lines[at].startswith('{"id":"chatcmpl-')  # a JSON object cut in half
    assert deltas_of(lines[:at]) == TOKENS[:3]
    assert deltas_of(lines[at + 1:]) == TOKENS[3:]
    assert lines[-1] == "[DONE]"
    [entry] = settled(srv)
    assert (entry["status"], entry["outcome"]) == (200, "fault:malformed")
    assert entry["events_sent"] == len(lines)


def test_malformed_with_custom_data(srv):
    knobs = {"tokens": TOKENS, "fault": {"kind": "malformed", "at_token": 1, "data": "{not: json"}}
    lines = data_lines(srv, knobs)
    assert lines.count("{not: json") == 1
    assert lines.index("{not: json") == 2  # role chunk, one delta, then the line
    with openai_sdk(srv) as client:
        deltas, _, error = collect(client, knobs)
    assert deltas == TOKENS[:1]
    assert isinstance(error, json.JSONDecodeError)
    assert error.doc == "{not: json"


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------- slow_headers ---
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "plain"])
def test_slow_headers_trip_a_short_read_timeout_but_not_a_long_one(srv, stream):
    data = body({"content": "late but fine", "fault": {"kind": "slow_headers", "ms": 500}}, stream=stream)
    url = f"{srv.base_url}/chat/completions"
    with pytest.raises(httpx.ReadTimeout):
        post(url, json=data, timeout=httpx.Timeout(5, read=0.2))
    started = time.monotonic()
    response = post(url, json=data, timeout=httpx.Timeout(0.2, read=2))  # connect timeout is not read time
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert 0.45 <= elapsed < 2
    if stream:
        assert deltas_of([line[6:] for line in response.text.split("\n\n") if line]) == ["late", " but", " fine"]
    else:
        assert response.json()["choices"][0]["message"]["content"] == "late but fine"
    entries = settled(srv, 2)
    assert [e["outcome"] for e in entries] == ["client_disconnected", "fault:slow_headers"]


def test_slow_headers_are_not_scaled_by_speed(make_server):
    srv = make_server(speed=2)
    started = time.monotonic()
    response = post(f"{srv.base_url}/chat/completions",
                          json=body({"content": "x", "fault": {"kind": "slow_headers", "ms": 400}}), timeout=5)
    assert response.status_code == 200
    assert time.monotonic() - started >= 0.37


# ---------------------------------------------------------------- non-streaming requests ---
def test_plain_request_disconnect_before_the_body(srv):
    data = body({"fault": {"kind": "disconnect"}}, stream=False)
    raw = raw_post(srv, data)
    assert (raw.head, raw.body, raw.error) == (b"", b"", None)  # a FIN before any byte
    with openai_sdk(srv) as client, pytest.raises(openai.APIConnectionError):
        create(client, {"fault": {"kind": "disconnect"}}, stream=False)
    entries = settled(srv, 2)
    assert [e["outcome"] for e in entries] == ["fault:disconnect"] * 2
    assert entries[0]["status"] is None


def test_plain_request_reset_before_the_body(srv):
    raw = raw_post(srv, body({"fault": {"kind": "reset"}}, stream=False))
    assert raw.head == b""
    assert isinstance(raw.error, ConnectionResetError)
    [entry] = settled(srv)
    assert entry["outcome"] == "fault:reset"


def test_plain_request_sdk_retries_a_disconnect(srv):
    knobs = {"sequence": [{"fault": {"kind": "disconnect"}}, {"content": "second time lucky"}]}
    with openai_sdk(srv, max_retries=2) as client:
        assert create(client, knobs, stream=False).choices[0].message.content == "second time lucky"
    assert [e["outcome"] for e in settled(srv, 2)] == ["fault:disconnect", "completed"]


def test_plain_request_stall_with_ms_then_the_answer(srv):
    started = time.monotonic()
    with openai_sdk(srv) as client:
        completion = create(client, {"content": "after a pause", "fault": {"kind": "stall", "ms": 300}}, stream=False)
    assert completion.choices[0].message.content == "after a pause"
    assert time.monotonic() - started >= 0.28
    [entry] = settled(srv)
    assert (entry["status"], entry["outcome"]) == (200, "fault:stall")


def test_plain_request_stall_without_ms_times_out(srv):
    with openai_sdk(srv, timeout=0.5) as client, pytest.raises(openai.APITimeoutError):
        create(client, {"fault": {"kind": "stall"}}, stream=False)
    [entry] = settled(srv)
    assert entry["outcome"] == "client_disconnected"


# ---------------------------------------------------------------- probability ---
def hit_pattern(srv: MockServer, count: int = 40) -> list[bool]:
    data = body({"content": "x", "fault": {"kind": "http_error", "status": 503, "probability": 0.5}}, stream=False)
    with httpx.Client(timeout=10, verify=False) as client:
        statuses = [client.post(f"{srv.base_url}/chat/completions", json=data).status_code for _ in range(count)]
    assert set(statuses) <= {200, 503}
    return [status == 503 for status in statuses]


def test_probability_is_seeded(make_server):
    srv = make_server(seed=7)
    pattern = hit_pattern(srv)
    assert 6 <= sum(pattern) <= 34, f"{sum(pattern)} hits of 40 at probability 0.5"
    entries = journal(srv)
    assert [e["outcome"] == "fault:http_error" for e in entries] == pattern
    assert all(("fault" in e) == hit for e, hit in zip(entries, pattern))

    post(f"{srv.url}/_mockstream/reset").raise_for_status()
    assert hit_pattern(srv) == pattern, "reset must re-seed the rolls"
    assert hit_pattern(make_server(seed=7)) == pattern, "the same seed must give the same hits"
    assert hit_pattern(make_server(seed=8)) != pattern


def test_probability_zero_never_strikes_and_one_always(srv):
    with openai_sdk(srv) as client:
        for _ in range(5):
            deltas, _, error = collect(client, {"tokens": TOKENS, "fault": {"kind": "reset", "probability": 0}})
            assert (deltas, error) == (TOKENS, None)
        deltas, _, error = collect(client, {"tokens": TOKENS, "fault": {"kind": "reset", "probability": 1}})
    assert isinstance(error, openai.APIConnectionError)


# ---------------------------------------------------------------- fault validation ---
BAD_FAULTS = [
    ({"kind": "stal"}, "mockstream.fault.kind", ["did you mean 'stall'", "disconnect", "slow_headers"]),
    ({"kind": "stall", "at": 3}, "mockstream.fault.at", ["at_token", "ms", "probability"]),
    ({"kind": "http_error", "retry_afterr": 1}, "mockstream.fault.retry_afterr",
     ["did you mean 'retry_after'", "retry_after_ms", "status"]),
    ({"kind": "reset", "probability": 1.5}, "mockstream.fault.probability", ["between 0 and 1"]),
    ({"kind": "reset", "probability": -0.1}, "mockstream.fault.probability", ["between 0 and 1"]),
    ({"kind": "http_error", "status": 200}, "mockstream.fault.status", ["between 400 and 599"]),
    ({"kind": "stall", "at_token": "3"}, "mockstream.fault.at_token", ["integer"]),
    ({"kind": "stall", "ms": -5}, "mockstream.fault.ms", ["between"]),
    ({"at_token": 3}, "mockstream.fault.kind", ["expected one of"]),
    ("stall", "mockstream.fault", ["kind"]),
]


@pytest.mark.parametrize(("fault", "param", "fragments"), BAD_FAULTS, ids=[str(f[1]) + str(i)
                                                                          for i, f in enumerate(BAD_FAULTS)])
def test_bad_fault_knobs_are_a_400_naming_the_field(srv, fault, param, fragments):
    with openai_sdk(srv) as client, pytest.raises(openai.BadRequestError) as caught:
        create(client, {"fault": fault})
    error = caught.value
    assert error.param == param
    assert error.code == "invalid_mockstream_knob"
    for fragment in fragments:
        assert fragment in error.body["message"], error.body["message"]
    [entry] = settled(srv)
    assert (entry["status"], entry["outcome"]) == (400, "rejected")


# ---------------------------------------------------------------- the scenario files ---
def fault_files() -> Iterator[Path]:
    return iter(sorted(SCENARIOS.glob("fault-*.yaml")))


def test_every_fault_kind_has_a_scenario_file():
    from mockstream.faults import KINDS

    kinds = set()
    for path in fault_files():
        [scenario] = load_scenarios(path)
        assert scenario.description.strip(), f"{path.name} needs a description"
        entries = [scenario.knobs, *scenario.knobs.get("sequence", ())]
        kinds |= {entry["fault"].kind for entry in entries if "fault" in entry}
    assert kinds == set(KINDS)


QUICK = ["http_error", "error_event", "disconnect", "truncate", "reset", "malformed"]


@pytest.mark.parametrize("kind", QUICK)
def test_fault_scenario_files_strike(make_server, kind):
    name = f"fault-{kind.replace('_', '-')}"
    srv = make_server(load_scenarios(SCENARIOS / f"{name}.yaml"))
    with contextlib.suppress(httpx.TransportError):  # disconnect and reset cut the body
        post(f"{srv.base_url}/chat/completions", json=body(), headers={"X-Mockstream-Scenario": name}, timeout=10)
    [entry] = settled(srv)
    assert entry["scenario"] == name
    assert entry["outcome"] == f"fault:{kind}"


# ---------------------------------------------------------------- in-band faults on non-streamed answers ---
@pytest.mark.parametrize(("code", "status", "error_class"), [
    (None, 500, openai.InternalServerError),
    ("rate_limit_exceeded", 429, openai.RateLimitError),
    ("server_is_overloaded", 503, openai.InternalServerError),
])
def test_error_event_on_a_non_streamed_answer_is_the_status_its_code_implies(srv, code, status, error_class):
    fault = {"kind": "error_event", **({"code": code} if code else {})}
    client = openai_sdk(srv)
    with pytest.raises(error_class) as caught:
        client.chat.completions.create(model="m", messages=MESSAGES,
                                       extra_body={"mockstream": {"content": "hi", "fault": fault}})
    client.close()
    assert caught.value.status_code == status
    assert caught.value.code == code
    assert journal(srv)[-1]["outcome"] == "fault:error_event"


def test_in_band_rate_limit_reads_like_a_429(srv):
    client = openai_sdk(srv)
    stream = client.chat.completions.create(
        model="gpt-x", messages=MESSAGES, stream=True,
        extra_body={"mockstream": {"content": "a b", "fault": {"kind": "error_event", "code": "rate_limit_exceeded"}}})
    with pytest.raises(openai.APIError) as caught:
        list(stream)
    client.close()
    assert "Rate limit reached for gpt-x" in caught.value.message
    assert caught.value.type == "requests"


@pytest.mark.parametrize("kind", ["malformed", "truncate"])
def test_a_non_streamed_answer_cut_in_half_is_not_json(srv, kind):
    body = {"model": "m", "messages": MESSAGES, "mockstream": {"content": "a whole answer", "fault": {"kind": kind}}}
    response = post(f"{srv.base_url}/chat/completions", json=body)
    whole = post(f"{srv.base_url}/chat/completions", json={**body, "mockstream": {"content": "a whole answer"}})
    assert response.status_code == 200
    assert whole.json()["choices"][0]["message"]["content"] == "a whole answer"
    assert response.content == whole.content[: len(whole.content) // 2]
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content)
