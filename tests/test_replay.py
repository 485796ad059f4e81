"""Replaying a recording: the recorded writes, at their offsets, with the recorded status, headers and ending;
every knob and fault stacks on top. Recordings here are made from a real mockstream answer read off the
socket (what the recorder writes is tested in test_record.py)."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
import time
from typing import Any

import httpx
import openai
import pytest
import wire
from helpers import journal, openai_sdk, settled

from mockstream.deliver.frames import TAIL, TOKEN
from mockstream.dialects.recorded import kind_of
from mockstream.plan.recording import RecordedWrite, Recording
from mockstream.plan.schema import Scenario
from mockstream.testing import MockServer

MESSAGES = [{"role": "user", "content": "Tell me something."}]


def recorded(name: str, writes: list[tuple[float, bytes]], **recording: Any) -> Scenario:
    """A scenario holding a recording of these (at_ms, bytes) writes, matched by its name as the model."""
    raw = {
        "name": name,
        "recording": {
            "status": recording.pop("status", 200),
            "headers": recording.pop("headers", {"content-type": "text/event-stream; charset=utf-8"}),
            "writes": [_write(at, data) for at, data in writes],
            **recording,
        },
    }
    return Scenario.from_dict(raw, f"<{name}>")


def _write(at: float, data: bytes) -> dict[str, Any]:
    try:
        return {"at_ms": at, "text": data.decode()}
    except UnicodeDecodeError:
        return {"at_ms": at, "base64": base64.b64encode(data).decode()}


def captured(url: str, knobs: dict[str, Any], dialect: str = "chat") -> tuple[bytes, dict[str, str]]:
    """A real answer's body and headers, read off the socket from a mockstream server."""
    reply = wire.read(url, dialect, wire.request_body(dialect, knobs))
    return reply.raw, dict(reply.headers)


def sse_events(body: bytes) -> list[bytes]:
    return [event + b"\n\n" for event in body.split(b"\n\n") if event]


def stream_of(url: str, name: str, dialect: str = "chat", **fields: Any) -> wire.Reply:
    return wire.read(url, dialect, wire.request_body(dialect, None, model=name, **fields))


@pytest.fixture(scope="module")
def upstream():
    """The mockstream a recording is captured from (speed 0: its bytes, not its timing)."""
    with MockServer(speed=0) as srv:
        yield srv


def test_a_replay_sends_the_recorded_writes_at_their_offsets(make_server):
    writes = [(0, b'data: {"a":1}\n\n'), (80, b'data: {"b"'), (160, b':2}\n\ndata: [DONE]\n\n')]
    srv = make_server([recorded("timed", writes)], speed=1)
    reply = stream_of(srv.url, "timed")
    assert reply.status == 200 and reply.error is None
    assert reply.raw == b"".join(data for _, data in writes)
    assert reply.pieces == [len(data) for _, data in writes]  # one read per recorded write: 80 ms apart
    arrivals = [event.at for event in reply.events]
    assert arrivals[1] - arrivals[0] == pytest.approx(0.160, abs=0.06)  # the event the third write completed
    entry = settled(srv)[0]
    assert entry["recording"] == "<timed>" and entry["outcome"] == "completed" and entry["events_sent"] == 3


def test_speed_and_replay_speed_scale_the_recorded_offsets(make_server):
    writes = [(0, b"data: 1\n\n"), (400, b"data: 2\n\n")]
    srv = make_server([recorded("slow", writes)], speed=2)
    assert stream_of(srv.url, "slow").events[1].at == pytest.approx(0.2, abs=0.08)  # speed 2 halves it
    reply = wire.read(srv.url, "chat", wire.request_body("chat", {"replay_speed": 4}, model="slow"))
    assert reply.events[1].at == pytest.approx(0.05, abs=0.04)  # and replay_speed 4 quarters that
    reply = wire.read(srv.url, "chat", wire.request_body("chat", {"replay_speed": 0}, model="slow"))
    assert reply.events[1].at < 0.04  # 0: at once


def test_a_recorded_stream_reads_the_same_through_openai_python(upstream, make_server):
    knobs = {"content": "Hello there, recorded world.", "seed": 3}
    body, _ = captured(upstream.url, knobs)
    srv = make_server([recorded("chatty", [(i * 2, e) for i, e in enumerate(sse_events(body))])], speed=0)
    with openai_sdk(srv) as client:
        stream = client.chat.completions.create(model="chatty", messages=MESSAGES, stream=True)
        text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == "Hello there, recorded world."
    direct = stream_of(srv.url, "chatty")
    assert direct.raw == body  # byte for byte, ids and all


