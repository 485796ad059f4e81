"""The recorder: a proxy to an upstream that streams each answer back as it arrives and keeps it as a scenario
file. The upstream is a second real mockstream on a real socket (jitter, chunk_bytes, tool calls, faults);
clients are raw sockets, httpx and the real SDKs."""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import re
import selectors
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from helpers import (
    MOCKSTREAM,
    anthropic_sdk,
    async_openai_sdk,
    clean_env,
    journal,
    openai_sdk,
    settled,
    wait_until,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from mockstream.plan.recording import RecordedWrite, Recording
from mockstream.plan.schema import Scenario, load_scenarios
from mockstream.process.cli import on_miss
from mockstream.record import Proxy, attach
from mockstream.record.store import Redactor, document, write_scenario
from mockstream.testing import MockServer

KEY = "sk-proj-Recorder0123456789abcdefghijklmnop"  # long enough to be looked for inside bodies
ANT_KEY = "sk-ant-api03-Recorder0123456789abcdefghijklmnop"
ACCOUNT = re.compile(r"ACCT-\d{6}")  # what the tests' --redact takes out
CHAT = "/v1/chat/completions"
UPSTREAM_MODEL = "gpt-upstream"  # the upstream answers it with a scenario of its own
FILE_NAME = re.compile(
    r"(chat|completions|responses|messages|eventsource)-[A-Za-z0-9._-]+-\d+-[0-9a-f]{8}(-\d+)?\.yaml"
)
TOOL_KNOBS = {
    "content": "Let me look that up.",
    "tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}, {"name": "get_time", "arguments": {}}],
    "chunk_bytes": 7,
    "chunk_gap_ms": 0,  # the writes stay apart (one HTTP chunk each) without the 1 ms between them
    "jitter_ms": 3,
}


def chat(knobs: dict[str, Any] | None = None, user: str = "What is the weather in Paris?", **fields: Any) -> dict:
    body: dict[str, Any] = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": user}], "stream": True}
    body.update(fields)
    if knobs is not None:
        body["mockstream"] = knobs
    return body


# ---------------------------------------------------------------- servers ---
@pytest.fixture(scope="module")
def upstream() -> Iterator[MockServer]:
    """The upstream: no pacing (speed 0), a route under a prefix too (for an upstream URL with a path), and a
    scenario of its own that a request names by its model (so a recorder with no knobs in the request shows
    where the answer came from)."""
    own = Scenario.from_dict({"name": UPSTREAM_MODEL, "content": "From upstream."})
    with MockServer([own], speed=0, routes={"/gateway/v1/chat/completions": "chat"}) as srv:
        yield srv


@pytest.fixture(scope="module")
def paced() -> Iterator[MockServer]:
    """An upstream that keeps its pacing (speed 1), for the tests that measure time."""
    with MockServer(speed=1) as srv:
        yield srv


@dataclass
class Recorder:
    server: MockServer
    proxy: Proxy
    out: Path

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def files(self) -> list[Path]:
        return sorted(self.out.glob("*.yaml")) if self.out.exists() else []

    def only_recording(self) -> dict[str, Any]:
        files = self.files()
        assert len(files) == 1, files
        return yaml.safe_load(files[0].read_text(encoding="utf-8"))


@pytest.fixture
def make_recorder(tmp_path: Path) -> Iterator:
    """`make_recorder(upstream_url, **options)`: a server recording every request (as `mockstream record`)."""
    started: list[MockServer] = []

    def make(upstream_url: str, *, record_all: bool = True, **options: Any) -> Recorder:
        server = MockServer(record_all=record_all, on_miss="proxy")
        out = tmp_path / f"recordings-{len(started)}"
        proxy = attach(server.app, upstream_url, out, redact=[ACCOUNT.pattern], **options)
        started.append(server.start())
        return Recorder(server, proxy, out)

    yield make
    for server in reversed(started):
        server.stop()


@pytest.fixture
def recorder(make_recorder, upstream: MockServer) -> Recorder:
    return make_recorder(upstream.url)


# ---------------------------------------------------------------- a raw socket ---
@dataclass
class Wire:
    """A response as read off the socket: its HTTP chunks, when each arrived, and how the body ended."""

    status: int
    headers: dict[str, str]
    chunks: list[bytes]
    arrivals: list[float]  # s from sending the request to having each chunk whole
    ending: str  # complete, cut (the connection closed mid-body) or reset

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    def kept(self) -> dict[str, str]:
        """The headers that a proxy passes through and that do not vary between two requests."""
        prefixes = ("content-type", "x-request-id", "x-ratelimit-", "retry-after", "openai-version")
        return {k: v for k, v in self.headers.items() if k.startswith(prefixes)}


def raw_exchange(url: str, path: str, body: bytes, headers: dict[str, str] | None = None) -> Wire:
    """POST over a plain socket (Connection: close) and read until the server closes or resets it."""
    host, port = url.removeprefix("http://").split(":")
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", "Content-Type: application/json",
             f"Content-Length: {len(body)}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    received: list[tuple[float, bytes]] = []
    reset = False
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        started = time.perf_counter()
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        try:
            while data := sock.recv(65536):
                received.append((time.perf_counter() - started, data))
        except ConnectionResetError:
            reset = True
    stream = b"".join(data for _, data in received)
    ends, total = [], 0
    for at, data in received:
        total += len(data)
        ends.append((total, at))
    head, _, rest = stream.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    offset = len(head) + 4
    chunks, arrivals, complete = [], [], False

    def arrival(end: int) -> float:
        return next(at for total, at in ends if total >= end)

    if "chunked" in headers.get("transfer-encoding", ""):
        pos = 0
        while True:
            size_end = rest.find(b"\r\n", pos)
            if size_end < 0:
                break
            size = int(rest[pos:size_end].split(b";")[0], 16)
            if size == 0:
                complete = True
                break
            start = size_end + 2
            if len(rest) < start + size + 2:
                break
            chunks.append(rest[start:start + size])
            arrivals.append(arrival(offset + start + size))
            pos = start + size + 2
    else:
        length = int(headers.get("content-length", len(rest)))
        chunks, arrivals = [rest[:length]], [arrival(offset + len(rest))] if rest else []
        complete = len(rest) >= length
    ending = "reset" if reset else ("complete" if complete else "cut")
    return Wire(int(status_line.split()[1]), headers, chunks, arrivals, ending)


def both(recorder: Recorder, upstream: MockServer, body: dict, path: str = CHAT,
         headers: dict[str, str] | None = None) -> tuple[Wire, Wire]:
    """The same request through the recorder and straight to the upstream."""
    raw = json.dumps(body).encode()
    headers = {"Authorization": f"Bearer {KEY}", **(headers or {})}
    return raw_exchange(recorder.url, path, raw, headers), raw_exchange(upstream.url, path, raw, headers)


def writes_of(recording: dict[str, Any]) -> list[bytes]:
    return [w["text"].encode() if "text" in w else base64.b64decode(w["base64"]) for w in recording["writes"]]


# ---------------------------------------------------------------- what the client sees ---
def test_a_raw_socket_sees_exactly_what_the_upstream_sent_chunk_by_chunk(recorder, upstream):
    proxied, direct = both(recorder, upstream, chat(TOOL_KNOBS))
    assert direct.status == 200 and direct.ending == "complete" and len(direct.chunks) > 50
    assert all(len(chunk) <= 7 for chunk in direct.chunks)
    assert proxied.status == direct.status
    assert proxied.kept() == direct.kept()
    assert proxied.chunks == direct.chunks  # the same bytes in the same writes
    assert proxied.ending == "complete"
    assert b'"name":"get_weather"' in proxied.body


def test_the_recording_holds_the_upstreams_writes_its_status_headers_and_request(recorder, upstream):
    body = chat(TOOL_KNOBS)
    proxied, direct = both(recorder, upstream, body)
    saved = recorder.only_recording()
    recording = saved["recording"]
    assert writes_of(recording) == direct.chunks == proxied.chunks  # each upstream write is one recorded write
    assert recording["status"] == 200 and recording["end"] == "completed"
    assert recording["headers"]["content-type"] == direct.headers["content-type"]
    assert recording["headers"]["x-request-id"] == direct.headers["x-request-id"]
    assert recording["upstream"] == upstream.url
    assert "authorization" not in {name.lower() for name in recording["headers"]}
    assert recording["request"] == body
    at = [w["at_ms"] for w in recording["writes"]]
    assert at == sorted(at) and 0 <= at[0] < 1000
    assert saved["version"] == 1
    assert saved["description"].startswith(f"Recorded from {upstream.url}: POST {CHAT} -> 200, ")
    assert saved["match"] == {"dialect": "chat", "model": r"gpt\-4o\-mini", "turn": 0, "last_role": "user",
                              "user": r"\AWhat\ is\ the\ weather\ in\ Paris\?\Z", "system": r"\A\Z", "tools": [],
                              "body": {"stream": True}}
    # what replay reads is what was sent
    [scenario] = load_scenarios(recorder.out)
    assert scenario.recording is not None
    assert scenario.recording.body == direct.body
    assert [write.data for write in scenario.recording.writes] == direct.chunks
    entry = settled(recorder.server)[-1]
    assert entry["outcome"] == "recorded" and entry["status"] == 200
    assert entry["recording"] == str(recorder.files()[0])


def test_openai_python_sync_and_async_see_what_the_upstream_sent(recorder, upstream):
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Weather?"}],
            "extra_body": {"mockstream": TOOL_KNOBS}}

    def chunks(server: Any) -> list[dict]:
        with openai_sdk(server, api_key=KEY) as sdk:
            return [c.model_dump() for c in sdk.chat.completions.create(stream=True, **body)]

    direct = chunks(upstream)
    assert any(c["choices"] and c["choices"][0]["delta"].get("tool_calls") for c in direct)
    assert chunks(recorder) == direct

    async def async_chunks(server: Any) -> list[dict]:
        async with async_openai_sdk(server, api_key=KEY) as sdk:
            return [c.model_dump() async for c in await sdk.chat.completions.create(stream=True, **body)]

    import asyncio

    assert asyncio.run(async_chunks(recorder)) == asyncio.run(async_chunks(upstream)) == direct
    # two requests, two takes (the SDK leaves at `data: [DONE]`: the last chunk may still be on its way)
    assert wait_until(lambda: len(recorder.files()) == 2, timeout=5), recorder.files()
    assert not any(KEY in path.read_text(encoding="utf-8") for path in recorder.files())


