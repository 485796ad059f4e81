"""The `line_ending` knob (lf | crlf | cr) end to end: the bytes on the wire, then what real clients make of them.

The SSE specification lets a line end in LF, CRLF or CR; real proxies and servers send CRLF. mockstream changes only
the framing (every `data:`, `event:`, `id:` and `retry:` line and the blank line that ends an event); the JSON
payloads stay byte for byte what the LF stream carries. Real server on a real socket, real clients, no mocks.

What each client does (asserted below; chat.js is the seed page under tests/browser/app/, whose two fetch() parsers
split on "\\n" only):

| client                          | lf | crlf                           | cr                                      |
|---------------------------------|----|--------------------------------|-----------------------------------------|
| openai-python (chat, Responses) | ok | ok, even with CRLFs cut in two | ok                                      |
| anthropic SDK                   | ok | ok, even with CRLFs cut in two | ok                                      |
| httpx-sse connect_sse           | ok | ok, even with CRLFs cut in two | ok, but each event waits for more bytes |
| Chromium EventSource            | ok | ok (retry: and id: honoured)   | ok (retry: and id: honoured)            |
| chat.js readStream (correct)    | ok | ok                             | BROKEN: shows nothing, "cut short"      |
| chat.js readStreamNaively       | ok | text ok, SyntaxError on DONE   | BROKEN: SyntaxError, shows nothing      |
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

import anthropic
import httpx
import httpx_sse
import openai
import pytest
import test_browser as browser_suite
from anthropic import Anthropic, AsyncAnthropic
from openai import AsyncOpenAI, OpenAI
from wire import ENDPOINTS, NAMED, PATHS, auth_headers, read, request_body

from mockstream.errors import ScenarioError
from mockstream.plan.content import tokenize
from mockstream.plan.schema import Scenario, load_file
from mockstream.testing import MockServer

# The browser suite's fixtures (one Chromium per module, one shared tab, the page server, a speed-0 mock) and
# helpers: reused, not copied, so both files drive Chromium the same way.
browser, tab, page, pages = browser_suite.browser, browser_suite.tab, browser_suite.page, browser_suite.pages
mock, journal = browser_suite.mock, browser_suite.journal
_open, _listen, _query = browser_suite._open, browser_suite._listen, browser_suite._query

ENDINGS = {"lf": b"\n", "crlf": b"\r\n", "cr": b"\r"}
# A raw line break inside the text travels JSON-escaped (`\n`, `\r`), never as a line ending.
TEXT = "Line endings: LF, CRLF and CR.\r\nSplit here\rand here\n世界 \"quoted\" {braces}"
BROWSER_TEXT = "Hello, 世界! Ça va?"  # innerText would normalise the line breaks of TEXT
WEATHER = {"name": "get_weather", "arguments": {"city": "Zürich", "days": [1, 2]}}
MODEL = "claude-test-model"
USER = [{"role": "user", "content": "Tell me something."}]
# Every byte its own write, no pause between them: CRLFs arrive cut between two reads (a busy client may read a
# few writes at once, so not every one of them, but most).
ONE_BYTE = {"chunk_bytes": 1, "chunk_gap_ms": 0}


def knobs_for(dialect: str, ending: str, **more: Any) -> dict[str, Any]:
    """Text, plus a tool call where the dialect spells one, so every kind of frame is in the stream."""
    knobs: dict[str, Any] = {"content": TEXT, "line_ending": ending, **more}
    if dialect in ("chat", "responses", "messages"):
        knobs["tool_calls"] = [WEATHER]
    return knobs


def body_for(dialect: str, knobs: dict[str, Any], **fields: Any) -> dict[str, Any]:
    if dialect == "chat":
        fields.setdefault("stream_options", {"include_usage": True})  # the usage chunk is framed too
    return request_body(dialect, knobs, **fields)


def raw_body(url: str, dialect: str, knobs: dict[str, Any], headers: dict[str, str] | None = None) -> bytes:
    reply = read(url, dialect, body_for(dialect, knobs), headers)
    assert reply.status == 200, reply.raw
    assert reply.error is None, reply.error
    assert reply.headers["content-type"].startswith("text/event-stream"), reply.headers
    return reply.raw


def eventsource_body(url: str, **params: str) -> bytes:
    with httpx.Client(timeout=10) as client:
        response = client.get(f"{url}/v1/chat/completions", params=params)
    assert response.status_code == 200, response.text
    return response.content


def check_only(body: bytes, ending: str) -> None:
    """The body ends every line with `ending` and with nothing else: no stray LF, no lone CR."""
    assert body.endswith(ENDINGS[ending] * 2), body[-40:]
    if ending == "lf":
        assert b"\r" not in body
    elif ending == "cr":
        assert b"\n" not in body, body[max(0, body.find(b"\n") - 60) : body.find(b"\n") + 5]
    else:
        stray = re.search(rb"\r(?!\n)|(?<!\r)\n", body)
        assert stray is None, body[max(0, stray.start() - 60) : stray.end() + 5]
        assert body.count(b"\r") == body.count(b"\n") == body.count(b"\r\n")


def events(body: bytes, ending: str) -> list[list[tuple[str, str]]]:
    """Split on exactly `ending`: every event is a list of (field, value) lines, and nothing is left over."""
    eol = ENDINGS[ending]
    assert body.endswith(eol * 2)
    parsed = []
    for block in body[: -2 * len(eol)].split(eol * 2):
        lines = block.split(eol)
        assert lines and all(lines), f"an empty line inside an event: {block[:80]!r}"
        fields = []
        for line in lines:
            assert b"\r" not in line and b"\n" not in line, f"a line ending left inside a line: {line[:80]!r}"
            name, sep, value = line.decode("utf-8").partition(": ")
            assert sep and name in ("event", "data", "id", "retry"), line[:80]
            fields.append((name, value))
        parsed.append(fields)
    return parsed


def check_frames(dialect: str, parsed: list[list[tuple[str, str]]], *, malformed: bool = False) -> None:
    """Each event is exactly what the API sends: `data:` alone, or `event:` then `data:` of that type."""
    assert parsed
    broken = 0
    for fields in parsed:
        names = [name for name, _ in fields]
        data = fields[-1][1]
        if dialect in NAMED:
            assert names == ["event", "data"], fields
        else:
            assert names == ["data"], fields
        if data == "[DONE]":
            assert dialect not in NAMED and fields is parsed[-1], fields
            continue
        try:
            payload = json.loads(data)
        except ValueError:
            broken += 1
            continue
        if dialect in NAMED:
            assert payload["type"] == fields[0][1], fields
    assert broken == (1 if malformed else 0), parsed
    if dialect not in NAMED:
        assert parsed[-1] == [("data", "[DONE]")]


# ---------------------------------------------------------------- the bytes on the wire ---
@pytest.mark.parametrize("ending", ENDINGS)
@pytest.mark.parametrize("dialect", ENDPOINTS)
def test_the_body_uses_exactly_that_line_ending(server, dialect, ending):
    body = raw_body(server.url, dialect, knobs_for(dialect, ending))
    baseline = raw_body(server.url, dialect, knobs_for(dialect, "lf"))

    check_only(body, ending)
    parsed = events(body, ending)
    check_frames(dialect, parsed)
    # The same request gives the same ids, text and usage: only the framing differs.
    assert parsed == events(baseline, "lf")
    assert body.replace(ENDINGS[ending], b"\n") == baseline
    assert len(parsed) > 10
    if ending != "lf":
        assert body != baseline


@pytest.mark.parametrize("ending", ENDINGS)
def test_eventsource_route_frames_retry_and_id_lines_too(server, ending):
    body = eventsource_body(server.url, content=TEXT, line_ending=ending)
    baseline = eventsource_body(server.url, content=TEXT)

    check_only(body, ending)
    retry, *rest = events(body, ending)
    assert retry == [("retry", "1000")]
    assert [[name for name, _ in fields] for fields in rest] == [["id", "data"]] * len(rest)
    assert [fields[0][1] for fields in rest] == [str(n) for n in range(1, len(rest) + 1)]
    assert rest[-1][1] == ("data", "[DONE]")
    assert body.replace(ENDINGS[ending], b"\n") == baseline
    assert events(body, ending) == events(baseline, "lf")


@pytest.mark.parametrize("kind", ["error_event", "malformed"])
@pytest.mark.parametrize("ending", ["crlf", "cr"])
@pytest.mark.parametrize("dialect", ENDPOINTS)
def test_in_band_fault_frames_use_the_line_ending(server, dialect, ending, kind):
    fault = {"kind": kind, "at_token": 2}
    body = raw_body(server.url, dialect, knobs_for(dialect, ending, fault=fault))
    baseline = raw_body(server.url, dialect, knobs_for(dialect, "lf", fault=fault))

    check_only(body, ending)
    parsed = events(body, ending)
    if kind == "malformed":
        check_frames(dialect, parsed, malformed=True)  # the JSON is broken, the framing is not
    elif dialect in NAMED:
        assert parsed[-1][0] == ("event", "response.failed" if dialect == "responses" else "error"), parsed[-1]
    else:
        assert "error" in json.loads(parsed[-1][-1][1]), parsed[-1]
    assert body.replace(ENDINGS[ending], b"\n") == baseline


@pytest.mark.parametrize("ending", ["crlf", "cr"])
@pytest.mark.parametrize("delivery", [ONE_BYTE, {"events_per_write": 3}], ids=["one-byte-writes", "coalesced"])
def test_cutting_and_coalescing_keep_the_bytes(server, ending, delivery):
    whole = raw_body(server.url, "messages", knobs_for("messages", ending))
    reply = read(server.url, "messages", body_for("messages", knobs_for("messages", ending, **delivery)))
    assert reply.status == 200 and reply.error is None
    assert reply.raw == whole
    if delivery is ONE_BYTE:
        assert len(reply.pieces) > 20 and min(reply.pieces) == 1, reply.pieces[:20]  # the body really was cut


@pytest.mark.parametrize("dialect", ENDPOINTS)
def test_a_non_streaming_answer_is_unchanged(server, dialect):
    answers = []
    for ending in ENDINGS:
        with httpx.Client(timeout=10) as client:
            response = client.post(
                server.url + PATHS[dialect],
                json=request_body(dialect, {"content": TEXT, "line_ending": ending}, stream=False),
                headers=auth_headers(dialect),
            )
        assert response.status_code == 200, response.text
        answers.append(response.content)
    assert answers[0] == answers[1] == answers[2]
    assert json.loads(answers[0])  # one JSON document, no SSE framing to change


def test_a_scenario_file_sets_the_line_ending_and_a_request_overrides_it(make_server, tmp_path):
    path = tmp_path / "cr-answers.yaml"
    path.write_text(f"version: 1\nname: cr-answers\ncontent: {json.dumps(TEXT)}\nline_ending: cr\n", encoding="utf-8")
    srv = make_server(load_file(path))
    named = {"X-Mockstream-Scenario": "cr-answers"}

    body = raw_body(srv.url, "chat", {}, named)
    check_only(body, "cr")
    pieces = [d["choices"][0]["delta"].get("content") or "" for d in chat_payloads(body, "cr") if d["choices"]]
    assert "".join(pieces) == TEXT

    override = raw_body(srv.url, "chat", {"line_ending": "crlf"}, named)
    check_only(override, "crlf")
    assert override.replace(b"\r\n", b"\n") == body.replace(b"\r", b"\n")


def test_a_sequence_gives_successive_calls_successive_line_endings(make_server):
    srv = make_server()
    knobs = {"content": "Hi.", "sequence": [{"line_ending": "cr"}, {"line_ending": "crlf"}, {}]}
    bodies = [raw_body(srv.url, "completions", knobs) for _ in range(3)]
    for body, ending in zip(bodies, ["cr", "crlf", "lf"]):
        check_only(body, ending)


def chat_payloads(body: bytes, ending: str) -> list[dict[str, Any]]:
    return [json.loads(f[-1][1]) for f in events(body, ending) if f[-1][1] != "[DONE]"]


# ---------------------------------------------------------------- bad values ---
@pytest.mark.parametrize("value", ["crlf2", "CRLF", "\r\n", None])
@pytest.mark.parametrize("dialect", ENDPOINTS)
def test_a_bad_line_ending_is_a_400_naming_the_knob_and_the_choices(server, dialect, value):
    with httpx.Client(timeout=10) as client:
        response = client.post(
            server.url + PATHS[dialect],
            json=request_body(dialect, {"content": "Hi", "line_ending": value}),
            headers=auth_headers(dialect),
        )
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert "mockstream.line_ending" in error["message"]
    assert "lf, crlf, cr" in error["message"]
    assert repr(value) in error["message"]
    assert error["type"] == "invalid_request_error"
    if dialect != "messages":  # Anthropic's error shape has no param
        assert error["param"] == "mockstream.line_ending"
        assert error["code"] == "invalid_mockstream_knob"


def test_a_bad_line_ending_in_the_query_string_is_a_400(server):
    with httpx.Client(timeout=10) as client:
        response = client.get(f"{server.url}/v1/chat/completions", params={"content": "Hi", "line_ending": "crlf2"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "mockstream.line_ending"
    assert "'crlf2'" in error["message"] and "lf, crlf, cr" in error["message"]


def test_the_sdks_raise_bad_request_for_a_bad_line_ending(server):
    with OpenAI(base_url=server.base_url, api_key="x", max_retries=0, timeout=10) as client, pytest.raises(
        openai.BadRequestError
    ) as raised:
        client.chat.completions.create(model="m", messages=USER, stream=True,
                                       extra_body={"mockstream": {"line_ending": "crlf2"}})
    assert raised.value.param == "mockstream.line_ending"
    assert "lf, crlf, cr" in raised.value.message
    with Anthropic(base_url=server.url, api_key="sk-ant-test", max_retries=0, timeout=10,
                   http_client=anthropic.DefaultHttpxClient(verify=False)) as client, pytest.raises(
        anthropic.BadRequestError
    ) as refused:
        client.messages.create(model=MODEL, max_tokens=100, messages=USER, stream=True,
                               extra_body={"mockstream": {"line_ending": "crlf2"}})
    assert "mockstream.line_ending" in str(refused.value) and "lf, crlf, cr" in str(refused.value)


def test_a_bad_line_ending_in_a_scenario_file_names_the_field(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("version: 1\nname: bad\ncontent: Hi\nline_ending: crlf2\n", encoding="utf-8")
    with pytest.raises(ScenarioError) as raised:
        load_file(path)
    assert "line_ending" in str(raised.value) and "lf, crlf, cr" in str(raised.value)
    assert "crlf2" in str(raised.value)


# ---------------------------------------------------------------- openai-python ---
# openai/_streaming.py: `_SSELineDecoder` splits on the regex [\r\n] and remembers a CR at the end of a read,
# so a LF at the start of the next read is not taken for a second line end. CR, LF and CRLF all work, even with
# every CRLF cut between two reads.
@pytest.fixture(scope="module")
def client(server):
    with OpenAI(base_url=server.base_url, api_key="x", max_retries=0, timeout=10) as c:
        yield c


@pytest.fixture
async def aclient(server):
    async with AsyncOpenAI(base_url=server.base_url, api_key="x", max_retries=0, timeout=10) as c:
        yield c


def openai_chunks(client: OpenAI, knobs: dict[str, Any]) -> list[Any]:
    return list(client.chat.completions.create(model="gpt-4o-mini", messages=USER, stream=True,
                                               extra_body={"mockstream": knobs}))


def chat_text(chunks: list[Any]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


@pytest.mark.parametrize("delivery", [{}, ONE_BYTE], ids=["whole-events", "one-byte-writes"])
@pytest.mark.parametrize("ending", ["crlf", "cr"])
def test_openai_sync_chat_stream(client, ending, delivery):
    chunks = openai_chunks(client, {"content": TEXT, "line_ending": ending, **delivery})
    baseline = openai_chunks(client, {"content": TEXT})

    assert chat_text(chunks) == TEXT
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) == len(tokenize(TEXT))
    assert [c.choices[0].finish_reason for c in chunks if c.choices[0].finish_reason] == ["stop"]
    assert [c.model_dump() for c in chunks] == [c.model_dump() for c in baseline]


@pytest.mark.parametrize("ending", ["crlf", "cr"])
async def test_openai_async_chat_stream(aclient, ending):
    for delivery in ({}, ONE_BYTE):
        stream = await aclient.chat.completions.create(
            model="gpt-4o-mini", messages=USER, stream=True,
            extra_body={"mockstream": {"content": TEXT, "line_ending": ending, **delivery}},
        )
        chunks = [chunk async for chunk in stream]
        assert chat_text(chunks) == TEXT, delivery
        assert chunks[-1].choices[0].finish_reason == "stop", delivery


@pytest.mark.parametrize("ending", ["crlf", "cr"])
def test_openai_stream_helper_and_tool_calls(client, ending):
    with client.chat.completions.stream(model="gpt-4o-mini", messages=USER,
                                        extra_body={"mockstream": knobs_for("chat", ending)}) as stream:
        deltas = [e.delta for e in stream if e.type == "content.delta"]
        final = stream.get_final_completion()
    assert "".join(deltas) == TEXT
    [choice] = final.choices
    assert choice.message.content == TEXT
    [call] = choice.message.tool_calls
    assert (call.function.name, json.loads(call.function.arguments)) == (WEATHER["name"], WEATHER["arguments"])
    assert choice.finish_reason == "tool_calls"


@pytest.mark.parametrize("ending", ["crlf", "cr"])
def test_openai_legacy_completions_stream(client, ending):
    stream = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say it.", stream=True,
                                       extra_body={"mockstream": {"content": TEXT, "line_ending": ending}})
    chunks = list(stream)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == TEXT
    assert chunks[-1].choices[0].finish_reason == "stop"


@pytest.mark.parametrize("delivery", [{}, ONE_BYTE], ids=["whole-events", "one-byte-writes"])
@pytest.mark.parametrize("ending", ["crlf", "cr"])
def test_openai_responses_stream(client, ending, delivery):
    def stream_events(knobs: dict[str, Any]) -> list[Any]:
        return list(client.responses.create(model="gpt-4o-mini", input="Tell me something.", stream=True,
                                            extra_body={"mockstream": knobs}))

    seen = stream_events({**knobs_for("responses", ending), **delivery})
    baseline = stream_events(knobs_for("responses", "lf"))

    assert "".join(e.delta for e in seen if e.type == "response.output_text.delta") == TEXT
    assert [e.sequence_number for e in seen] == list(range(len(seen)))
    assert seen[-1].type == "response.completed"
    final = seen[-1].response
    assert final.output_text == TEXT
    [call] = [item for item in final.output if item.type == "function_call"]
    assert (call.name, json.loads(call.arguments)) == (WEATHER["name"], WEATHER["arguments"])
    assert [e.model_dump() for e in seen] == [e.model_dump() for e in baseline]


# ---------------------------------------------------------------- anthropic ---
# anthropic/_streaming.py: `SSEDecoder._iter_chunks` gathers lines (bytes.splitlines(keepends=True)) until the
# buffer ends in \r\r, \n\n or \r\n\r\n, then splits that with bytes.splitlines(): all three endings work.
@pytest.fixture(scope="module")
def claude(server):
    with Anthropic(base_url=server.url, api_key="sk-ant-test", max_retries=0, timeout=10,
                   http_client=anthropic.DefaultHttpxClient(verify=False)) as c:
        yield c


@pytest.fixture
async def aclaude(server):
    async with AsyncAnthropic(base_url=server.url, api_key="sk-ant-test", max_retries=0, timeout=10,
                              http_client=anthropic.DefaultAsyncHttpxClient(verify=False)) as c:
        yield c


@pytest.mark.parametrize("delivery", [{}, ONE_BYTE], ids=["whole-events", "one-byte-writes"])
@pytest.mark.parametrize("ending", ["crlf", "cr"])
def test_anthropic_stream_helper(claude, ending, delivery):
    def run(knobs: dict[str, Any]) -> tuple[list[str], Any]:
        with claude.messages.stream(model=MODEL, max_tokens=1024, messages=USER,
                                    extra_body={"mockstream": knobs}) as stream:
            pieces = list(stream.text_stream)
            return pieces, stream.get_final_message()

    pieces, final = run({**knobs_for("messages", ending), **delivery})
    baseline_pieces, baseline = run(knobs_for("messages", "lf"))

    assert "".join(pieces) == TEXT
    assert pieces == baseline_pieces and len(pieces) == len(tokenize(TEXT))
    assert [b.type for b in final.content] == ["text", "tool_use"]
    assert final.content[0].text == TEXT
    assert (final.content[1].name, final.content[1].input) == (WEATHER["name"], WEATHER["arguments"])
    assert final.stop_reason == "tool_use"
    assert final.model_dump() == baseline.model_dump()


@pytest.mark.parametrize("ending", ["crlf", "cr"])
async def test_anthropic_async_create_stream(aclaude, ending):
    stream = await aclaude.messages.create(model=MODEL, max_tokens=1024, messages=USER, stream=True,
                                           extra_body={"mockstream": {"content": TEXT, "line_ending": ending}})
    seen = [event async for event in stream]
    assert seen[0].type == "message_start" and seen[-1].type == "message_stop"
    text = "".join(e.delta.text for e in seen if e.type == "content_block_delta")
    assert text == TEXT


# ---------------------------------------------------------------- httpx-sse ---
# httpx_sse/_decoders.py: `SSELineDecoder` turns CRLF and CR into LF, and holds a CR that ends a read back
# until the next read (it might be the first half of a CRLF). Correct events for all three endings, but with
# `cr` every event ends in a held-back CR: it is delivered only when the next bytes (or the end) arrive.
def sse_events(url: str, dialect: str, knobs: dict[str, Any]) -> list[httpx_sse.ServerSentEvent]:
    with httpx.Client(timeout=10) as http, httpx_sse.connect_sse(
        http, "POST", url + PATHS[dialect], json=body_for(dialect, knobs), headers=auth_headers(dialect)
    ) as source:
        assert source.response.status_code == 200
        return list(source.iter_sse())


@pytest.mark.parametrize("delivery", [{}, ONE_BYTE], ids=["whole-events", "one-byte-writes"])
@pytest.mark.parametrize("ending", ["crlf", "cr"])
@pytest.mark.parametrize("dialect", ENDPOINTS)
def test_httpx_sse_reads_every_event(server, dialect, ending, delivery):
    seen = sse_events(server.url, dialect, knobs_for(dialect, ending, **delivery))
    expected = events(raw_body(server.url, dialect, knobs_for(dialect, "lf")), "lf")

    assert [(e.event, e.data) for e in seen] == [
        (dict(fields).get("event", "message"), dict(fields)["data"]) for fields in expected
    ]
    assert all("\r" not in e.data and "\r" not in e.event for e in seen)
    if dialect in NAMED:
        assert all(e.json()["type"] == e.event for e in seen)
    else:
        assert seen[-1].data == "[DONE]"


@pytest.mark.parametrize("ending", ["crlf", "cr"])
def test_httpx_sse_on_the_eventsource_route(server, ending):
    with httpx.Client(timeout=10) as http, httpx_sse.connect_sse(
        http, "GET", f"{server.url}/v1/chat/completions", params={"content": TEXT, "line_ending": ending}
    ) as source:
        seen = list(source.iter_sse())
    assert (seen[0].retry, seen[0].data) == (1000, "")
    assert [e.id for e in seen[1:]] == [str(n) for n in range(1, len(seen))]
    assert seen[-1].data == "[DONE]"
    assert "".join(json.loads(e.data)["choices"][0]["delta"].get("content") or "" for e in seen[1:-1]) == TEXT


@pytest.mark.parametrize("ending", ENDINGS)
def test_httpx_sse_holds_back_a_cr_terminated_event_until_more_bytes(server, ending):
    """Two tokens, then 600 ms of silence (a stall), then the rest: when does the second token's event arrive?"""
    knobs = {"tokens": ["one", " two", " three"], "line_ending": ending,
             "fault": {"kind": "stall", "at_token": 2, "ms": 600}}
    arrived: dict[str, float] = {}
    with httpx.Client(timeout=10) as http, httpx_sse.connect_sse(
        http, "POST", server.url + PATHS["chat"], json=request_body("chat", knobs)
    ) as source:
        started = time.monotonic()
        for event in source.iter_sse():
            if event.data != "[DONE]":
                for choice in event.json()["choices"]:
                    if choice["delta"].get("content"):
                        arrived[choice["delta"]["content"]] = time.monotonic() - started
    assert list(arrived) == ["one", " two", " three"]
    assert arrived[" three"] >= 0.55  # the stall happened
    if ending == "cr":
        # The " two" event ended in "\r\r" right before the stall: httpx-sse kept the last CR back, so the
        # event was dispatched only once " three" arrived. openai-python and anthropic deliver it at once.
        assert arrived[" two"] - arrived["one"] >= 0.4 and arrived[" three"] - arrived[" two"] < 0.3, arrived
    else:
        assert arrived[" two"] - arrived["one"] < 0.3 and arrived[" three"] - arrived[" two"] >= 0.4, arrived


