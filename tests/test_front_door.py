"""The front door: every request the server can be sent gets a 2xx or the API's own 4xx, never a 5xx, never a
hang; a body too slow to arrive is dropped after the read timeout, and one too large is refused unread.

Requests go as raw bytes over a real socket to ONE real server (MockServer, speed 0), so headers, paths,
methods and bodies reach it exactly as generated: no client library tidies them first.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import itertools
import json
import socket
import time
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp import web
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mockstream.dialects import misplaced_knobs
from mockstream.faults import KINDS
from mockstream.plan import request_seed
from mockstream.plan.schema import KNOBS
from mockstream.server import create_app
from mockstream.server.access_log import AccessLog
from mockstream.server.aiohttp_private import EXPECT_HANDLER
from mockstream.server.errors import MAX_BODY
from mockstream.server.planner import MAX_DEPTH
from mockstream.testing import MockServer

REQUEST_ID = "X-Front-Door-Id"  # finds a request's journal entry
TOO_LONG = 4.0  # s: no request may take longer (speed 0: every answer is immediate)
_ids = itertools.count(1)

ROUTES = (
    ("POST", "/v1/chat/completions"),
    ("POST", "/v1/completions"),
    ("POST", "/v1/responses"),
    ("POST", "/v1/messages"),
    ("GET", "/v1/chat/completions"),
    ("GET", "/v1/models"),
    ("GET", "/v1/models/gpt-4o"),
    ("GET", "/healthz"),
    ("GET", "/_mockstream/requests"),
    ("DELETE", "/_mockstream/requests"),
    ("GET", "/_mockstream/scenarios"),
    ("POST", "/_mockstream/scenarios"),
    ("POST", "/_mockstream/reset"),
)
# Methods HTTP's parser knows (an unknown token is refused by aiohttp's parser, before any app sees it).
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD", "TRACE", "PURGE", "PROPFIND", "LINK")
CONTENT_TYPES = (
    None,
    "application/json",
    "application/json; charset=utf-8",
    "application/json; charset=utf-16",
    "application/json; charset=nonsense",
    "application/vnd.api+json",
    "application/octet-stream",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=xyz",
    "*/*",
    "",
    ";;;",
)
FAULT_KINDS = tuple(KINDS)  # every fault and every knob the server has, and one it has not
KNOB_NAMES = (*KNOBS, "no_such_knob")

DEEP = b'{"model":"gpt-4o-mini","messages":' + b"[" * 5000 + b"]" * 5000 + b"}"
DEEP_OBJECT = b'{"a":' * 3000 + b"1" + b"}" * 3000
SURROGATE = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"\\ud800 and \\udfff"}]}'
SURROGATE_KNOBS = (
    b'{"model":"\\ud800","max_tokens":5,"stream":true,"messages":[{"role":"user","content":"\\udc00"}],'
    b'"mockstream":{"content":"echo \\ud800 me",'
    b'"tool_calls":[{"name":"\\ud801","arguments":"{\\"a\\":\\"\\udfff\\"}"}]}}'
)
EXTRA_BODY = (
    b'{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi"}],'
    b'"extra_body":{"mockstream":{"content":"x"}}}'
)


# ---------------------------------------------------------------- a raw HTTP exchange ---
def send(port: int, method: str, target: str, headers: list[tuple[str, str]], body: bytes | None) -> Any:
    """Write the request as bytes; read the answer (to the connection's close) with http.client."""
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    lines += [f"{name}: {value}" for name, value in headers]
    with socket.create_connection(("127.0.0.1", port), timeout=TOO_LONG + 1) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b""))
        response = http.client.HTTPResponse(sock, method=method)
        response.begin()
        return response.status, response.getheader("Content-Type") or "", response.read()


def anthropic_path(path: str) -> bool:
    return path == "/v1/messages" or path.startswith("/v1/messages/")


def check_error_shape(path: str, status: int, body: bytes) -> None:
    data = json.loads(body)
    if anthropic_path(path):
        assert data["type"] == "error", data
        assert isinstance(data["error"]["type"], str) and isinstance(data["error"]["message"], str), data
        assert "param" not in data["error"], data  # not the OpenAI shape
    else:
        error = data["error"]
        assert isinstance(error["message"], str) and isinstance(error["type"], str), data
        assert {"param", "code"} <= error.keys(), data