def test_the_anthropic_sdk_sees_what_the_upstream_sent_and_its_key_stays_out_of_the_file(recorder, upstream):
    knobs = {"tokens": [f"Your key is {ANT_KEY}."], "chunk_bytes": 7, "chunk_gap_ms": 0,
             "tool_calls": [{"name": "lookup", "arguments": {"q": "x"}}]}

    def events(server: Any) -> list[dict]:
        with anthropic_sdk(server, api_key=ANT_KEY) as sdk, sdk.messages.stream(
            model="claude-test-model", max_tokens=64, messages=[{"role": "user", "content": "Hi"}],
            extra_body={"mockstream": knobs},
        ) as stream:
            return [event.model_dump() for event in stream]

    direct = events(upstream)
    assert any(e["type"] == "content_block_start" and e["content_block"]["type"] == "tool_use" for e in direct)
    assert events(recorder) == direct  # the client still reads the key the upstream sent back
    assert wait_until(recorder.files, timeout=5)
    text = recorder.files()[0].read_text(encoding="utf-8")
    assert ANT_KEY not in text and "[REDACTED]" in text
    assert recorder.only_recording()["match"]["dialect"] == "messages"


def test_the_first_byte_arrives_when_the_upstream_sent_it_not_when_the_stream_ends(make_recorder, paced):
    recorder = make_recorder(paced.url)
    body = chat({"tokens": ["first", " second"], "ttft_ms": 0, "itl_ms": 300})
    wire = raw_exchange(recorder.url, CHAT, json.dumps(body).encode())
    assert wire.ending == "complete"
    firsts = [at for chunk, at in zip(wire.chunks, wire.arrivals) if b'"first"' in chunk]
    seconds = [at for chunk, at in zip(wire.chunks, wire.arrivals) if b'" second"' in chunk]
    assert firsts and seconds
    assert firsts[0] < 0.1, f"the first token came {firsts[0] * 1000:.0f} ms late: the proxy buffered"
    assert seconds[0] >= 0.28  # ...and it really came before the upstream sent the second
    writes = recorder.only_recording()["recording"]["writes"]
    first_at = next(w["at_ms"] for w in writes if '"first"' in w["text"])
    second_at = next(w["at_ms"] for w in writes if '" second"' in w["text"])
    assert first_at < 100 and 280 <= second_at < 1000