def test_openai_and_anthropic_deliver_a_cr_terminated_event_at_once(client, claude):
    knobs = {"tokens": ["one", " two", " three"], "line_ending": "cr",
             "fault": {"kind": "stall", "at_token": 2, "ms": 600}}
    started = time.monotonic()
    arrived = {}
    for chunk in client.chat.completions.create(model="m", messages=USER, stream=True,
                                                extra_body={"mockstream": knobs}):
        if chunk.choices and chunk.choices[0].delta.content:
            arrived[chunk.choices[0].delta.content] = time.monotonic() - started
    assert arrived[" two"] - arrived["one"] < 0.3 and arrived[" three"] - arrived[" two"] >= 0.4, arrived

    started = time.monotonic()
    arrived = {}
    with claude.messages.stream(model=MODEL, max_tokens=100, messages=USER, extra_body={"mockstream": knobs}) as s:
        for piece in s.text_stream:
            arrived[piece] = time.monotonic() - started
    assert arrived[" two"] - arrived["one"] < 0.3 and arrived[" three"] - arrived[" two"] >= 0.4, arrived


# ---------------------------------------------------------------- Chromium ---
@pytest.mark.parametrize("ending", ENDINGS)
def test_eventsource_assembles_the_text(page, mock, pages, ending):
    _open(page, pages.origin() + "/index.html")
    seen = _listen(page, f"{mock.base_url}/chat/completions?{_query(content=BROWSER_TEXT, line_ending=ending)}",
                   "stop")

    assert seen["text"] == BROWSER_TEXT and page.inner_text("#answer") == BROWSER_TEXT
    assert seen["finish"] == "stop"
    # One message per token, the role chunk and the stop chunk; ids "1", "2", ... read from the id: lines.
    assert seen["messages"] == len(tokenize(BROWSER_TEXT)) + 2
    assert seen["lastEventId"] == str(seen["messages"])
    assert seen["errors"] == [] and page.errors == []