@pytest.fixture(scope="module")
def server():
    with MockServer(speed=0.0, read_timeout=2.0) as srv:
        yield srv


def journaled(server: MockServer, request_id: str) -> Any:
    entries = server.call(lambda: [e for e in server.state.journal if e.headers.get(REQUEST_ID) == request_id])
    return entries[-1] if entries else None


def knock(server: MockServer, method: str, path: str, query: str, headers: list[tuple[str, str]], body: Any) -> None:
    """One request through the front door, and everything the door promises about its answer."""
    request_id = str(next(_ids))
    target = path + (f"?{query}" if query else "")
    started = time.monotonic()
    failure: BaseException | None = None
    try:
        status, ctype, data = send(server.port, method, target, [*headers, (REQUEST_ID, request_id)], body)
    except (OSError, http.client.HTTPException) as exc:  # a fault may cut the answer: the journal says so
        failure = exc
    took = time.monotonic() - started
    kept = server.state.errors
    errors = server.call(lambda: [kept.pop() for _ in range(len(kept))])  # each example sees its own
    assert not errors, f"the server kept errors: {errors!r}"
    entry = journaled(server, request_id)
    if entry is not None and entry.outcome.startswith("fault:"):
        return  # a scripted fault: its status, cut or delay was asked for
    assert failure is None, f"{method} {target}: no whole answer ({failure!r}) after {took:.2f} s"
    assert took < TOO_LONG, f"{method} {target} took {took:.2f} s"
    assert status < 500, f"{method} {target} -> {status}: {data[:500]!r}"
    if status >= 400 and method != "HEAD":
        assert "application/json" in ctype, f"{method} {target} -> {status} {ctype}: {data[:300]!r}"
        check_error_shape(path, status, data)


# ---------------------------------------------------------------- what is generated ---
small_numbers = st.integers(-3, 30) | st.floats(-2.0, 30.0, allow_nan=False)
edge_numbers = st.sampled_from([0, -0.0, 2**63, -(2**63) - 1, 10**30, 1e308, -1e308, 1e-320])
text = st.text(max_size=12)
json_values = st.recursive(
    st.none() | st.booleans() | small_numbers | edge_numbers | text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(text, children, max_size=4),
    max_leaves=12,
)


def _no_hang(fault: dict[str, Any]) -> dict[str, Any]:
    # stall and slow_headers hang or wait by design: a short `ms` keeps them within a request's budget
    return {**fault, "ms": 5} if fault.get("kind") in ("stall", "slow_headers") else fault


faults = json_values | st.builds(
    lambda kind, extra: _no_hang({"kind": kind, **extra}),
    st.sampled_from(FAULT_KINDS) | text,
    st.dictionaries(st.sampled_from(["at_token", "status", "message", "probability", "ms", "data"]), json_values),
)


def _quick(knobs: Any) -> Any:
    # chunk_gap_ms is not scaled by speed: writes cut small wait 1 ms each unless the gap is 0
    if isinstance(knobs, dict) and "chunk_bytes" in knobs:
        return {**knobs, "chunk_gap_ms": 0}
    return knobs