def test_spaced_writes_are_recorded_one_by_one_at_their_times(make_recorder, paced):
    recorder = make_recorder(paced.url)
    body = {"model": "gpt-3.5-turbo-instruct", "prompt": "Hi", "stream": True,
            "mockstream": {"tokens": ["Hi"], "ttft_ms": 0, "chunk_bytes": 7, "chunk_gap_ms": 10}}
    proxied = raw_exchange(recorder.url, "/v1/completions", json.dumps(body).encode())
    assert proxied.ending == "complete" and all(len(chunk) <= 7 for chunk in proxied.chunks)
    writes = recorder.only_recording()["recording"]["writes"]
    assert writes_of({"writes": writes}) == proxied.chunks  # each its own write
    gaps = sorted(b["at_ms"] - a["at_ms"] for a, b in itertools.pairwise(writes))
    assert gaps[len(gaps) // 2] >= 7, gaps  # 10 ms apart at the upstream, and so in the recording
    assert writes[-1]["at_ms"] - writes[0]["at_ms"] >= 0.7 * 10 * (len(writes) - 1)


def test_a_client_that_leaves_early_stops_getting_bytes_but_the_whole_answer_is_recorded(make_recorder, paced):
    recorder = make_recorder(paced.url)
    body = chat({"tokens": ["one", " two", " three", " four", " five"], "ttft_ms": 0, "itl_ms": 60})
    with httpx.Client(timeout=10) as client, client.stream("POST", f"{recorder.url}{CHAT}", json=body) as response:
        first = next(response.iter_raw())
    assert first.startswith(b"data: {")  # the first event, then the client is gone
    assert wait_until(lambda: recorder.files(), timeout=5)
    direct = raw_exchange(paced.url, CHAT, json.dumps(body).encode())
    recording = recorder.only_recording()["recording"]
    assert recording["end"] == "completed"
    assert b"".join(writes_of(recording)) == direct.body  # to the end, though the client had left
    entry = settled(recorder.server)[-1]
    assert entry["outcome"] == "recorded" and entry["client_disconnected"] is True
    assert entry["bytes_sent"] < len(direct.body)


def test_an_upstream_url_with_a_path_prefixes_the_request_path(make_recorder, upstream):
    recorder = make_recorder(f"{upstream.url}/gateway")
    reply = httpx.post(f"{recorder.url}{CHAT}", json=chat({"content": "via the gateway"}, stream=False), timeout=10)
    assert reply.status_code == 200
    assert reply.json()["choices"][0]["message"]["content"] == "via the gateway"
    assert journal(upstream, path="/gateway/v1/chat/completions")


def test_the_clients_headers_pass_through_asking_for_uncompressed_bytes(recorder, upstream):
    httpx.post(f"{recorder.url}{CHAT}", json=chat({"content": "ok"}), timeout=10,
               headers={"Authorization": f"Bearer {KEY}", "X-Team": "blue", "Accept-Encoding": "gzip"})
    entries = [{k.lower(): v for k, v in e["headers"].items()} for e in journal(upstream)]
    seen = [headers for headers in entries if headers.get("x-team") == "blue"][-1]
    assert seen["authorization"] == "***"  # it arrived (the upstream's journal masks it)
    assert seen["accept-encoding"] == "identity"
    assert seen["host"] == upstream.url.removeprefix("http://")


# ---------------------------------------------------------------- failures, recorded ---
@pytest.mark.parametrize(
    ("fault", "end", "ending"),
    [
        ({"kind": "disconnect", "at_token": 2}, "upstream_closed", "cut"),
        ({"kind": "reset", "at_token": 2}, "reset", "reset"),
        ({"kind": "error_event", "at_token": 2, "code": "server_is_overloaded"}, "completed", "complete"),
    ],
)
def test_a_stream_that_fails_is_recorded_with_its_ending_and_the_client_sees_the_same(recorder, upstream, fault,
                                                                                       end, ending):
    body = chat({"tokens": ["a", "b", "c", "d"], "fault": fault})
    proxied, direct = both(recorder, upstream, body)
    assert direct.ending == ending
    assert proxied.ending == ending
    assert proxied.chunks == direct.chunks
    recording = recorder.only_recording()["recording"]
    assert recording["end"] == end
    assert b"".join(writes_of(recording)) == direct.body
    if fault["kind"] == "error_event":
        assert b"server_is_overloaded" in direct.body
    outcome = settled(recorder.server)[-1]["outcome"]
    assert outcome == ("recorded" if end == "completed" else f"recorded:{end}")


@pytest.mark.parametrize("status", [429, 500])
def test_an_http_error_is_recorded_with_its_headers(recorder, upstream, status):
    body = chat({"fault": {"kind": "http_error", "status": status, "retry_after": 7}})
    proxied, direct = both(recorder, upstream, body)
    assert proxied.status == direct.status == status
    assert proxied.body == direct.body and json.loads(proxied.body)["error"]
    assert proxied.headers["retry-after"] == "7"
    recording = recorder.only_recording()["recording"]
    assert recording["status"] == status
    assert recording["headers"]["retry-after"] == "7"
    assert recording["headers"]["content-type"].startswith("application/json")
    if status == 429:
        assert recording["headers"]["x-ratelimit-remaining-requests"] == "0"
    assert b"".join(writes_of(recording)) == direct.body


def test_a_silent_upstream_ends_the_recording_as_a_timeout_and_the_client_sees_a_cut(make_recorder, upstream):
    recorder = make_recorder(upstream.url, timeout=0.3)
    body = chat({"tokens": ["a", "b", "c"], "fault": {"kind": "stall", "at_token": 1}})
    started = time.monotonic()
    wire = raw_exchange(recorder.url, CHAT, json.dumps(body).encode())
    assert time.monotonic() - started < 3
    assert wire.status == 200 and wire.ending == "cut" and wire.chunks
    recording = recorder.only_recording()["recording"]
    assert recording["end"] == "timeout"
    assert b"".join(writes_of(recording)) == wire.body


def test_an_upstream_silent_before_its_headers_is_a_504_and_nothing_is_recorded(make_recorder, upstream):
    recorder = make_recorder(upstream.url, timeout=0.3)
    body = chat({"fault": {"kind": "slow_headers", "ms": 3000}})
    started = time.monotonic()
    reply = httpx.post(f"{recorder.url}{CHAT}", json=body, timeout=10)
    assert time.monotonic() - started < 2.5
    assert reply.status_code == 504 and reply.json()["error"]["code"] == "upstream_timeout"
    assert recorder.files() == []
    assert settled(recorder.server)[-1]["outcome"] == "upstream_timeout"


@pytest.mark.parametrize(("kind", "error"), [("disconnect", httpx.RemoteProtocolError), ("reset", httpx.ReadError)])
def test_an_upstream_that_drops_the_connection_before_its_headers_drops_the_clients(recorder, upstream, kind,
                                                                                    error):
    body = chat({"fault": {"kind": kind}}, stream=False)  # a whole answer: the fault strikes before any byte
    for url in (upstream.url, recorder.url):
        with pytest.raises(error):
            httpx.post(f"{url}{CHAT}", json=body, timeout=10)
    assert recorder.files() == []
    assert settled(recorder.server)[-1]["outcome"] == ("upstream_closed" if kind == "disconnect" else "upstream_reset")


def test_a_request_the_upstream_refuses_is_forwarded_and_recorded_pinned_by_its_body(recorder, upstream):
    proxied, direct = both(recorder, upstream, {"model": "gpt-4o-mini"})  # no messages: a 400
    assert proxied.status == direct.status == 400 and proxied.body == direct.body
    wire = raw_exchange(recorder.url, CHAT, b"{not json")
    assert wire.status == 400 and b"invalid_json" in wire.body
    files = sorted(recorder.files(), key=lambda path: path.name.split("-")[1])
    assert len(files) == 2
    saved = [yaml.safe_load(path.read_text(encoding="utf-8")) for path in files]
    assert saved[0]["match"] == {"dialect": "chat", "body": {"model": r"gpt\-4o\-mini"}}
    assert saved[1]["match"]["dialect"] == "chat" and list(saved[1]["match"]["body"]) == ["mockstream_unparsed"]
    assert all(s["recording"]["status"] == 400 and "answers no other" in s["description"] for s in saved)
    assert {p.name.split("-")[1] for p in files} == {"gpt", "unknown"}  # the model of the body, if it has one
    assert load_scenarios(recorder.out)


def test_a_request_its_dialect_cannot_read_is_recorded_but_never_answers_another(recorder, upstream):
    refused = raw_exchange(recorder.url, CHAT, json.dumps({"model": "gpt-4o-mini", "messages": []}).encode())
    assert refused.status == 400
    [path] = recorder.files()
    names = recorder.server.call(lambda: recorder.server.state.scenarios.names())
    assert path.stem not in names  # not added to the live scenarios
    with MockServer(load_scenarios(recorder.out), speed=0) as replay:
        reply = httpx.post(f"{replay.url}{CHAT}", json=chat(stream=False), timeout=10)
        assert reply.status_code == 200, reply.text  # the default answers it, not the recorded 400
        assert settled(replay)[-1]["scenario"] != path.stem


def test_requests_that_differ_only_in_system_tools_or_stream_are_recorded_apart_and_replay_apart(make_recorder):
    own = [
        Scenario.from_dict({"name": "pirate", "match": {"system": "pirate"}, "content": "Arr."}),
        Scenario.from_dict({"name": "tooled", "match": {"tools": ["get_weather"]}, "content": "Tooled."}),
        Scenario.from_dict({"name": "plain", "match": {"user": "Same"}, "content": "Plain."}),
    ]
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    bodies = [
        chat(user="Same", stream=False),
        chat(user="Same", stream=False, messages=[{"role": "system", "content": "You are a pirate."},
                                                  {"role": "user", "content": "Same"}]),
        chat(user="Same", stream=False, tools=[tool]),
        chat(user="Same", stream=True),
    ]
    with MockServer(own, speed=0) as source:
        recorder = make_recorder(source.url)
        recorded = [raw_exchange(recorder.url, CHAT, json.dumps(body).encode()).body for body in bodies]
    assert [b"Plain." in recorded[0], b"Arr." in recorded[1], b"Tooled." in recorded[2]] == [True] * 3
    assert recorded[3].startswith(b"data: ")
    files = recorder.files()
    assert len(files) == 4 and not any(re.search(r"-\d+-[0-9a-f]{8}-2$", f.stem) for f in files)  # no takes
    with MockServer(load_scenarios(recorder.out), speed=0) as replay:
        replayed = [raw_exchange(replay.url, CHAT, json.dumps(body).encode()).body for body in bodies]
    assert replayed == recorded


def test_a_responses_loop_on_previous_response_id_is_recorded_turn_by_turn_and_replays(make_recorder):
    loop = Scenario.from_dict({"name": "loop", "match": {"user": "Go|And then"},
                               "turns": [{"content": "First turn."}, {"content": "Second turn."}]})

    def run(url: str) -> list[dict]:
        first = httpx.post(f"{url}/v1/responses", json={"model": "gpt-4o-mini", "input": "Go"}, timeout=10)
        assert first.status_code == 200, first.text
        second = httpx.post(f"{url}/v1/responses", timeout=10, json={
            "model": "gpt-4o-mini", "input": "And then?", "previous_response_id": first.json()["id"]})
        assert second.status_code == 200, second.text
        return [first.json(), second.json()]

    def text(answer: dict) -> str:
        return "".join(part["text"] for item in answer["output"] for part in item.get("content", []))

    with MockServer([loop], speed=0) as source:
        recorder = make_recorder(source.url)
        recorded = run(recorder.url)
    assert [text(a) for a in recorded] == ["First turn.", "Second turn."]
    turns = sorted(yaml.safe_load(path.read_text())["match"]["turn"] for path in recorder.files())
    assert turns == [0, 1]
    with MockServer(load_scenarios(recorder.out), speed=0, on_miss="error") as replay:
        replayed = run(replay.url)
    assert [text(a) for a in replayed] == ["First turn.", "Second turn."]
    assert replayed[1]["id"] == recorded[1]["id"]  # the recorded answer, not a new one


def test_the_model_rule_leaves_a_redacted_part_open_and_keeps_the_secret_out(recorder):
    httpx.post(f"{recorder.url}{CHAT}", json=chat({"content": "x"}, model="ft:gpt-ACCT-123456", stream=False),
               timeout=10)
    [path] = recorder.files()
    text = path.read_text(encoding="utf-8")
    assert "123456" not in text
    rule = re.compile(yaml.safe_load(text)["match"]["model"])
    assert rule.fullmatch("ft:gpt-ACCT-123456") and rule.fullmatch("ft:gpt-ACCT-999999")
    assert not rule.fullmatch("gpt-4o-mini")


def test_credentials_in_the_upstream_url_are_refused_by_the_cli_and_never_reach_a_file(make_recorder, upstream):
    from mockstream.process.flags import _upstream

    with pytest.raises(ValueError, match="credentials"):
        _upstream("http://user:hunter2secret@api.example.com")
    host = upstream.url.removeprefix("http://")
    recorder = make_recorder(f"http://user:hunter2secret@{host}")
    assert "hunter2secret" not in recorder.proxy.upstream
    reply = httpx.post(f"{recorder.url}{CHAT}", json=chat({"content": "ok"}, stream=False), timeout=10)
    assert reply.status_code == 200
    [path] = recorder.files()
    text = path.read_text(encoding="utf-8")
    assert "hunter2secret" not in text and "user@" not in text and upstream.url in text


def test_a_client_that_leaves_an_endless_stream_ends_its_relay_within_the_deadline(make_recorder, paced):
    recorder = make_recorder(paced.url, timeout=1.0)  # the deadline: min(timeout, 5 s) once the client left
    body = chat({"random_tokens": 1000, "ttft_ms": 0, "itl_ms": 20})  # 20 s of tokens
    with httpx.Client(timeout=10) as client, client.stream("POST", f"{recorder.url}{CHAT}", json=body) as response:
        first = next(response.iter_raw())
    assert first.startswith(b"data: {")
    left = time.monotonic()
    assert wait_until(lambda: not recorder.server.call(lambda: len(recorder.proxy._relays)), timeout=4)
    assert time.monotonic() - left < 3.5
    entry = settled(recorder.server)[-1]
    assert entry["outcome"] == "client_disconnected" and entry["client_disconnected"] is True
    assert recorder.files() == []  # it did not end: nothing recorded


def test_a_long_recording_file_is_written_off_the_event_loop(recorder, monkeypatch):
    import asyncio

    import mockstream.record.proxy as proxy_module

    on_loop: list[bool] = []
    real = proxy_module.write_scenario

    def spy(*args: Any) -> Any:
        try:
            asyncio.get_running_loop()
            on_loop.append(True)
        except RuntimeError:
            on_loop.append(False)
        return real(*args)

    monkeypatch.setattr(proxy_module, "write_scenario", spy)
    short = raw_exchange(recorder.url, CHAT, json.dumps(chat({"content": "short"})).encode())
    assert short.ending == "complete" and len(recorder.files()) == 1
    long = chat({"random_tokens": proxy_module.INLINE_WRITES + 50, "chunk_gap_ms": 0})  # one write per token
    wire = raw_exchange(recorder.url, CHAT, json.dumps(long).encode())
    assert wire.ending == "complete" and len(wire.chunks) > proxy_module.INLINE_WRITES
    assert len(recorder.files()) == 2  # written before the client saw the end
    assert on_loop == [True, False]  # a short one inline, a long one in a thread


def test_a_long_model_name_keeps_the_file_name_short(recorder):
    model = "m" * 300
    reply = httpx.post(f"{recorder.url}{CHAT}", json=chat({"content": "x"}, model=model, stream=False), timeout=10)
    assert reply.status_code == 200
    [path] = recorder.files()
    assert len(path.name.encode()) <= 255 and f"-{'m' * 80}-0-" in path.name


def _gzip_upstream() -> tuple[socket.socket, str]:
    """An upstream that compresses its answer whatever the request asked (one connection, then done)."""
    import gzip
    import threading

    body = gzip.compress(b'{"id": "chatcmpl-1", "choices": []}')
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        with contextlib.suppress(OSError):
            conn, _ = listener.accept()
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, rest = data.partition(b"\r\n\r\n")
                length = int(re.search(rb"(?i)content-length: *(\d+)", head)[1])
                while len(rest) < length:
                    rest += conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
                             b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)

    threading.Thread(target=serve, daemon=True).start()
    return listener, f"http://127.0.0.1:{listener.getsockname()[1]}"