@pytest.mark.parametrize("ending", ["crlf", "cr"])
def test_eventsource_honours_retry_and_id_lines(page, mock, pages, journal, ending):
    _open(page, pages.origin() + "/index.html")
    url = f"{mock.base_url}/chat/completions?{_query(content=BROWSER_TEXT, line_ending=ending, done='false')}"
    seen = _listen(page, url, "reconnect")

    assert seen["opens"] == 2
    assert seen["text"] == BROWSER_TEXT
    assert 900 <= seen["reconnectMs"] < 2900, seen  # `retry: 1000` was read, not Chromium's default 3 s
    first, second = journal()
    assert first["body"]["mockstream"]["line_ending"] == ending
    assert second["last_event_id"] == seen["lastEventId"] == str(seen["messages"])


@pytest.mark.parametrize("ending", ENDINGS)
def test_fetch_parsers_of_the_seed_page(page, mock, pages, ending):
    """The page's two fetch() parsers split on "\\n": CRLF is still fine for the one that strips a trailing
    "\\r"; the naive one trips on "[DONE]\\r"; and a CR-only stream has no "\\n" at all, so neither sees a line."""
    _open(page, pages.origin() + "/index.html")
    # The whole answer in one write, so one read: one event per read would let the naive parser JSON.parse
    # each "data: {...}\r\r" line alone (a trailing CR is JSON whitespace) and fail only on "[DONE]\r\r".
    knobs = {"content": BROWSER_TEXT, "line_ending": ending, "events_per_write": 64}
    correct, naive = page.evaluate(
        "([url, knobs]) => Promise.all(['correct', 'naive'].map((parser) => chat(url, {knobs, parser, into: parser})))",
        [f"{mock.base_url}/chat/completions", knobs],
    )
    shown = {name: page.inner_text(f"#{name}") for name in ("correct", "correct-status", "naive", "naive-status")}

    assert correct["status"] == naive["status"] == 200
    if ending == "lf":
        assert correct["error"] is None and correct["text"] == BROWSER_TEXT and correct["finish"] == "stop", correct
        assert naive["error"] is None and naive["text"] == BROWSER_TEXT and naive["finish"] == "stop", naive
        assert shown == {"correct": BROWSER_TEXT, "correct-status": "stop", "naive": BROWSER_TEXT,
                         "naive-status": "stop"}
    elif ending == "crlf":
        # The line-buffering parser strips the "\r" of each line: all good.
        assert correct["error"] is None and correct["text"] == BROWSER_TEXT and correct["finish"] == "stop", correct
        # The naive one: JSON.parse ignores the trailing "\r" of each chunk (JSON whitespace), so the text is
        # whole and "stop" is seen, but "data: [DONE]\r" is not "data: [DONE]": JSON.parse("[DONE]\r") throws.
        assert naive["text"] == BROWSER_TEXT and naive["finish"] == "stop", naive
        assert naive["error"].startswith("SyntaxError") and "[DONE]" in naive["error"], naive
        assert shown == {"correct": BROWSER_TEXT, "correct-status": "stop", "naive": BROWSER_TEXT,
                         "naive-status": "error"}
    else:
        # No "\n" anywhere: the naive parser takes a whole read for one line and JSON.parse throws at once...
        assert naive["error"].startswith("SyntaxError") and naive["text"] == "" and naive["finish"] is None, naive
        # ...and the line-buffering parser never completes a line: no text, no error, the stream just ends.
        assert correct["error"] is None and correct["text"] == "" and correct["finish"] is None, correct
        assert shown == {"correct": "", "correct-status": "cut short", "naive": "", "naive-status": "error"}
        assert BROWSER_TEXT not in page.inner_text("body")


