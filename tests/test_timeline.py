"""The journal keeps each stream's timeline: every write's time and size as it left, where the fault struck,
when the client went away; `GET /_mockstream/requests/{id}` shows it beside the plan's due times and the bytes
sent; `GET /_mockstream/events` streams the journal live. Real servers, real sockets, real clients."""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import Any

import httpx
import pytest
from helpers import openai_sdk, plain_http, settled
from httpx_sse import connect_sse

from mockstream.deliver.timeline import LIMIT, Timeline

MESSAGES = [{"role": "user", "content": "Show me the timeline."}]
TOKENS = ["one", " two", " three", " four", " five"]
TOLERANCE_MS = 60  # a loaded CI machine writes late, never early; the bench measures precisely


def detail(srv, entry_id: int) -> dict[str, Any]:
    with plain_http() as http:
        response = http.get(f"{srv.url}/_mockstream/requests/{entry_id}")
    assert response.status_code == 200, response.text
    return response.json()


def raw_body(srv, path: str, body: dict[str, Any]) -> bytes:
    """The response body exactly as it crossed the socket (chunked framing undone by httpx, nothing else)."""
    with plain_http() as http, http.stream("POST", f"{srv.url}{path}", json=body) as response:
        out = b""
        try:
            for piece in response.iter_raw():
                out += piece
        except httpx.HTTPError:  # a fault cut the body: what came before the cut counts
            pass
    return out


@pytest.fixture(scope="module")
def paced(request):
    """A server that keeps its pacing (speed 1)."""
    from mockstream.testing import MockServer

    with MockServer(speed=1) as srv:
        yield srv


@pytest.fixture
def live(paced):
    with plain_http() as http:
        http.post(f"{paced.url}/_mockstream/reset").raise_for_status()
    return paced


# ---------------------------------------------------------------- the timeline of a paced stream ---
def test_every_write_is_on_the_timeline_at_its_offset(live):
    knobs = {"tokens": TOKENS, "ttft_ms": 150, "itl_ms": 60}
    with openai_sdk(live) as client:
        stream = client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, extra_body={"mockstream": knobs}
        )
        text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == "".join(TOKENS)
    [entry] = settled(live)
    full = detail(live, entry["id"])
    timeline = full["timeline"]
    writes, planned = timeline["writes"], timeline["planned"]
    # One write per planned event (nothing was late enough to catch up): the role chunk with the headers,
    # five tokens, the finish chunk, [DONE].
    assert len(planned) == 1 + len(TOKENS) + 2
    assert [kind for _, _, kind in planned] == ["event", *["token"] * 5, "tail", "tail"]
    assert len(writes) == timeline["writes_total"] == len(planned)
    assert not timeline["writes_cut"]
    assert sum(size for _, size, _ in writes) == entry["bytes_sent"]
    assert sum(events for _, _, events in writes) == entry["events_sent"] == len(planned)
    token_due = [150 + 60 * k for k in range(len(TOKENS))]
    assert [due for due, _, kind in planned if kind == "token"] == pytest.approx(token_due, abs=0.01)
    token_writes = [ms for ms, _, _ in writes[1 : 1 + len(TOKENS)]]
    for actual, due in zip(token_writes, token_due, strict=True):
        assert due - 1 <= actual <= due + TOLERANCE_MS, (actual, due)
    assert writes[0][0] < 50  # the role chunk leaves with the headers
    assert timeline["first_token_ms"] == pytest.approx(token_writes[0], abs=0.01)
    assert timeline["last_token_ms"] == pytest.approx(token_writes[-1], abs=0.01)
    assert timeline["fault_ms"] is None and timeline["client_left_ms"] is None
    assert timeline["ended_ms"] == entry["duration_ms"] >= token_writes[-1]