def test_an_answer_compressed_despite_identity_reaches_the_client_but_is_not_recorded(make_recorder):
    listener, url = _gzip_upstream()
    with listener:
        recorder = make_recorder(url)
        reply = httpx.post(f"{recorder.url}{CHAT}", json=chat(stream=False), timeout=10)
    assert reply.status_code == 200 and reply.json()["id"] == "chatcmpl-1"  # it decodes what came
    assert recorder.files() == []
    entry = settled(recorder.server)[-1]
    assert entry["outcome"] == "not_recorded" and "compressed" in entry["recording_error"]


def test_the_strict_and_on_miss_help_say_a_miss_still_goes_upstream_with_an_upstream():
    from mockstream.process.cli import SERVE_FLAGS

    helps = {flag.name: flag.help for flag in SERVE_FLAGS}
    assert "upstream" in helps["strict"] and "--strict" in helps["on-miss"]


def test_an_upstream_that_cannot_be_reached_is_a_502_in_the_dialects_words_and_nothing_is_recorded(make_recorder):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens there once closed
    recorder = make_recorder(f"http://127.0.0.1:{port}")
    reply = httpx.post(f"{recorder.url}{CHAT}", json=chat(), timeout=10)
    assert reply.status_code == 502
    assert reply.json()["error"]["code"] == "upstream_unreachable"
    anthropic = httpx.post(f"{recorder.url}/v1/messages", timeout=10,
                           json={"model": "claude-test-model", "max_tokens": 8, "messages": []})
    assert anthropic.status_code == 502
    assert anthropic.json()["type"] == "error" and anthropic.json()["error"]["message"]
    assert recorder.files() == []
    assert [e["outcome"] for e in settled(recorder.server, 2)] == ["upstream_unreachable"] * 2