VALID = {  # a value each knob takes, so knobs that pass meet the rest of the request
    "content": text,
    "tokens": st.lists(text, max_size=5),
    "random_tokens": st.integers(0, 30),
    "locale": st.sampled_from(["en_US", "de_DE", "ja_JP", "zz_ZZ"]),
    "finish_reason": st.sampled_from(["stop", "length", "tool_calls", "content_filter"]),
    "tool_calls": st.lists(
        st.fixed_dictionaries({"name": text, "arguments": json_values.map(json.dumps)}), max_size=2
    ),
    "ttft_ms": st.floats(0, 3_600_000),
    "itl_ms": st.floats(0, 3_600_000),
    "jitter_ms": st.floats(0, 3_600_000),
    "chunk_bytes": st.integers(1, 64),
    "events_per_write": st.integers(1, 5),
    "line_ending": st.sampled_from(["lf", "crlf", "cr"]),
    "done": st.booleans(),
    "seed": st.integers(0, 2**63 - 1),
    "fault": st.builds(
        lambda kind, at: _no_hang({"kind": kind, "at_token": at}), st.sampled_from(FAULT_KINDS), st.integers(0, 5)
    ),
    "cycle": st.booleans(),
    "scenario": st.sampled_from(["default", "no-such-scenario"]),
}
knob_objects = st.one_of(
    json_values,
    st.dictionaries(st.sampled_from(KNOB_NAMES) | text, json_values | faults, max_size=5).map(_quick),
    st.fixed_dictionaries({}, optional={name: value | json_values for name, value in VALID.items()}).map(_quick),
    st.fixed_dictionaries({}, optional=VALID).map(_quick),
)
roles = st.sampled_from(["user", "assistant", "system", "tool", "x"])
messages = st.lists(st.fixed_dictionaries({"role": roles, "content": json_values}), max_size=3)
request_objects = st.fixed_dictionaries(
    {},
    optional={
        "model": st.sampled_from(["gpt-4o-mini", "claude-3-5-haiku-latest", ""]) | json_values,
        "messages": messages | json_values,
        "prompt": text | json_values,
        "input": text | messages | json_values,
        "max_tokens": st.integers(-2, 40) | json_values,
        "stream": st.booleans() | json_values,
        "n": st.integers(-1, 3) | json_values,
        "stream_options": json_values,
        "mockstream": knob_objects,
        "extra_body": json_values,
        "mockstrem": json_values,
    },
)


def _encode(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


plausible = st.fixed_dictionaries(  # what each API needs, so the knobs and the rest get past the first check
    {
        "model": st.just("gpt-4o-mini"),
        "max_tokens": st.integers(1, 20),
        "messages": st.just([{"role": "user", "content": "hi"}]),
        "prompt": st.just("hi"),
        "input": st.just("hi"),
        "mockstream": knob_objects,
    },
    optional={"stream": st.booleans(), "n": st.integers(1, 2), "stream_options": json_values},
)
bodies = st.one_of(
    st.none(),
    plausible.map(_encode),
    plausible.map(_encode),
    plausible.map(_encode),
    plausible.map(_encode),
    request_objects.map(_encode),
    json_values.map(_encode),  # not an object, or an object of anything
    st.binary(max_size=64),
    st.integers(1, 3000).map(lambda n: b"[" * n + b"]" * n),
    st.sampled_from([DEEP, DEEP_OBJECT, SURROGATE, SURROGATE_KNOBS, EXTRA_BODY, b"1" * 5000, b"1e999", b"NaN"]),
)
path_text = st.text(st.characters(blacklist_characters="/.%\\?#"), max_size=8)
paths = st.one_of(
    st.sampled_from([path for _, path in ROUTES]),
    st.builds(
        lambda route, tail: route + "/" + quote(tail.encode("utf-8", "surrogatepass"), safe=""),
        st.sampled_from(["/v1/messages", "/v1/chat/completions", "/v1/models", "/_mockstream", "/v1"]),
        path_text,
    ),
)
query_keys = st.sampled_from(["model", "prompt", *KNOB_NAMES, "fault.kind", "fault.at_token", "content.x"]) | text
queries = st.lists(st.tuples(query_keys, text | json_values.map(json.dumps)), max_size=4).map(
    lambda pairs: "&".join(
        f"{quote(k.encode('utf-8', 'surrogatepass'), safe='')}={quote(v.encode('utf-8', 'surrogatepass'), safe='')}"
        for k, v in pairs
    )
)
header_names = st.sampled_from(
    [
        "X-Mockstream-Scenario",
        "X-Mockstream-Session",
        "Last-Event-ID",
        "Origin",
        "Access-Control-Request-Method",
        "Authorization",
        "x-api-key",
        "Accept",
        "Accept-Encoding",
        "Content-Encoding",
        "Expect",
        "X-Whatever",
    ]
) | st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12).map(lambda name: "X-" + name)
latin1 = st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_categories=("Cc",))
header_values = st.text(latin1, max_size=40)  # bytes that are not UTF-8 reach aiohttp as surrogate escapes
header_values |= st.sampled_from(["gzip", "deflate", "br", "zstd", "identity", "100-continue", "*", "default"])
header_lists = st.lists(st.tuples(header_names, header_values.map(str.strip)), max_size=4)
content_types = st.sampled_from(("application/json",) * len(CONTENT_TYPES) + CONTENT_TYPES)