def test_a_recorded_responses_stream_reads_through_openai_python(upstream, make_server):
    body, _ = captured(upstream.url, {"content": "Responses, replayed."}, "responses")
    srv = make_server([recorded("resp", [(0, body)])], speed=0)
    with openai_sdk(srv) as client:
        events = list(client.responses.create(model="resp", input="hi", stream=True))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "Responses, replayed."
    assert events[-1].type == "response.completed"


def test_a_recorded_429_replays_with_its_status_headers_and_body(make_server):
    error = {"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}}
    headers = {"content-type": "application/json", "retry-after": "7", "x-ratelimit-remaining-requests": "0"}
    scenario = recorded("limited", [(5, json.dumps(error).encode())], status=429, headers=headers)
    srv = make_server([scenario], speed=0)
    with httpx.Client() as http:
        answer = http.post(f"{srv.url}/v1/chat/completions", json={"model": "limited", "messages": MESSAGES})
    assert answer.status_code == 429 and answer.json() == error
    assert answer.headers["retry-after"] == "7" and answer.headers["x-ratelimit-remaining-requests"] == "0"
    assert answer.headers["content-length"] == str(len(answer.content))  # a whole body, not a stream
    with openai_sdk(srv) as client, pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="limited", messages=MESSAGES, stream=True)
    assert caught.value.status_code == 429 and "Rate limit reached" in str(caught.value)
    assert [e["status"] for e in settled(srv, 2)] == [429, 429]


def test_a_recorded_in_stream_error_replays_as_one(upstream, make_server):
    knobs = {"content": "one two three four", "fault": {"kind": "error_event", "at_token": 2, "message": "boom"}}
    body, _ = captured(upstream.url, knobs)
    srv = make_server([recorded("errs", [(0, body)])], speed=0)
    with openai_sdk(srv) as client, pytest.raises(openai.APIError, match="boom"):
        for _ in client.chat.completions.create(model="errs", messages=MESSAGES, stream=True):
            pass


def test_a_recorded_cut_is_cut_again(make_server):
    writes = [(0, b'data: {"choices":[{"index":0,"delta":{"content":"par'), (10, b'tial"}}]}\n\n')]
    srv = make_server([recorded("cut", writes, end="upstream_closed")], speed=0)
    reply = stream_of(srv.url, "cut")
    assert reply.raw == b"".join(data for _, data in writes)
    assert isinstance(reply.error, httpx.RemoteProtocolError)  # the body never ended: no last chunk
    assert settled(srv)[0]["outcome"] == "replay:upstream_closed"


def test_a_recorded_reset_resets(make_server):
    srv = make_server([recorded("rst", [(0, b"data: 1\n\n")], end="reset")], speed=0)
    request = json.dumps({"model": "rst", "messages": MESSAGES, "stream": True}).encode()
    with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%b" % (len(request), request)
        )
        received = b""
        with pytest.raises(ConnectionResetError):
            while chunk := sock.recv(65536):
                received += chunk
    assert b"data: 1\n\n" in received and not received.endswith(b"0\r\n\r\n")


def test_a_recorded_timeout_goes_silent_until_the_client_leaves(make_server):
    srv = make_server([recorded("quiet", [(0, b"data: 1\n\n")], end="timeout")], speed=0)
    reply = wire.read(srv.url, "chat", wire.request_body("chat", None, model="quiet"), timeout=0.5)
    assert reply.raw == b"data: 1\n\n" and isinstance(reply.error, httpx.ReadTimeout)
    assert settled(srv)[0]["outcome"] == "client_disconnected"


def test_chunk_bytes_recuts_a_replay_and_keeps_every_byte(upstream, make_server):
    body, _ = captured(upstream.url, {"content": "cut me into small pieces"})
    srv = make_server([recorded("recut", [(0, body)])], speed=1)
    reply = wire.read(srv.url, "chat", wire.request_body("chat", {"chunk_bytes": 9, "chunk_gap_ms": 5}, model="recut"))
    assert reply.raw == body
    assert max(reply.pieces) <= 9 and len(reply.pieces) >= len(body) // 9