# ---------------------------------------------------------------- secrets ---
def test_no_secret_reaches_a_file_not_even_inside_bodies_or_split_across_writes(recorder, upstream):
    echoed = f"Your key {KEY} and account ACCT-123456 are safe."  # one token: its bytes in one run, cut in 7s
    knobs = {"tokens": [echoed], "chunk_bytes": 7, "chunk_gap_ms": 0}
    body = chat(knobs, user=f"My key is {KEY}, my account ACCT-654321")
    proxied, direct = both(recorder, upstream, body,
                           headers={"Cookie": "session=cookie-secret-0123456789abcdef", "api-key": KEY})
    assert proxied.chunks == direct.chunks
    assert KEY.encode() in direct.body and KEY.encode() in proxied.body  # the client reads what was sent
    text = recorder.files()[0].read_text(encoding="utf-8")
    for secret in (KEY, "cookie-secret-0123456789abcdef", "ACCT-123456", "ACCT-654321", "Bearer"):
        assert secret not in text, secret
    assert not ACCOUNT.search(text)
    saved = yaml.safe_load(text)
    assert saved["recording"]["request"]["messages"][0]["content"] == "My key is [REDACTED], my account [REDACTED]"
    joined = b"".join(writes_of(saved["recording"]))
    assert joined == direct.body.replace(KEY.encode(), b"[REDACTED]").replace(b"ACCT-123456", b"[REDACTED]")
    # the match rule leaves the redacted parts open, so the same request still matches it
    user_rule = re.compile(saved["match"]["user"])
    assert user_rule.search(f"My key is {KEY}, my account ACCT-654321")
    assert not user_rule.search("My key is something else entirely")