def test_chunk_bytes_pieces_are_each_a_mark_and_coalesced_events_share_one(live):
    body = {"model": "m", "messages": MESSAGES, "stream": True,
            "mockstream": {"tokens": TOKENS, "ttft_ms": 0, "itl_ms": 0, "chunk_bytes": 7, "chunk_gap_ms": 1}}
    sent = raw_body(live, "/v1/chat/completions", body)
    [entry] = settled(live)
    writes = detail(live, entry["id"])["timeline"]["writes"]
    assert all(size <= 7 for _, size, _ in writes)
    assert len(writes) == -(-len(sent) // 7)  # every piece of the body, 7 bytes at a time
    offsets = [ms for ms, _, _ in writes]
    assert offsets == sorted(offsets)

    body["mockstream"] = {"tokens": TOKENS, "ttft_ms": 0, "itl_ms": 0, "events_per_write": 4}
    raw_body(live, "/v1/chat/completions", body)
    entry = settled(live, 2)[-1]
    writes = detail(live, entry["id"])["timeline"]["writes"]
    assert [events for _, _, events in writes] == [4, 4]  # 8 events, four to a write


def test_the_fault_is_marked_where_it_struck(live):
    knobs = {"tokens": TOKENS, "ttft_ms": 100, "itl_ms": 50, "fault": {"kind": "disconnect", "at_token": 3}}
    raw_body(live, "/v1/chat/completions", {"model": "m", "messages": MESSAGES, "stream": True, "mockstream": knobs})
    [entry] = settled(live)
    assert entry["outcome"] == "fault:disconnect"
    timeline = detail(live, entry["id"])["timeline"]
    # three tokens went (100, 150, 200 ms), then the close, due with the fourth (250 ms)
    assert 250 - 1 <= timeline["fault_ms"] <= 250 + TOLERANCE_MS
    assert [kind for _, _, kind in timeline["planned"]].count("fault") == 1
    assert timeline["last_token_ms"] == pytest.approx(timeline["writes"][3][0], abs=0.01)


def test_a_client_that_leaves_is_marked_when_it_left(live):
    knobs = {"tokens": TOKENS * 4, "ttft_ms": 0, "itl_ms": 100}
    body = {"model": "m", "messages": MESSAGES, "stream": True, "mockstream": knobs}
    start = time.monotonic()
    with plain_http() as http, http.stream("POST", f"{live.url}/v1/chat/completions", json=body) as response:
        for _ in response.iter_raw():
            if time.monotonic() - start > 0.35:
                break
    [entry] = settled(live)
    assert entry["outcome"] == "client_disconnected"
    timeline = detail(live, entry["id"])["timeline"]
    left = timeline["client_left_ms"]
    assert left is not None and 300 <= left <= 1000
    assert all(ms <= left for ms, _, _ in timeline["writes"])
    assert 3 <= len(timeline["writes"]) < len(timeline["planned"])


# ---------------------------------------------------------------- the bytes sent, rebuilt from the plan ---
SENT_CASES = {
    "plain": ("/v1/chat/completions", {"tokens": TOKENS}),
    "faker text, jitter": ("/v1/chat/completions", {"random_tokens": 30, "jitter_ms": 2, "itl_ms": 3}),
    "chunk_bytes": ("/v1/chat/completions", {"tokens": TOKENS, "chunk_bytes": 5}),
    "malformed": ("/v1/chat/completions", {"tokens": TOKENS, "fault": {"kind": "malformed", "at_token": 2}}),
    "error event": ("/v1/chat/completions", {"tokens": TOKENS, "fault": {"kind": "error_event", "at_token": 1}}),
    "reset": ("/v1/chat/completions", {"tokens": TOKENS, "fault": {"kind": "reset", "at_token": 2}}),
    "tool calls, crlf": ("/v1/chat/completions", {"tool_calls": [{"name": "f", "arguments": {"a": 1}}],
                                                 "line_ending": "crlf"}),
    "responses": ("/v1/responses", {"random_tokens": 12, "reasoning": "think first"}),
    "messages": ("/v1/messages", {"tokens": TOKENS, "reasoning_tokens": 3}),
    "completions": ("/v1/completions", {"tokens": TOKENS}),
}


@pytest.mark.parametrize("case", SENT_CASES, ids=list(SENT_CASES))
def test_the_bytes_sent_are_the_bytes_the_client_read(srv, case):
    path, knobs = SENT_CASES[case]
    body: dict[str, Any] = {"model": "gpt-4o-mini", "stream": True, "mockstream": knobs, "max_tokens": 64}
    if path == "/v1/completions":
        body["prompt"] = "Say it"
    elif path == "/v1/responses":
        body["input"] = "Say it"
    else:
        body["messages"] = MESSAGES
    received = raw_body(srv, path, body)
    [entry] = settled(srv)
    sent = detail(srv, entry["id"])["sent"]
    assert received, "the client read nothing"
    assert sent["bytes"] == len(received) == entry["bytes_sent"]
    assert sent["text"].encode() == received
    assert sent["truncated"] is False


def test_a_whole_answer_is_kept_as_sent(srv, http):
    response = http.post(f"{srv.base_url}/chat/completions",
                         json={"model": "m", "messages": MESSAGES, "mockstream": {"tokens": TOKENS}})
    [entry] = settled(srv)
    full = detail(srv, entry["id"])
    assert full["timeline"] is None and full["streamed"] is False
    assert full["sent"]["text"] == response.text
    shown = {name.lower(): value for name, value in full["response_headers"].items()}
    assert shown["content-type"].startswith("application/json")


def test_a_large_stream_is_said_to_be_cut(srv):
    body = {"model": "m", "messages": MESSAGES, "stream": True, "mockstream": {"random_tokens": LIMIT + 100}}
    received = raw_body(srv, "/v1/chat/completions", body)
    [entry] = settled(srv)
    full = detail(srv, entry["id"])
    timeline = full["timeline"]
    assert timeline["writes_total"] == LIMIT + 100 + 3
    assert len(timeline["writes"]) == LIMIT and timeline["writes_cut"] is True
    assert full["sent"]["bytes"] == len(received)
    if len(received) > full["sent"]["limit"]:
        assert full["sent"]["truncated"] is True
        assert received.startswith(full["sent"]["text"].encode())


def test_the_detail_has_the_response_headers(srv, http):
    with http.stream("POST", f"{srv.base_url}/chat/completions",
                     json={"model": "m", "messages": MESSAGES, "stream": True}) as response:
        response.read()
        headers = response.headers
    [entry] = settled(srv)
    shown = {name.lower(): value for name, value in detail(srv, entry["id"])["response_headers"].items()}
    for name in ("x-request-id", "content-type", "x-mockstream-scenario", "cache-control"):
        assert shown[name] == headers[name], name


@pytest.mark.parametrize("bad", ["999999", "abc", "-1"])
def test_an_unknown_request_id_is_a_404(srv, http, bad):
    response = http.get(f"{srv.url}/_mockstream/requests/{bad}")
    assert response.status_code == 404
    error = response.json()["error"]
    assert bad in error["message"] and error["code"] == "not_found"


def test_a_rejected_request_says_why(srv, http):
    http.post(f"{srv.base_url}/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    [entry] = settled(srv)
    assert entry["outcome"] == "rejected" and entry["rejected"] == "invalid_json"
    full = detail(srv, entry["id"])
    assert full["timeline"] is None and full["response_headers"] is None


# ---------------------------------------------------------------- the live feed ---
def test_the_feed_says_hello_then_each_request_as_it_opens_progresses_and_closes(live):
    knobs = {"tokens": TOKENS, "ttft_ms": 0, "itl_ms": 150}
    seen: list[tuple[str, Any]] = []
    with plain_http(timeout=10) as http, connect_sse(http, "GET", f"{live.url}/_mockstream/events") as source:
        events = source.iter_sse()
        hello = next(events)
        assert hello.event == "hello"
        assert hello.json()["workers"] == 1 and hello.json()["worker"] is None

        def request() -> None:
            time.sleep(0.05)
            raw_body(live, "/v1/chat/completions",
                     {"model": "m", "messages": MESSAGES, "stream": True, "mockstream": knobs})

        thread = threading.Thread(target=request)
        thread.start()
        for event in events:
            seen.append((event.event, event.json()))
            if event.event == "closed":
                break
        thread.join()
    names = [name for name, _ in seen]
    assert names[0] == "opened" and names[-1] == "closed"
    progress = [item for name, data in seen if name == "progress" for item in data]
    assert len(progress) >= 2, names  # a 600 ms stream reports its writes while it runs
    marks: list[Any] = []
    for item in progress:  # each progress event carries the writes from `from` on
        marks[item["from"]:] = item["writes"]
    closed = seen[-1][1]
    assert closed["outcome"] == "completed"
    assert marks == closed["timeline"]["writes"][: len(marks)]
    assert closed["sent"]["text"].count("data: ") == len(closed["timeline"]["planned"])


def test_a_new_subscriber_gets_the_journal_as_it_stands(srv, http):
    http.post(f"{srv.base_url}/chat/completions", json={"model": "m", "messages": MESSAGES, "stream": True})
    [entry] = settled(srv)
    with plain_http(timeout=5) as client, connect_sse(client, "GET", f"{srv.url}/_mockstream/events") as source:
        events = source.iter_sse()
        assert next(events).event == "hello"
        first = next(events)
    assert first.event == "closed" and first.json()["id"] == entry["id"]


def test_the_info_route_says_which_process_answers(srv, http):
    info = http.get(f"{srv.url}/_mockstream/info").json()
    import os

    assert info["pid"] == os.getpid() and info["workers"] == 1 and info["metrics"] is False


def test_an_open_feed_does_not_hold_the_server_when_it_stops():
    from mockstream.testing import MockServer

    srv = MockServer().start()
    sock = socket.create_connection((srv.host, srv.port))
    sock.sendall(b"GET /_mockstream/events HTTP/1.1\r\nHost: x\r\n\r\n")
    sock.settimeout(3)
    head = b""
    while b"event: hello" not in head:
        head += sock.recv(65536)
    start = time.monotonic()
    srv.stop()
    assert time.monotonic() - start < 3
    rest = b""
    while chunk := sock.recv(65536):
        rest += chunk
    assert rest.endswith(b"0\r\n\r\n")  # the feed ended its body: the server closed it cleanly
    sock.close()


# ---------------------------------------------------------------- --admin off ---
def test_without_the_admin_nothing_is_kept_or_served(make_server, http):
    srv = make_server(admin=False)
    response = http.post(f"{srv.base_url}/chat/completions", json={"model": "m", "messages": MESSAGES, "stream": True})
    assert response.status_code == 200 and "[DONE]" in response.text
    for path in ("requests", "requests/1", "events", "info", "ui", "reset"):
        assert http.get(f"{srv.url}/_mockstream/{path}").status_code == 404, path
    [entry] = list(srv.state.journal)
    assert entry.timeline is None and entry.plan is None


# ---------------------------------------------------------------- the timeline itself ---
def test_past_its_limit_a_timeline_counts_writes_and_their_gaps():
    bounds = (1.0, 10.0, 100.0)
    timeline = Timeline(origin=100.0, gap_bounds=bounds)
    for k in range(LIMIT + 4):
        timeline.wrote(100.0 + k * 0.005, 10, 1)  # a write every 5 ms
    assert timeline.count == LIMIT + 4 and timeline.kept == LIMIT
    assert timeline.entries()[1] == (5.0, 10, 1)
    assert timeline.gap_counts == [0, 4, 0, 0]  # the four writes past the limit: 5 ms gaps, in (1, 10]
    assert timeline.gap_sum_ms == pytest.approx(20.0, abs=0.01)
    assert list(timeline.gaps_ms())[:3] == pytest.approx([5.0, 5.0, 5.0], abs=0.01)
    without = Timeline(origin=0.0)
    for k in range(LIMIT + 1):
        without.wrote(k * 0.001, 1, 1)
    assert without.kept == LIMIT
    assert without.gap_counts is None and without.count == LIMIT + 1


def test_json_of_the_detail_is_plain(srv, http):
    http.post(f"{srv.base_url}/chat/completions", json={"model": "m", "messages": MESSAGES, "stream": True})
    [entry] = settled(srv)
    text = json.dumps(detail(srv, entry["id"]))
    assert "NaN" not in text and "Infinity" not in text