@pytest.mark.parametrize("at_token", [0, 3])
def test_a_fault_strikes_a_replay_at_its_recorded_tokens(upstream, make_server, at_token):
    body, _ = captured(upstream.url, {"tokens": ["a", "b", "c", "d", "e"]})
    srv = make_server([recorded("faulty", [(0, body)])], speed=0)
    knobs = {"fault": {"kind": "error_event", "at_token": at_token, "message": "struck"}}
    reply = wire.read(srv.url, "chat", wire.request_body("chat", knobs, model="faulty"))
    assert wire.text("chat", reply.events) == "abcde"[:at_token]
    assert "struck" in wire.errors("chat", reply.events)[0].data
    knobs = {"fault": {"kind": "disconnect", "at_token": at_token}}
    reply = wire.read(srv.url, "chat", wire.request_body("chat", knobs, model="faulty"))
    assert wire.text("chat", reply.events) == "abcde"[:at_token] and reply.error is not None


def vllm_chunk(content: str, finish: str | None = None) -> bytes:
    choice = {"index": 0, "delta": {"content": content}, "finish_reason": finish}
    return b"data: " + json.dumps({"id": "chatcmpl-v", "object": "chat.completion.chunk", "choices": [choice]}).encode()


def test_a_last_piece_sent_with_its_finish_reason_is_a_token(make_server):
    """vLLM sends the last piece of text and the finish_reason in one chunk: it counts as a token."""
    assert kind_of(vllm_chunk("c", "stop") + b"\n\n") == TOKEN
    assert kind_of(vllm_chunk("", "stop") + b"\n\n") == TAIL
    body = b"".join(vllm_chunk(c, "stop" if c == "c" else None) + b"\n\n" for c in "abc") + b"data: [DONE]\n\n"
    srv = make_server([recorded("vllm", [(0, body)])], speed=0)
    knobs = {"fault": {"kind": "error_event", "at_token": 3, "message": "struck"}}
    reply = wire.read(srv.url, "chat", wire.request_body("chat", knobs, model="vllm"))
    assert wire.text("chat", reply.events) == "abc"
    assert "struck" in wire.errors("chat", reply.events)[0].data


def test_ttft_and_itl_in_the_request_override_the_recorded_timing(upstream, make_server):
    body, _ = captured(upstream.url, {"tokens": ["a", "b", "c"]})
    srv = make_server([recorded("retimed", [(0, body)])], speed=1)
    knobs = {"ttft_ms": 100, "itl_ms": 100}
    reply = wire.read(srv.url, "chat", wire.request_body("chat", knobs, model="retimed"))
    tokens = [e.at for e in reply.events if wire.delta_of("chat", e, text_only=True)]
    assert len(tokens) == 3 and reply.raw == body
    assert tokens[0] == pytest.approx(0.1, abs=0.06) and tokens[2] - tokens[0] == pytest.approx(0.2, abs=0.06)


def test_a_recorded_whole_json_answer_replays_after_its_time(make_server):
    message = {"role": "assistant", "content": "hi"}
    answer = {"object": "chat.completion", "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}
    scenario = recorded("whole", [(150, json.dumps(answer).encode())], headers={"content-type": "application/json"})
    srv = make_server([scenario], speed=1)
    with openai_sdk(srv) as client:
        started = time.monotonic()
        completion = client.chat.completions.create(model="whole", messages=MESSAGES)
        took = time.monotonic() - started
    assert completion.choices[0].message.content == "hi" and 0.12 < took < 1.0
    assert journal(srv)[0]["recording"] == "<whole>"


def test_validate_names_the_file_and_field_of_a_bad_recording(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: bad\nrecording:\n  status: 200\n  writes:\n"
        "    - {at_ms: 5, text: 'data: 1'}\n    - {at_ms: 2, text: 'x'}\n    - {at_ms: 9, base64: '@@'}\n"
        "  end: finished\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "mockstream", "validate", str(bad)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert f"{bad}: recording.writes[1].at_ms: writes must be in time order" in result.stderr
    assert f"{bad}: recording.writes[2].base64: not valid base64" in result.stderr
    assert f"{bad}: recording.end: expected one of: completed, upstream_closed, reset, timeout" in result.stderr


def test_a_recording_joins_its_body_and_finds_its_answer_id_once():
    writes = (RecordedWrite(0, b'data: {"type":"response.created","response":{"id":"resp_'),
              RecordedWrite(0.1, b'abc"}}\n\n'))
    recording = Recording(200, (("content-type", "text/event-stream"),), writes)
    assert recording.body == b"".join(write.data for write in writes)
    assert recording.body is recording.body  # worked out once, not per read
    assert recording.answer_id == "resp_abc"
    assert Recording(200, (), ()).answer_id is None
    assert recording == Recording(200, (("content-type", "text/event-stream"),), writes)