def test_redaction_finds_a_secret_split_over_writes_and_keeps_the_other_boundaries():
    redaction = Redactor([r"ACCT-\d{6}"]).for_request({"Authorization": f"Bearer {KEY}"})
    data = f"a{KEY}b ACCT-123456 c".encode()
    cuts = [0, 3, 10, 20, 30, len(data) - 4, len(data)]
    writes = [RecordedWrite(i / 10, data[a:b]) for i, (a, b) in enumerate(itertools.pairwise(cuts))]
    redacted = redaction.writes(writes)
    # the replacement goes with the write the secret began in; writes left empty are gone
    assert [w.data for w in redacted] == [b"a[REDACTED]", b"b [REDACTED]", b" c"]
    assert [w.at for w in redacted] == [0.0, 0.4, 0.5]
    untouched = Redactor([r"nothing-here"]).for_request({"Authorization": "Bearer short"})
    assert untouched.writes(writes) == tuple(writes)


def test_a_short_placeholder_key_is_not_hunted_in_bodies():
    redaction = Redactor().for_request({"Authorization": "Bearer mockstream"})
    assert redaction.text("This is mockstream.") == "This is mockstream."


# ---------------------------------------------------------------- files ---
def test_the_same_request_twice_keeps_both_as_takes_1_and_2(recorder, upstream):
    body = chat({"content": "Same again."})
    first, second = both(recorder, upstream, body)[0], raw_exchange(recorder.url, CHAT, json.dumps(body).encode())
    assert first.body == second.body
    files = sorted(recorder.files(), key=lambda path: len(path.name))
    assert len(files) == 2
    stem = files[0].stem
    assert [f.name for f in files] == [f"{stem}.yaml", f"{stem}-2.yaml"]
    assert all(FILE_NAME.fullmatch(f.name) for f in files)
    assert re.fullmatch(r"chat-gpt-4o-mini-0-[0-9a-f]{8}", stem)
    loaded = {s.name: s for s in load_scenarios(recorder.out)}
    assert set(loaded) == {stem, f"{stem}-2"}
    assert loaded[stem].recording.take == 1 and loaded[f"{stem}-2"].recording.take == 2
    assert "take" not in yaml.safe_load(files[0].read_text())["recording"]
    # a different request gets a different hash
    raw_exchange(recorder.url, CHAT, json.dumps(chat({"content": "Other."})).encode())
    assert len({re.search(r"-([0-9a-f]{8})(-2)?$", f.stem)[1] for f in recorder.files()}) == 2