@settings(
    max_examples=250,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    route=st.sampled_from(ROUTES[:4] * 3 + ROUTES),  # the API routes most often
    method=st.sampled_from((None,) * len(METHODS) * 3 + METHODS),  # mostly the route's own
    path=st.one_of(st.none(), st.none(), st.none(), paths),
    query=queries,
    headers=header_lists,
    content_type=content_types,
    body=bodies,
)
@example(ROUTES[0], None, None, "", [], "application/json", DEEP)
@example(ROUTES[3], None, None, "", [], "application/json", DEEP)
@example(ROUTES[2], None, None, "", [], "application/json", DEEP_OBJECT)
@example(ROUTES[11], None, None, "", [], "application/json", DEEP)
@example(ROUTES[0], None, None, "", [], "application/json", SURROGATE)
@example(ROUTES[0], None, None, "", [], "application/json", SURROGATE_KNOBS)
@example(ROUTES[1], None, None, "", [], "application/json", SURROGATE_KNOBS)
@example(ROUTES[2], None, None, "", [], "application/json", SURROGATE_KNOBS)
@example(ROUTES[3], None, None, "", [], "application/json", SURROGATE_KNOBS)
@example(ROUTES[4], None, None, "tokens=%5B%22%5Cud800%22%5D&model=%5Cud800", [], None, None)
@example(ROUTES[3], None, None, "", [], "application/json", EXTRA_BODY)
@example(ROUTES[0], None, None, "", [], "application/json", EXTRA_BODY)
@example(ROUTES[3], "GET", None, "", [], None, None)  # a 405 on /v1/messages, in Anthropic's words
@example(ROUTES[0], None, "/v1/messages/%0A", "", [("Expect", "0")], "application/json", None)  # a newline in the path
@example(ROUTES[0], None, "/v1/messages/%0A", "", [("Expect", "\xa1")], "application/json", None)
@example(ROUTES[3], "OPTIONS", None, "", [("Origin", "http://x")], None, None)  # a failed preflight
@example(ROUTES[0], None, None, "", [("Content-Encoding", "gzip")], "application/json", b'{"model":"m"}')
@example(ROUTES[0], None, None, "", [("Content-Encoding", "br")], "application/json", b'{"model":"m"}')
@example(ROUTES[3], None, None, "", [("Expect", "\xa1")], "application/json", b"{}")  # not UTF-8
@example(ROUTES[0], None, "/nowhere", "", [("Expect", "\xa1")], "application/json", b"{}")
@example(ROUTES[0], None, "/v1/chat/completions/%ED%A0%80", "", [], None, None)
def test_every_request_gets_an_answer_in_the_apis_words(
    server: MockServer,
    route: tuple[str, str],
    method: str | None,
    path: str | None,
    query: str,
    headers: list[tuple[str, str]],
    content_type: str | None,
    body: bytes | None,
) -> None:
    if content_type is not None:
        headers = [("Content-Type", content_type), *headers]
    knock(server, method or route[0], path or route[1], query, headers, body)


