"""The request journal and the admin API under `/_mockstream/`, read over HTTP as a test would."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import httpx
import openai
import pytest
from helpers import journal, settled
from openai import OpenAI

from mockstream.testing import MockServer

MESSAGES = [{"role": "user", "content": "What did you see?"}]
FIELDS = {"id", "time", "method", "path", "headers", "body", "scenario", "session", "status", "outcome",
          "events_sent", "bytes_sent", "duration_ms", "first_byte_at", "last_byte_at"}


def chat(http: httpx.Client, srv: MockServer, knobs: dict[str, Any] | None = None, *, stream: bool = True,
         headers: dict[str, str] | None = None, model: str = "gpt-4o-mini") -> httpx.Response:
    body: dict[str, Any] = {"model": model, "messages": MESSAGES, "stream": stream}
    if knobs is not None:
        body["mockstream"] = knobs
    return http.post(f"{srv.base_url}/chat/completions", json=body, headers=headers or {})


# ---------------------------------------------------------------- fields ---
def test_an_entry_holds_the_request_and_what_was_sent(srv):
    knobs = {"tokens": ["Hel", "lo", "!"]}
    before = time.time()
    with OpenAI(base_url=srv.base_url, api_key="sk-secret-key-123", max_retries=0, timeout=10,
                http_client=openai.DefaultHttpxClient(verify=False),
                default_headers={"X-Mockstream-Session": "s-42"}) as client:
        stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True,
                                                extra_body={"mockstream": knobs})
        raw = stream.response
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "Hello!"
    after = time.time()
    [entry] = journal(srv)
    assert set(entry) >= FIELDS
    assert isinstance(entry["id"], int)
    assert before - 0.5 <= entry["time"] <= after
    assert (entry["method"], entry["path"]) == ("POST", "/v1/chat/completions")
    headers = {k.lower(): v for k, v in entry["headers"].items()}
    assert headers["authorization"] != "Bearer sk-secret-key-123"
    assert "sk-secret-key-123" not in json.dumps(entry)
    assert headers["x-mockstream-session"] == "s-42"
    assert headers["user-agent"].startswith("OpenAI/Python")
    assert entry["body"] == {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True, "mockstream": knobs}
    assert (entry["scenario"], entry["session"]) == ("default", "s-42")
    assert (entry["status"], entry["outcome"]) == (200, "completed")
    assert entry["events_sent"] == 1 + 3 + 1 + 1  # role, three deltas, finish, [DONE]
    assert entry["bytes_sent"] > 0
    assert raw.headers["x-request-id"].startswith("req_")
    assert entry["duration_ms"] >= 0
    assert entry["time"] <= entry["first_byte_at"] <= entry["last_byte_at"] <= after


def test_bytes_sent_is_the_body_the_client_received(srv, http):
    response = chat(http, srv, {"content": "Count my bytes, 你好."})
    [entry] = journal(srv)
    assert entry["bytes_sent"] == len(response.content)
    assert entry["events_sent"] == response.content.count(b"\n\n")


def test_plain_answers_are_journaled_with_their_body_size(srv, http):
    response = chat(http, srv, {"content": "plain"}, stream=False)
    [entry] = journal(srv)
    assert (entry["status"], entry["outcome"]) == (200, "completed")
    assert entry["bytes_sent"] == len(response.content)


def test_byte_times_show_the_pacing(make_server, http):
    srv = make_server(speed=1)
    chat(http, srv, {"tokens": ["a", "b", "c", "d", "e"], "ttft_ms": 200, "itl_ms": 50})
    [entry] = journal(srv)
    first_to_last = entry["last_byte_at"] - entry["first_byte_at"]
    assert 0.37 <= first_to_last <= 1.0, first_to_last  # role at once; last delta at 200 + 4 * 50 ms
    assert entry["first_byte_at"] - entry["time"] < 0.15
    assert 380 <= entry["duration_ms"] <= 1000


def test_a_client_that_stops_reading_shows_when_it_left(make_server, http):
    srv = make_server(speed=1)
    knobs = {"tokens": ["tok "] * 200, "itl_ms": 20}
    with http.stream("POST", f"{srv.base_url}/chat/completions",
                     json={"model": "m", "messages": MESSAGES, "stream": True, "mockstream": knobs}) as response:
        lines = 0
        for line in response.iter_lines():
            lines += line.startswith("data: ")
            if lines == 4:
                break
        left = time.time()
    [entry] = settled(srv, 1)
    assert entry["outcome"] == "client_disconnected"
    assert entry["status"] == 200
    assert 4 <= entry["events_sent"] < 50
    assert entry["last_byte_at"] <= left + 0.2


# ---------------------------------------------------------------- outcomes ---
def test_outcomes(srv, http):
    chat(http, srv, {"content": "fine"})
    chat(http, srv, {"fault": {"kind": "error_event", "at_token": 1}})
    chat(http, srv, {"fault": {"kind": "http_error", "status": 502}})
    http.post(f"{srv.base_url}/chat/completions", content=b"{oops", headers={"Content-Type": "application/json"})
    chat(http, srv, {"no_such_knob": 1})
    entries = settled(srv, 5)
    assert [(e["status"], e["outcome"]) for e in entries] == [
        (200, "completed"),
        (200, "fault:error_event"),
        (502, "fault:http_error"),
        (400, "rejected"),
        (400, "rejected"),
    ]
    assert [e["id"] for e in entries] == sorted(e["id"] for e in entries)
    assert len({e["id"] for e in entries}) == 5
    assert entries[3]["body"] is None  # the JSON could not be parsed
    assert entries[4]["body"]["mockstream"] == {"no_such_knob": 1}
    assert entries[1]["fault"]["kind"] == "error_event"


def test_a_client_that_leaves_during_the_first_token_wait(make_server):
    srv = make_server(speed=1)
    body = json.dumps({"model": "m", "messages": MESSAGES, "stream": True,
                       "mockstream": {"content": "never sent", "ttft_ms": 30_000}}).encode()
    with socket.create_connection((srv.host, srv.port), timeout=10) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body) + body)
        assert b"200 OK" in sock.recv(65536)
        time.sleep(0.1)
    [entry] = settled(srv, 1)
    assert entry["outcome"] == "client_disconnected"
    assert entry["events_sent"] == 1  # the role chunk goes out at once; the first token waits for ttft
    assert entry["duration_ms"] < 5000


# ---------------------------------------------------------------- filters ---
def test_filters(make_server, http):
    from mockstream import Scenario

    srv = make_server([Scenario.from_dict({"name": "quiet", "content": "shh"})])
    chat(http, srv, headers={"X-Mockstream-Session": "a"}, stream=False)
    chat(http, srv, headers={"X-Mockstream-Session": "b", "X-Mockstream-Scenario": "quiet"}, stream=False)
    chat(http, srv, headers={"X-Mockstream-Session": "a"}, model="quiet", stream=False)
    chat(http, srv, stream=False)
    ids = [e["id"] for e in journal(srv)]
    assert len(ids) == 4

    def picked(**filters: str) -> list[int]:
        return [ids.index(e["id"]) for e in journal(srv, **filters)]

    assert picked(session="a") == [0, 2]
    assert picked(session="b") == [1]
    assert picked(session="nobody") == []
    assert picked(scenario="quiet") == [1, 2]
    assert picked(scenario="default") == [0, 3]
    assert picked(path="/v1/chat/completions") == [0, 1, 2, 3]
    assert picked(path="/v1/embeddings") == []
    assert picked(session="a", scenario="quiet") == [2]


# ---------------------------------------------------------------- bounds and what is not recorded ---
def test_the_journal_keeps_only_the_newest_entries(make_server, http):
    srv = make_server(journal_size=5)
    for i in range(8):
        chat(http, srv, {"content": f"answer {i}"}, stream=False)
    entries = journal(srv)
    assert len(entries) == 5
    assert [e["body"]["mockstream"]["content"] for e in entries] == [f"answer {i}" for i in range(3, 8)]
    assert [e["id"] for e in entries] == sorted(e["id"] for e in entries)


def test_health_and_admin_calls_are_not_recorded(srv, http):
    assert http.get(f"{srv.url}/healthz").status_code == 200
    journal(srv)
    http.get(f"{srv.url}/_mockstream/scenarios")
    http.delete(f"{srv.url}/_mockstream/requests")
    http.post(f"{srv.url}/_mockstream/reset")
    assert journal(srv) == []
    chat(http, srv, stream=False)
    assert http.get(f"{srv.url}/healthz").status_code == 200
    assert [e["path"] for e in journal(srv)] == ["/v1/chat/completions"]


def test_delete_clears_the_journal(srv, http):
    chat(http, srv, stream=False)
    chat(http, srv, stream=False)
    assert len(journal(srv)) == 2
    response = http.delete(f"{srv.url}/_mockstream/requests")
    assert response.status_code == 200
    assert journal(srv) == []
    chat(http, srv, stream=False)
    assert len(journal(srv)) == 1


# ---------------------------------------------------------------- runtime scenarios ---
def test_post_scenarios_adds_and_replaces(make_server, http):
    srv = make_server()
    url = f"{srv.url}/_mockstream/scenarios"
    names = [s["name"] for s in http.get(url).json()]
    assert "default" in names and "runtime" not in names

    added = http.post(url, json={"version": 1, "name": "runtime", "description": "added at run time",
                                 "content": "from the admin API"})
    assert added.status_code == 200
    assert added.json() == {"added": ["runtime"]}
    listed = {s["name"]: s for s in http.get(url).json()}
    assert listed["runtime"]["description"] == "added at run time"
    response = chat(http, srv, stream=False, headers={"X-Mockstream-Scenario": "runtime"})
    assert response.json()["choices"][0]["message"]["content"] == "from the admin API"

    replaced = http.post(url, json={"name": "runtime", "content": "replaced"})
    assert replaced.status_code == 200
    response = chat(http, srv, stream=False, model="runtime")
    assert response.json()["choices"][0]["message"]["content"] == "replaced"
    assert [s["name"] for s in http.get(url).json()].count("runtime") == 1
    assert journal(srv, scenario="runtime")[-1]["outcome"] == "completed"


def test_post_scenarios_takes_a_list_and_the_file_form(make_server, http):
    srv = make_server()
    url = f"{srv.url}/_mockstream/scenarios"
    assert http.post(url, json=[{"name": "one", "content": "1"}, {"name": "two", "content": "2"}]).json() == {
        "added": ["one", "two"]}
    assert http.post(url, json={"version": 1, "scenarios": [{"name": "three", "content": "3"}]}).json() == {
        "added": ["three"]}
    for name, text in (("one", "1"), ("two", "2"), ("three", "3")):
        response = chat(http, srv, stream=False, headers={"X-Mockstream-Scenario": name})
        assert response.json()["choices"][0]["message"]["content"] == text


def test_a_runtime_scenario_with_a_fault_and_a_sequence(make_server, http):
    srv = make_server()
    scenario = {"name": "flaky", "content": "ok",
                "sequence": [{"fault": {"kind": "http_error", "status": 500}}, {}]}
    assert http.post(f"{srv.url}/_mockstream/scenarios", json=scenario).status_code == 200
    statuses = [chat(http, srv, stream=False, model="flaky").status_code for _ in range(3)]
    assert statuses == [500, 200, 200]


@pytest.mark.parametrize(
    ("scenario", "field"),
    [
        ({"name": "x", "fault": {"kind": "stal"}}, "fault.kind"),
        ({"name": "x", "itl_ms": "fast"}, "itl_ms"),
        ({"name": "x", "contnet": "hi"}, "contnet"),
        ({"content": "no name"}, "name"),
        ({"name": "x", "version": 2}, "version"),
        ({"name": "x", "sequence": [{"fault": {"kind": "reset", "probability": 2}}]}, "sequence[0].fault.probability"),
    ],
)
def test_a_bad_runtime_scenario_is_a_400_naming_the_field(make_server, http, scenario, field):
    srv = make_server()
    url = f"{srv.url}/_mockstream/scenarios"
    response = http.post(url, json=scenario)
    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert f"{field}:" in error["message"]
    assert error["code"] == "invalid_scenario"
    assert "x" not in [s["name"] for s in http.get(url).json()]


def test_invalid_json_to_the_admin_api_is_a_400(make_server, http):
    srv = make_server()
    response = http.post(f"{srv.url}/_mockstream/scenarios", content=b"{nope",
                         headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"