def test_a_model_name_is_made_safe_for_a_file_name(recorder):
    httpx.post(f"{recorder.url}{CHAT}", json=chat({"content": "x"}, model="org/My Model:v1", stream=False),
               timeout=10)
    [path] = recorder.files()
    assert re.fullmatch(r"chat-org_My_Model_v1-0-[0-9a-f]{8}\.yaml", path.name)
    assert yaml.safe_load(path.read_text())["match"]["model"] == re.escape("org/My Model:v1")


def test_a_recording_is_added_to_the_scenarios_and_answers_the_next_miss(make_recorder, upstream):
    recorder = make_recorder(upstream.url, record_all=False)  # serve --upstream: record on a miss
    body = chat(user="Record me", model=UPSTREAM_MODEL, stream=False)  # no knobs: a request knobs script is no miss
    first = raw_exchange(recorder.url, CHAT, json.dumps(body).encode())
    assert b"From upstream." in first.body
    [path] = recorder.files()
    names = recorder.server.call(lambda: recorder.server.state.scenarios.names())
    assert path.stem in names
    second = raw_exchange(recorder.url, CHAT, json.dumps(body).encode())
    assert second.body == first.body
    assert len(recorder.files()) == 1  # replayed, not recorded again
    entries = settled(recorder.server, 2)
    assert entries[0]["outcome"] == "recorded"
    assert entries[1]["scenario"] == path.stem and not entries[1]["outcome"].startswith("recorded")


def test_the_out_directory_may_change_while_the_proxy_runs(recorder, tmp_path):
    raw_exchange(recorder.url, CHAT, json.dumps(chat({"content": "one"})).encode())
    other = tmp_path / "elsewhere"
    recorder.server.call(lambda: setattr(recorder.proxy, "out", other))
    raw_exchange(recorder.url, CHAT, json.dumps(chat({"content": "two"})).encode())
    assert len(recorder.files()) == 1 and len(list(other.glob("*.yaml"))) == 1


# ---------------------------------------------------------------- the bytes round-trip ---
_TRICKY = st.sampled_from(["\r", "\r\n", "\n", "\x00", "\x85", "\u2028", "\ufeff", "😀", " ", "'", '"', "\\", "#",
                           ": ", "- ", "\t", "data: ", "\x1b", "é"])
_TEXT = st.lists(st.one_of(_TRICKY, st.text(max_size=8)), max_size=12).map("".join)


@settings(max_examples=150, deadline=None)
@given(texts=st.lists(_TEXT, min_size=1, max_size=4), cuts=st.lists(st.integers(0, 200), max_size=6),
       binary=st.binary(max_size=16))
def test_any_bytes_round_trip_through_a_recording_file_write_by_write(texts, cuts, binary):
    data = "".join(texts).encode() + binary
    points = sorted({0, len(data), *(c for c in cuts if c < len(data))})  # cuts may split a character
    pieces = [data[a:b] for a, b in itertools.pairwise(points)] or [b"x"]
    writes = tuple(RecordedWrite(i * 0.0125, piece) for i, piece in enumerate(pieces))
    recording = Recording(200, (("content-type", "text/event-stream"),), writes, "completed")
    with tempfile.TemporaryDirectory() as out:
        path, scenario = write_scenario(
            Path(out), "chat-m-0-00000000", lambda name, take: document(name, "d", {"dialect": "chat"}, recording),
            lambda name: False,
        )
        [loaded] = load_scenarios(path)
    for got in (scenario.recording, loaded.recording):
        assert got is not None
        assert [w.data for w in got.writes] == list(pieces)
        assert [round(w.at, 6) for w in got.writes] == [round(w.at, 6) for w in writes]


def test_a_write_yaml_would_not_give_back_is_written_as_base64(monkeypatch):
    import mockstream.record.store as store

    def folding(text: str) -> Any:  # a YAML reader that folds NEL, as some do
        doc = store.read_yaml.__wrapped__(text)  # type: ignore[attr-defined]
        for write in doc["recording"]["writes"]:
            if "text" in write:
                write["text"] = write["text"].replace("\x85", "\n")
        return doc

    from mockstream.plan import schema

    folding.__wrapped__ = schema.read_yaml  # type: ignore[attr-defined]
    writes = (RecordedWrite(0.0, "\x85".encode()), RecordedWrite(0.001, b"data: ok\n\n"))
    recording = Recording(200, (), writes, "completed")
    with tempfile.TemporaryDirectory() as out:
        # libyaml gives NEL back: text, read back the same by libyaml and by PyYAML
        path, scenario = write_scenario(
            Path(out), "chat-m-0-00000000", lambda name, take: document(name, "d", {}, recording), lambda name: False
        )
        assert yaml.safe_load(path.read_text(encoding="utf-8"))["recording"]["writes"][0]["text"] == "\x85"
        assert scenario.recording is not None and scenario.recording.writes == writes
        monkeypatch.setattr(store, "read_yaml", folding)
        path, _ = write_scenario(
            Path(out), "chat-m-0-11111111", lambda name, take: document(name, "d", {}, recording), lambda name: False
        )
        saved = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert saved["recording"]["writes"] == [{"at_ms": 0.0, "base64": "woU="}, {"at_ms": 1.0, "text": "data: ok\n\n"}]


def test_recordings_are_dumped_by_libyaml_when_pyyaml_has_it():
    from mockstream.record import store

    if hasattr(yaml, "CSafeDumper"):
        assert issubclass(store._Dumper, yaml.CSafeDumper)


# ---------------------------------------------------------------- the command line ---
def test_on_miss_defaults_to_proxy_with_an_upstream_else_error_with_recordings_else_default():
    class Loaded:
        def __init__(self, recording: object) -> None:
            self.recording = recording

    assert on_miss(None, "http://up", []) == "proxy"
    assert on_miss(None, None, [Loaded(None), Loaded(object())]) == "error"
    assert on_miss(None, None, [Loaded(None)]) == "default"
    assert on_miss("default", "http://up", []) == "default"
    from mockstream.process.cli import UsageError

    with pytest.raises(UsageError, match="--upstream"):
        on_miss("proxy", None, [])