@pytest.fixture(scope="module")
def demo_server() -> Any:
    """Scenarios the demo page offers by name: each line ending, cut into 13-byte writes 1 ms apart (Chromium
    may merge a few writes into one read; some CRLFs still arrive cut in two)."""
    scenarios = [
        Scenario.from_dict(
            {"name": f"demo-{ending}", "content": BROWSER_TEXT, "line_ending": ending, "chunk_bytes": 13},
            "test_line_endings.py",
        )
        for ending in ENDINGS
    ]
    with MockServer(scenarios, speed=0) as server:
        yield server


@pytest.mark.parametrize("ending", ENDINGS)
def test_the_demo_page_parses_every_line_ending(page, demo_server, ending):
    page.goto(demo_server.url + "/")
    name = f"demo-{ending}"
    page.wait_for_function("(name) => !!document.querySelector(`#scenario option[value='${name}']`)", arg=name)
    page.select_option("#scenario", name)
    page.click("#go")
    page.wait_for_function("document.getElementById('status').textContent !== '…'")
    page.wait_for_selector("#go:not([disabled])")

    assert page.inner_text("#status") == "stop"
    assert page.inner_text("#answer") == BROWSER_TEXT
    assert int(page.inner_text("#reads")) > 20, page.inner_text("#reads")  # the cut reached the page
    assert page.errors == []