def test_after_the_storm_the_server_still_streams(server: MockServer) -> None:
    """Runs after the property test (file order): the same server answers a plain stream, with no error kept."""
    body = _encode({"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
    headers = [("Content-Type", "application/json"), ("X-Mockstream-Scenario", "default")]
    status, ctype, data = send(server.port, "POST", "/v1/chat/completions", headers, body)
    assert status == 200 and ctype.startswith("text/event-stream"), (status, data[:300])
    events = [line[6:] for line in data.decode().splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]", events[-3:]
    text = "".join(json.loads(e)["choices"][0]["delta"].get("content") or "" for e in events[:-1])
    assert text, events
    assert server.call(lambda: list(server.state.errors)) == []


# ---------------------------------------------------------------- the known 500s, one by one ---
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages", "/_mockstream/scenarios"])
@pytest.mark.parametrize("body", [DEEP, DEEP_OBJECT], ids=["array", "object"])
def test_a_deeply_nested_body_is_a_400_invalid_json(server: MockServer, path: str, body: bytes) -> None:
    status, _, data = send(server.port, "POST", path, [("Content-Type", "application/json")], body)
    assert status == 400, data[:300]
    check_error_shape(path, status, data)
    assert "nests deeper" in data.decode() or "recursion" in data.decode().lower()


def test_nesting_just_over_the_cap_is_refused_and_just_under_answered(server: MockServer) -> None:
    def nested(depth: int) -> bytes:  # the body is level 1, `messages` 2, its message 3
        inner = b"[" * (depth - 3) + b"]" * (depth - 3)
        return b'{"model":"m","messages":[{"role":"user","content":"hi","x":' + inner + b"}]}"

    headers = [("Content-Type", "application/json")]
    status, _, data = send(server.port, "POST", "/v1/chat/completions", headers, nested(MAX_DEPTH))
    assert status == 200, data[:300]
    status, _, data = send(server.port, "POST", "/v1/chat/completions", headers, nested(MAX_DEPTH + 1))
    assert status == 400 and b"nests deeper" in data, data[:300]


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions", "/v1/responses", "/v1/messages"])
def test_lone_surrogates_are_answered_with_the_replacement_character(server: MockServer, path: str) -> None:
    body = {
        "model": "gpt-4o-mini",
        "max_tokens": 50,
        "messages": [{"role": "user", "content": "hi"}],
        "prompt": "hi",
        "input": "hi",
        "mockstream": {"content": "echo \ud800 me"},
    }
    status, _, data = send(server.port, "POST", path, [("Content-Type", "application/json")], _encode(body))
    assert status == 200, data[:300]
    shown = json.dumps(json.loads(data), ensure_ascii=False)
    assert "echo \ufffd me" in shown, shown[:500]
    assert server.call(lambda: list(server.state.errors)) == []


def test_the_seed_of_a_valid_body_is_unchanged_and_a_lone_surrogate_has_one() -> None:
    valid = {"model": "m", "messages": [{"content": "héllo 😀"}]}
    canonical = json.dumps(valid, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    expected = int.from_bytes(hashlib.blake2b(f"7\0s\0{canonical}".encode(), digest_size=8).digest(), "big")
    assert request_seed(7, valid, "s") == expected
    assert request_seed(7, {"x": "\ud800"}, "s") != request_seed(7, {"x": "\udc00"}, "s")


# ---------------------------------------------------------------- misplaced knobs ---
@pytest.mark.parametrize("field", ["extra_body", "mockstrem", "mock_stream", "MockStream", "mockStreams"])
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions", "/v1/responses", "/v1/messages"])
def test_misplaced_knobs_are_a_400_naming_the_field(server: MockServer, path: str, field: str) -> None:
    body = {
        "model": "gpt-4o-mini",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": "hi"}],
        "prompt": "hi",
        "input": "hi",
        field: {"mockstream": {"content": "x"}} if field == "extra_body" else {"content": "x"},
    }
    status, _, data = send(server.port, "POST", path, [("Content-Type", "application/json")], _encode(body))
    assert status == 400, data[:300]
    check_error_shape(path, status, data)
    error = json.loads(data)["error"]
    assert f"Unrecognized request argument supplied: {field}." in error["message"]
    assert '"mockstream"' in error["message"]
    if not anthropic_path(path):
        assert error["param"] == field and error["code"] == "unknown_parameter"


@pytest.mark.parametrize(
    "field", ["stream", "stream_options", "model", "messages", "metadata", "max_tokens", "mock", "store", "system"]
)
def test_fields_of_the_apis_are_not_taken_for_knobs(field: str) -> None:
    assert not misplaced_knobs(field)


# ---------------------------------------------------------------- slow and large bodies ---
def test_a_body_that_never_arrives_is_a_408_and_a_close_while_others_are_answered() -> None:
    with MockServer(speed=0.0, read_timeout=0.5) as srv:
        slow = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        started = time.monotonic()
        slow.sendall(
            b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n{\"m"
        )
        # meanwhile, on another connection, a whole request is answered at once
        quick = _encode({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
        status, _, _ = send(srv.port, "POST", "/v1/chat/completions", [("Content-Type", "application/json")], quick)
        assert status == 200
        assert time.monotonic() - started < 0.5, "the slow body held up another connection"
        received = b""
        while chunk := slow.recv(65536):  # to the server's close
            received += chunk
        took = time.monotonic() - started
        slow.close()
        assert 0.4 < took < 2.0, took
        head, _, body = received.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408 "), received[:300]
        assert json.loads(body)["type"] == "error", body  # Anthropic's words on /v1/messages
        assert srv.call(lambda: [(e.status, e.outcome) for e in srv.state.journal])[0] == (408, "rejected")


def test_a_body_sent_byte_by_byte_is_dropped_after_the_read_timeout() -> None:
    with MockServer(speed=0.0, read_timeout=0.5) as srv:
        sock = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        started = time.monotonic()
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
        received = b""
        with contextlib.suppress(OSError):
            for _ in range(1000):
                sock.sendall(b" ")
                time.sleep(0.02)
                if time.monotonic() - started > 3:
                    break
        sock.settimeout(2)
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                received += chunk
        sock.close()
        took = time.monotonic() - started
        assert took < 2.5, took
        assert received.startswith(b"HTTP/1.1 408 "), received[:300]
        assert b'"code":"request_timeout"' in received.replace(b" ", b""), received


def test_a_too_large_content_length_is_a_413_before_the_body_is_read() -> None:
    with MockServer(speed=0.0, read_timeout=30) as srv:
        sock = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        started = time.monotonic()
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {MAX_BODY + 1}\r\n\r\n".encode()
        )  # and not one byte of the body
        response = http.client.HTTPResponse(sock, method="POST")
        response.begin()  # the server answers without waiting for the body
        body = response.read()
        took = time.monotonic() - started
        sock.close()
        assert took < 2.0, took
        assert response.status == 413, body
        assert response.getheader("Connection") == "close"
        assert json.loads(body)["error"]["code"] == "request_too_large"


# ---------------------------------------------------------------- Expect, and odd bytes in the log ---
def test_expect_100_continue_still_gets_its_100_and_an_odd_expect_is_ignored() -> None:
    with MockServer(speed=0.0) as srv:
        body = _encode({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as sock:
            sock.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + f"Expect: 100-continue\r\nConnection: close\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            )
            assert sock.recv(65536).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
            sock.sendall(body)
            response = http.client.HTTPResponse(sock, method="POST")
            response.begin()
            assert response.status == 200
        headers = [("Content-Type", "application/json"), ("Expect", "\xa1nope")]
        assert send(srv.port, "POST", "/v1/chat/completions", headers, body)[0] == 200
        assert send(srv.port, "POST", "/nowhere", headers, body)[0] == 404


def test_every_route_has_our_expect_handler() -> None:
    app = create_app()
    handlers = {getattr(route, EXPECT_HANDLER) for route in app.router.routes()}
    assert len(handlers) == 1 and next(iter(handlers)).__name__ == "_expect"

    async def expect(request: web.Request) -> None: ...

    route = web.Application().router.add_get("/", expect, expect_handler=expect)
    assert getattr(route, EXPECT_HANDLER) is expect, f"aiohttp no longer keeps it in {EXPECT_HANDLER}"


def test_the_access_log_writes_a_path_not_in_utf8(capsys: pytest.CaptureFixture[str]) -> None:
    log = AccessLog("text")
    log._stdout(log.line("GET", "/v1/\udced\udca0", None, 404, "rejected", 1.0))
    assert "/v1/\\udced\\udca0" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("path", "anthropic"),
    [("/v1/messages/count_tokens", True), ("/v1/messages/batches/x", True), ("/v1/chat/completions/x", False),
     ("/nowhere", False)],
)
def test_a_404_under_an_api_path_is_in_that_apis_words(server: MockServer, path: str, anthropic: bool) -> None:
    status, _, data = send(server.port, "POST", path, [("Content-Type", "application/json")], b"{}")
    body = json.loads(data)
    assert status == 404
    assert (body.get("type") == "error" and "param" not in body["error"]) is anthropic, body
    assert ("param" in body["error"]) is not anthropic, body