def test_record_help_documents_every_flag_and_its_variable_and_serve_takes_a_bare_strict():
    from mockstream.process.cli import RECORD_FLAGS, SERVE_FLAGS, _env_defaults, _parser

    result = subprocess.run([MOCKSTREAM, "record", "--help"], capture_output=True, text=True, env=clean_env(),
                            timeout=30)
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert {"upstream", "out", "redact", "upstream-timeout", "host", "port"} <= {flag.name for flag in RECORD_FLAGS}
    for flag in RECORD_FLAGS:
        assert f"--{flag.name}" in text and flag.env in text
    assert "(env MOCKSTREAM_OUT; default: recordings)" in text
    parser, _ = _parser()
    assert parser.parse_args(["serve", "--strict"]).strict is True
    assert "strict" not in vars(parser.parse_args(["serve"]))
    assert _env_defaults(SERVE_FLAGS, {"MOCKSTREAM_STRICT": "on"})["strict"] is True
    assert _env_defaults(SERVE_FLAGS, {})["strict"] is False
    # a regex keeps its commas: the variable holds one (join several with |)
    assert _env_defaults(RECORD_FLAGS, {"MOCKSTREAM_REDACT": r"\d{3,6}|x,y"})["redact"] == [r"\d{3,6}|x,y"]
    values = vars(parser.parse_args(["record", "--redact", "a", "--redact", "b,c"]))
    assert values["redact"] == ["a", "b,c"]


def _start(tmp_path: Path, *args: str, env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    with (tmp_path / "stderr.log").open("w") as log:  # the child keeps its own copy
        process = subprocess.Popen([MOCKSTREAM, *args], stdout=subprocess.PIPE, stderr=log, text=True, env=env)
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(30):
            process.kill()
            raise AssertionError(f"no start line; stderr: {(tmp_path / 'stderr.log').read_text()}")
    return process, process.stdout.readline()


def test_mockstream_record_from_the_environment_records_through_its_upstream(tmp_path, upstream):
    out = tmp_path / "recorded"
    env = clean_env(MOCKSTREAM_UPSTREAM=upstream.url, MOCKSTREAM_OUT=str(out), MOCKSTREAM_REDACT=ACCOUNT.pattern,
                    MOCKSTREAM_ACCESS_LOG="off")
    process, line = _start(tmp_path, "record", "--port", "0", env=env)
    try:
        found = re.search(r"listening on (http://127\.0\.0\.1:\d+)\b", line)
        assert found, line
        assert f"recording {upstream.url} to {out}" in line
        body = chat({"tokens": ["From the CLI, ACCT-000001."], "chunk_bytes": 7})
        wire = raw_exchange(found[1], CHAT, json.dumps(body).encode(), {"Authorization": f"Bearer {KEY}"})
        assert wire.status == 200 and b"ACCT-" in wire.body
        [path] = out.glob("*.yaml")
        text = path.read_text(encoding="utf-8")
        assert KEY not in text and "ACCT-0" not in text
        [scenario] = load_scenarios(out)
        assert scenario.recording is not None and scenario.recording.status == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()


def test_mockstream_record_needs_an_upstream_and_serve_proxy_needs_one_too():
    result = subprocess.run([MOCKSTREAM, "record", "--port", "0"], capture_output=True, text=True, env=clean_env(),
                            timeout=30)
    assert result.returncode == 2 and "--upstream" in result.stderr and result.stdout == ""
    result = subprocess.run([MOCKSTREAM, "serve", "--on-miss", "proxy"], capture_output=True, text=True,
                            env=clean_env(), timeout=30)
    assert result.returncode == 2 and "--upstream" in result.stderr
    bad = subprocess.run([MOCKSTREAM, "record", "--upstream", "ftp://x", "--redact", "("], capture_output=True,
                         text=True, env=clean_env(), timeout=30)
    assert bad.returncode == 2 and ("--upstream" in bad.stderr or "--redact" in bad.stderr)


def test_serve_with_an_upstream_records_what_no_scenario_matches(tmp_path, upstream):
    out = tmp_path / "misses"
    (tmp_path / "scenarios").mkdir()
    (tmp_path / "scenarios" / "greeting.yaml").write_text(
        "name: greeting\nmatch: {user: '^Hello'}\ncontent: Hello from a scenario.\n")
    env = clean_env(MOCKSTREAM_ACCESS_LOG="off")
    process, line = _start(tmp_path, "serve", "--port", "0", "--speed", "0", "--scenarios",
                           str(tmp_path / "scenarios"), "--upstream", upstream.url, "--out", str(out), env=env)
    try:
        url = re.search(r"listening on (http://127\.0\.0\.1:\d+)\b", line)[1]
        matched = httpx.post(f"{url}{CHAT}", json=chat(user="Hello there", stream=False), timeout=10)
        assert matched.json()["choices"][0]["message"]["content"] == "Hello from a scenario."
        assert not out.exists()
        missed = httpx.post(f"{url}{CHAT}", json=chat(user="Other", stream=False, model=UPSTREAM_MODEL),
                            timeout=10)
        assert missed.json()["choices"][0]["message"]["content"] == "From upstream."
        assert len(list(out.glob("*.yaml"))) == 1
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()


def test_the_servers_own_headers_are_on_what_it_relays_and_on_its_own_502(make_recorder, upstream):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens there once closed
    relaying, unreachable = make_recorder(upstream.url), make_recorder(f"http://127.0.0.1:{port}")
    for recorder in (relaying, unreachable):
        recorder.server.state.settings.headers["x-served-by"] = "recorder"  # as `--header` sets it
    relayed = httpx.post(f"{relaying.url}{CHAT}", json=chat(), timeout=10)
    refused = httpx.post(f"{unreachable.url}{CHAT}", json=chat(), timeout=10)
    assert (relayed.status_code, refused.status_code) == (200, 502)
    assert relayed.headers.get("x-served-by") == refused.headers.get("x-served-by") == "recorder"
