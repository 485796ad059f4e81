"""The live inspector at /_mockstream/ui, in headless Chromium, against a real server paced in real time.

One tab stays on the page for the whole module, so every request below reaches it live (fed by
`/_mockstream/events`), never by a reload. What the page draws is read back from the DOM and the SVG (the
`data-*` attributes the timeline gives each mark) and checked twice: against the journal's own detail
(`GET /_mockstream/requests/{id}`) and against what the knobs say the stream must do.

Chromium is found, skipped and failed as in test_browser.py (whose fixture this module shares). Screenshots
land in tests/artifacts/.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from helpers import journal, openai_sdk, plain_http
from test_browser import WAIT_MS, Serve, browser  # noqa: F401 (the module's Chromium, found or skipped as there)

from mockstream.plan.schema import Scenario
from mockstream.testing import MockServer

ARTIFACTS = Path(__file__).parent / "artifacts"
TOLERANCE_MS = 40  # a write's offset against the knobs' due time
MESSAGES = [{"role": "user", "content": "Show me the timeline."}]


# ---------------------------------------------------------------- server, page, helpers ---
@pytest.fixture(scope="module")
def mock() -> Iterator[MockServer]:
    """Paced in real time (speed 1): the timeline's offsets are the knobs' milliseconds."""
    scenarios = [Scenario.from_dict({"name": "inspect-a", "content": "From scenario A."}, "test_inspector.py")]
    with MockServer(scenarios, speed=1) as server:
        yield server


@pytest.fixture(scope="module")
def tab(browser: Any, mock: MockServer) -> Iterator[Any]:  # noqa: F811 (the imported fixture)
    """The inspector, opened once: every request of the module must reach it without a reload."""
    context = browser.new_context(viewport={"width": 1440, "height": 960}, color_scheme="dark")
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    page.errors = []
    page.requested = []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.on("console", lambda message: page.errors.append(message.text) if message.type == "error" else None)
    page.on("request", lambda request: page.requested.append(request.url))
    page.goto(f"{mock.url}/_mockstream/ui")
    page.wait_for_selector("#worker[data-pid]")  # `hello` arrived: the feed is connected
    page.evaluate("window.loadedOnce = performance.timeOrigin")
    yield page
    context.close()


@pytest.fixture
def ui(tab: Any, mock: MockServer) -> Iterator[Any]:
    """The tab with an empty list, no filters and no errors; the server's journal reset."""
    _settle(mock)
    with plain_http() as http:
        http.post(f"{mock.url}/_mockstream/reset").raise_for_status()
    tab.click("#clear")
    tab.evaluate("for (const s of document.querySelectorAll('.filters input, .filters select')) s.value = ''")
    tab.evaluate("document.querySelector('#filter-outcome').dispatchEvent(new Event('change'))")
    tab.errors.clear()
    yield tab
    assert tab.errors == []
    # the same page all along: a reload would have made a new time origin
    assert tab.evaluate("window.loadedOnce === performance.timeOrigin")


def _settle(mock: MockServer, timeout: float = 5.0) -> None:
    """Wait until no request of an earlier test is still running (its end would land in the next test)."""
    deadline = time.monotonic() + timeout
    while any(e["outcome"] == "in_progress" for e in journal(mock)) and time.monotonic() < deadline:
        time.sleep(0.05)


def _detail(mock: MockServer, entry_id: int) -> dict[str, Any]:
    with plain_http() as http:
        response = http.get(f"{mock.url}/_mockstream/requests/{entry_id}")
    assert response.status_code == 200, response.text
    return response.json()


def _entry_id(mock: MockServer, session: str) -> int:
    [entry] = journal(mock, session=session)
    return entry["id"]


def _row(page: Any, entry_id: int) -> str:
    return f'#list .entry[data-id="{entry_id}"]'


def _wait_ended(page: Any, entry_id: int) -> None:
    page.wait_for_selector(f'{_row(page, entry_id)}:not([data-outcome="in_progress"])', state="attached")


def _open(page: Any, entry_id: int) -> None:
    """Select a request that has ended: its detail on the right, as the `closed` event gave it."""
    _wait_ended(page, entry_id)
    page.click(_row(page, entry_id))
    page.wait_for_function(
        "(id) => window.inspector.selected === id && document.getElementById('d-outcome').textContent !== 'streaming'",
        arg=entry_id,
    )


def _writes(page: Any) -> list[dict[str, float]]:
    return page.eval_on_selector_all(
        "#timeline rect.write",
        "(all) => all.map((r) => ({ms: +r.dataset.ms, bytes: +r.dataset.bytes, events: +r.dataset.events}))",
    )


def _mark(page: Any, cls: str) -> float | None:
    found = page.query_selector(f"#timeline .{cls}")
    return None if found is None else float(found.get_attribute("data-ms"))


def _shot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"inspector-{name}.png"
    page.screenshot(path=str(path))
    return path


def _chat(mock: MockServer, session: str, knobs: dict[str, Any], **options: Any) -> Any:
    """openai-python streams a chat completion; the text it read, or the exception that ended it."""
    with openai_sdk(mock) as client:
        try:
            stream = client.chat.completions.create(
                model="gpt-4o-mini",
                messages=MESSAGES,
                stream=True,
                extra_body={"mockstream": knobs},
                extra_headers={"X-Mockstream-Session": session},
                **options,
            )
            return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        except openai.APIError as exc:
            return exc


def _in_background(work: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(work()), daemon=True)
    thread.start()
    return thread, result


# ---------------------------------------------------------------- live list + timeline ---
TOKENS = ["Hello", ",", " world", "!", " How", " are", " you", "?"]
TTFT, ITL = 100, 50


def test_a_request_appears_live_and_its_timeline_has_one_mark_per_write_at_the_knobs_times(ui, mock):
    knobs = {"tokens": TOKENS, "ttft_ms": TTFT, "itl_ms": ITL}
    started = time.monotonic()
    thread, result = _in_background(lambda: _chat(mock, "live", knobs))
    ui.wait_for_selector("#list .entry", timeout=1000)  # from the request's start, while it still streams
    appeared = time.monotonic() - started
    thread.join(10)
    assert appeared < 1.0
    assert result == ["".join(TOKENS)]
    entry_id = _entry_id(mock, "live")
    _open(ui, entry_id)
    detail = _detail(mock, entry_id)

    writes = _writes(ui)
    # The knobs say: the role chunk at once, one write per token at ttft + k*itl, then the finish chunk and
    # [DONE], each its own write (events_per_write 1), right after the last token.
    expected = [0.0] + [TTFT + k * ITL for k in range(len(TOKENS))] + [TTFT + (len(TOKENS) - 1) * ITL] * 2
    assert len(writes) == len(expected) == detail["timeline"]["writes_total"] == len(TOKENS) + 3
    assert [w["ms"] for w in writes] == [w[0] for w in detail["timeline"]["writes"]]  # drawn as journaled
    for write, due in zip(writes, expected):
        assert due - 1 <= write["ms"] <= due + TOLERANCE_MS, (writes, expected)
    assert [w["events"] for w in writes] == [1] * len(expected)
    assert sum(w["bytes"] for w in writes) == detail["bytes_sent"] == detail["sent"]["bytes"]
    ttft = _mark(ui, "ttft-mark")
    assert ttft == detail["timeline"]["first_token_ms"] and TTFT - 1 <= ttft <= TTFT + TOLERANCE_MS
    assert "TTFT" in ui.text_content("#timeline .ttft-mark")
    planned = ui.eval_on_selector_all("#timeline line.planned.token", "(all) => all.map((l) => +l.dataset.ms)")
    assert planned == [TTFT + k * ITL for k in range(len(TOKENS))]  # the plan's due times, beside the writes
    assert _mark(ui, "fault-mark") is None and _mark(ui, "disconnect-mark") is None
    assert ui.query_selector("#writes-cut") is None
    # the rest of the detail
    assert ui.text_content("#d-text") == "".join(TOKENS)
    assert ui.text_content("#d-scenario-name") == "default"
    assert json.loads(ui.text_content("#d-body"))["mockstream"] == knobs
    headers = dict(
        ui.eval_on_selector_all("#d-headers tr", "(all) => all.map((r) => [...r.cells].map((c) => c.textContent))")
    )
    assert headers["x-mockstream-scenario"] == "default" and headers["Content-Type"].startswith("text/event-stream")
    raw = ui.eval_on_selector_all("#d-raw .raw-event pre", "(all) => all.map((p) => p.textContent)")
    assert len(raw) == len(expected) and raw[-1] == "data: [DONE]"
    assert all(r.startswith("data: {") for r in raw[:-1])
    row = ui.inner_text(_row(ui, entry_id))
    assert "completed" in row and f"{len(expected)} writes" in row and "chat" in row
    _shot(ui, "timeline")


def test_a_fault_is_marked_where_it_struck(ui, mock):
    tokens = ["one", " two", " three", " four", " five", " six"]
    knobs = {"tokens": tokens, "ttft_ms": 60, "itl_ms": 40, "fault": {"kind": "disconnect", "at_token": 3}}
    outcome = _chat(mock, "fault", knobs)
    assert isinstance(outcome, openai.APIConnectionError)
    entry_id = _entry_id(mock, "fault")
    _open(ui, entry_id)
    detail = _detail(mock, entry_id)

    writes = _writes(ui)
    assert len(writes) == 1 + 3 == detail["timeline"]["writes_total"]  # the role chunk and three tokens
    fault = _mark(ui, "fault-mark")
    assert fault == detail["timeline"]["fault_ms"]
    assert writes[-1]["ms"] <= fault <= 60 + 3 * 40 + TOLERANCE_MS  # where token four was due
    assert "disconnect" in ui.text_content("#timeline .fault-mark")
    assert ui.eval_on_selector_all("#timeline line.planned.fault", "(all) => all.length") == 1
    assert ui.eval_on_selector_all("#timeline line.planned.token.unsent", "(all) => all.length") == 3  # never sent
    assert ui.text_content("#d-text") == "".join(tokens[:3])
    assert ui.get_attribute(_row(ui, entry_id), "data-outcome") == "fault:disconnect"
    assert '"kind":"disconnect"' in ui.text_content("#d-scenario-facts")
    _shot(ui, "fault")


def test_a_client_that_leaves_mid_stream_is_marked(ui, mock):
    body = {
        "model": "gpt-4o-mini",
        "messages": MESSAGES,
        "stream": True,
        "mockstream": {"tokens": [f" t{i}" for i in range(12)], "ttft_ms": 0, "itl_ms": 60},
    }
    read = 0
    with (
        httpx.Client(timeout=10) as http,
        http.stream(
            "POST", f"{mock.base_url}/chat/completions", json=body, headers={"X-Mockstream-Session": "gone"}
        ) as response,
    ):
        for chunk in response.iter_raw():
            read += chunk.count(b"data: ")
            if read >= 4:  # the role chunk and three tokens; then hang up
                break
    entry_id = _entry_id(mock, "gone")
    _open(ui, entry_id)
    detail = _detail(mock, entry_id)

    assert detail["outcome"] == "client_disconnected"
    left = _mark(ui, "disconnect-mark")
    assert left is not None and left == detail["timeline"]["client_left_ms"]
    writes = _writes(ui)
    assert 4 <= len(writes) < 12 + 3
    assert writes[-1]["ms"] <= left + 1  # noticed at the write that could not go out, or after the last one
    assert "client left" in ui.text_content("#timeline .disconnect-mark")
    assert _mark(ui, "fault-mark") is None
    assert ui.get_attribute(_row(ui, entry_id), "data-outcome") == "client_disconnected"
    _shot(ui, "disconnect")


def test_a_running_stream_updates_in_place(ui, mock):
    tokens = [f" w{i}" for i in range(16)]
    thread, result = _in_background(lambda: _chat(mock, "running", {"tokens": tokens, "ttft_ms": 0, "itl_ms": 150}))
    ui.wait_for_selector('#list .entry[data-outcome="in_progress"]', timeout=1000)
    ui.click('#list .entry[data-outcome="in_progress"]')
    ui.wait_for_function("() => document.querySelectorAll('#timeline rect.write').length >= 3")
    first = len(_writes(ui))
    # more marks arrive while it still streams, and the text sent so far shows beside them
    ui.wait_for_function(
        """(n) => document.getElementById('d-outcome').textContent === 'streaming'
                  && document.querySelectorAll('#timeline rect.write').length >= n + 3
                  && (document.getElementById('d-text') || {}).textContent""",
        arg=first,
    )
    partial = ui.text_content("#d-text")
    assert ui.text_content("#d-outcome") == "streaming"
    thread.join(10)
    assert result == ["".join(tokens)]
    entry_id = _entry_id(mock, "running")
    _open(ui, entry_id)  # the `closed` event replaces the live view in place, still selected
    assert len(_writes(ui)) == len(tokens) + 3 == _detail(mock, entry_id)["timeline"]["writes_total"]
    assert "".join(tokens).startswith(partial) and len(partial) < len("".join(tokens))
    assert ui.text_content("#d-text") == "".join(tokens)


def test_pieces_and_coalesced_writes_are_visible_and_add_up(ui, mock):
    with plain_http() as http:
        for session, knobs in [("cut", {"chunk_bytes": 64}), ("batched", {"events_per_write": 3})]:
            http.post(
                f"{mock.base_url}/chat/completions",
                json={
                    "model": "m",
                    "messages": MESSAGES,
                    "stream": True,
                    "mockstream": {"tokens": TOKENS, "ttft_ms": 0, "itl_ms": 0, **knobs},
                },
                headers={"X-Mockstream-Session": session},
            ).raise_for_status()
    for session in ("cut", "batched"):
        entry_id = _entry_id(mock, session)
        _open(ui, entry_id)
        detail, writes = _detail(mock, entry_id), _writes(ui)
        assert len(writes) == detail["timeline"]["writes_total"]
        assert sum(w["bytes"] for w in writes) == detail["bytes_sent"]
        assert sum(w["events"] for w in writes) == detail["events_sent"] == len(TOKENS) + 3
        assert ui.text_content("#d-text") == "".join(TOKENS)
        pieces = ui.eval_on_selector_all("#timeline rect.write.piece", "(all) => all.length")
        coalesced = ui.eval_on_selector_all("#timeline rect.write.coalesced", "(all) => all.length")
        if session == "cut":
            assert all(w["bytes"] <= 64 for w in writes) and pieces == sum(w["events"] == 0 for w in writes) > 0
        else:
            assert [w["events"] for w in writes] == [3, 3, 3, 2] and coalesced == 4  # 11 events, three a write
            assert ui.query_selector("#timeline-stats [data-stat=coalesced]") is not None


def test_only_the_first_writes_are_drawn_and_the_page_says_so(ui, mock):
    with plain_http(timeout=30) as http:
        http.post(
            f"{mock.base_url}/completions",
            json={
                "model": "m",
                "prompt": "x",
                "stream": True,
                "mockstream": {"random_tokens": 2100, "ttft_ms": 0, "itl_ms": 0},
            },
            headers={"X-Mockstream-Session": "long"},
        ).raise_for_status()
    entry_id = _entry_id(mock, "long")
    _open(ui, entry_id)
    detail = _detail(mock, entry_id)
    assert detail["timeline"]["writes_cut"] is True
    assert len(_writes(ui)) == len(detail["timeline"]["writes"]) == 2000
    total = detail["timeline"]["writes_total"]
    assert total == 2100 + 2  # every token, the finish chunk and [DONE]
    assert f"{total - 2000} later ones are counted" in ui.text_content("#writes-cut")
    assert ui.text_content("#timeline-stats [data-stat=writes] b").startswith(str(total))


# ---------------------------------------------------------------- filters ---
def test_filters_by_session_scenario_dialect_and_outcome(ui, mock):
    with plain_http() as http:
        fast = {"ttft_ms": 0, "itl_ms": 0}
        sent = [
            (
                "alpha",
                "/chat/completions",
                {"model": "m", "messages": MESSAGES, "stream": True, "mockstream": {"scenario": "inspect-a", **fast}},
            ),
            ("beta", "/responses", {"model": "m", "input": "x", "stream": True, "mockstream": fast}),
            (
                "alpha",
                "/messages",
                {"model": "m", "max_tokens": 50, "messages": MESSAGES, "stream": True, "mockstream": fast},
            ),
            ("beta", "/chat/completions", {"model": "m", "messages": MESSAGES, "mockstream": {"chunk_bytes": 0}}),
        ]
        for session, path, body in sent:
            http.post(f"{mock.base_url}{path}", json=body, headers={"X-Mockstream-Session": session})
    ids = [e["id"] for e in journal(mock)]
    assert len(ids) == 4
    for entry_id in ids:
        _wait_ended(ui, entry_id)

    def shown() -> list[int]:
        return ui.eval_on_selector_all(
            "#list .entry:not([hidden])", "(all) => all.map((r) => +r.dataset.id).sort((a, b) => a - b)"
        )

    assert shown() == ids
    ui.fill("#filter-session", "alph")
    assert shown() == [ids[0], ids[2]]
    ui.fill("#filter-session", "")
    ui.select_option("#filter-scenario", "inspect-a")
    assert shown() == [ids[0]]
    ui.select_option("#filter-scenario", "")
    ui.select_option("#filter-dialect", "responses")
    assert shown() == [ids[1]]
    ui.select_option("#filter-dialect", "")
    ui.select_option("#filter-outcome", "rejected")
    assert shown() == [ids[3]]
    assert ui.text_content("#count") == "1 of 4 requests"
    ui.fill("#filter-session", "alpha")
    assert shown() == []
    ui.click("#reset-filters")
    assert shown() == ids and ui.text_content("#count") == "4 requests"
    dialects = ui.eval_on_selector_all("#filter-dialect option", "(all) => all.map((o) => o.value)")
    assert dialects == ["", "chat", "messages", "responses"]
    _open(ui, ids[3])
    assert ui.text_content("#d-scenario-facts").startswith("rejected")
    assert "Not streamed" in ui.text_content("[data-card=timeline]")


# ---------------------------------------------------------------- reassembly ---
def test_a_tool_call_stream_shows_each_call_with_its_arguments(ui, mock):
    calls = [
        {"name": "get_weather", "arguments": {"city": "Paris"}},
        {"name": "get_time", "arguments": '{"tz": "Europe/Paris"}', "id": "call_fixed_id"},
    ]
    seen: dict[int, dict[str, str]] = {}
    with openai_sdk(mock) as client:
        stream = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            stream=True,
            extra_headers={"X-Mockstream-Session": "tools"},
            extra_body={"mockstream": {"content": "Let me check.", "tool_calls": calls, "ttft_ms": 0, "itl_ms": 0}},
        )
        for chunk in stream:
            for call in chunk.choices[0].delta.tool_calls or []:
                got = seen.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
                got["id"] += call.id or ""
                got["name"] += call.function.name or ""
                got["arguments"] += call.function.arguments or ""
    _open(ui, _entry_id(mock, "tools"))

    shown = ui.eval_on_selector_all(
        "#d-tools .tool-call",
        """(all) => all.map((t) => ({name: t.querySelector('.tool-name').textContent,
                                    id: (t.querySelector('.tool-id') || {}).textContent,
                                    arguments: JSON.parse(t.querySelector('.tool-args').textContent)}))""",
    )
    assert [s["name"] for s in shown] == ["get_weather", "get_time"] == [seen[i]["name"] for i in (0, 1)]
    assert [s["arguments"] for s in shown] == [{"city": "Paris"}, {"tz": "Europe/Paris"}]
    assert [s["arguments"] for s in shown] == [json.loads(seen[i]["arguments"]) for i in (0, 1)]
    assert [s["id"] for s in shown] == [seen[0]["id"], "call_fixed_id"]
    assert ui.text_content("#d-text") == "Let me check."
    assert "finish: tool_calls" in ui.text_content("[data-card=answer] summary")
    _shot(ui, "tool-calls")


KNOBS = {
    "tokens": ["Hi", " there", "!"],
    "reasoning": "Think first.",
    "ttft_ms": 0,
    "itl_ms": 0,
    "tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}],
}
GEMINI = {"contents": [{"role": "user", "parts": [{"text": "x"}]}]}
ANTHROPIC = {"model": "m", "max_tokens": 99, "messages": MESSAGES, "stream": True}
DIALECTS = {  # name: (method, path, body, has reasoning, has tool calls)
    "completions": ("POST", "/v1/completions", {"model": "m", "prompt": "x", "stream": True}, False, False),
    "responses": ("POST", "/v1/responses", {"model": "m", "input": "x", "stream": True}, True, True),
    "messages": ("POST", "/v1/messages", ANTHROPIC, True, True),
    "gemini-sse": ("POST", "/v1beta/models/g:streamGenerateContent?alt=sse", GEMINI, True, True),
    "gemini-json-array": ("POST", "/v1beta/models/g:streamGenerateContent", GEMINI, True, True),
    "chat-two-choices": (
        "POST",
        "/v1/chat/completions",
        {"model": "m", "messages": MESSAGES, "stream": True, "n": 2},
        True,
        True,
    ),
    "chat-not-streamed": ("POST", "/v1/chat/completions", {"model": "m", "messages": MESSAGES}, True, True),
    "eventsource": ("GET", "/v1/chat/completions?content=Hi%20there!&ttft_ms=0&itl_ms=0", None, False, False),
}


@pytest.mark.parametrize("name", DIALECTS)
def test_every_dialect_is_reassembled_into_text_reasoning_and_tool_calls(ui, mock, name):
    method, path, body, reasoning, tools = DIALECTS[name]
    with plain_http() as http:
        payload = None if body is None else {**body, "mockstream": KNOBS}
        response = http.request(method, mock.url + path, json=payload, headers={"X-Mockstream-Session": name})
    assert response.status_code == 200, response.text
    entry_id = _entry_id(mock, name)
    _open(ui, entry_id)

    assert ui.text_content("#d-text") == "Hi there!"
    if reasoning:
        assert ui.text_content("#d-reasoning") == "Think first."
    if tools:
        assert ui.text_content("#d-tools .tool-name") == "get_weather"
        assert json.loads(ui.text_content("#d-tools .tool-args")) == {"city": "Paris"}
    else:
        assert ui.query_selector("#d-tools") is None
    assert ui.query_selector("#d-answer .problem") is None  # every event parsed
    texts = ui.eval_on_selector_all("#d-answer .choice-text", "(all) => all.map((t) => t.textContent)")
    assert texts == ["Hi there!"] * (2 if name == "chat-two-choices" else 1)
    streamed = name != "chat-not-streamed"
    events = ui.eval_on_selector_all("#d-raw .raw-event", "(all) => all.map((e) => +e.dataset.ms)")
    if streamed:  # every event is timed by the write that completed it
        detail = _detail(mock, entry_id)
        assert len(events) == detail["events_sent"] > 3 and all(ms >= 0 for ms in events)
        assert sorted(events) == events
    else:
        assert events == [] and ui.query_selector("#timeline") is None
        assert json.loads(ui.text_content("#d-raw"))["object"] == "chat.completion"


# ---------------------------------------------------------------- the page itself ---
def test_the_list_keeps_only_the_newest_entries(ui, mock):
    ui.evaluate("window.inspector.limit = 5")  # 1000 on the page; a small bound makes the test quick
    try:
        with plain_http() as http:
            for _ in range(8):
                body = {"model": "m", "messages": MESSAGES, "mockstream": {"ttft_ms": 0, "itl_ms": 0}}
                http.post(f"{mock.base_url}/chat/completions", json=body)
        ids = [e["id"] for e in journal(mock)]
        ui.wait_for_selector(f'{_row(ui, ids[-1])}:not([data-outcome="in_progress"])', state="attached")
        listed = ui.eval_on_selector_all("#list .entry", "(all) => all.map((r) => +r.dataset.id)")
        kept = ui.evaluate("window.inspector.entries.size")
    finally:
        ui.evaluate("window.inspector.limit = 1000")
    assert listed == ids[::-1][:5] and kept == 5


def test_a_page_opened_later_lists_what_came_before(ui, mock, browser):  # noqa: F811
    for session in ("before-1", "before-2"):
        _chat(mock, session, {"content": f"Sent {session}.", "ttft_ms": 0, "itl_ms": 0})
    ids = [e["id"] for e in journal(mock)]
    page = browser.new_page()
    try:
        page.goto(f"{mock.url}/_mockstream/ui/")
        page.wait_for_function("(n) => document.querySelectorAll('#list .entry').length === n", arg=len(ids))
        listed = page.eval_on_selector_all("#list .entry", "(all) => all.map((r) => +r.dataset.id)")
        page.click(_row(page, ids[0]))
        page.wait_for_selector("#d-text")
        text = page.text_content("#d-text")
    finally:
        page.close()
    assert listed == ids[::-1]  # newest first
    assert text == "Sent before-1."


def test_the_page_needs_nothing_but_its_own_server(tab, mock):
    with plain_http() as http:
        for path in ("/_mockstream/ui", "/_mockstream/ui/"):
            response = http.get(mock.url + path)
            assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
            policy = response.headers["content-security-policy"]
            assert "default-src 'none'" in policy and "connect-src 'self'" in policy
    assert tab.requested and all(url.startswith(mock.url + "/_mockstream/") for url in tab.requested), tab.requested
    shown = tab.text_content("#worker")
    assert shown == f"pid {os.getpid()}"  # MockServer: one worker, in this process


def test_the_demo_page_links_to_the_inspector_and_admin_off_removes_both(browser):  # noqa: F811
    page = browser.new_page()
    try:
        with MockServer() as on:
            page.goto(on.url + "/")
            page.wait_for_selector("#inspector:not([hidden])")
            assert page.get_attribute("#inspector", "href") == "/_mockstream/ui"
            page.click("#inspector")
            page.wait_for_selector("#worker[data-pid]")
        with MockServer(admin=False) as off, plain_http() as http:
            assert http.get(off.url + "/_mockstream/ui").status_code == 404
            assert http.get(off.url + "/_mockstream/events").status_code == 404
            page.goto(off.url + "/")
            page.wait_for_function("() => document.getElementById('base').textContent !== ''")
            page.wait_for_timeout(200)  # the HEAD of the inspector has answered
            assert page.is_hidden("#inspector")
    finally:
        page.close()


def test_with_workers_the_page_says_which_worker_it_shows(browser):  # noqa: F811
    serve = Serve("--workers", "2")
    page = browser.new_page()
    try:
        page.goto(serve.url + "/_mockstream/ui")
        page.wait_for_selector("#worker[data-pid]")
        shown = page.text_content("#worker")
        worker, pid = page.get_attribute("#worker", "data-worker"), page.get_attribute("#worker", "data-pid")
        with plain_http() as http:
            http.post(f"{serve.url}/v1/chat/completions", json={"model": "m", "messages": MESSAGES}).raise_for_status()
    finally:
        page.close()
        serve.close()
    assert shown == f"worker {worker} of 2 · pid {pid}", shown
    assert worker in ("1", "2") and int(pid) != os.getpid()


# ---------------------------------------------------------------- the README's screenshot ---
def test_screenshot_for_the_readme(ui, mock):
    """A few requests of several kinds, one selected: tests/artifacts/inspector.png (docs/inspector.png)."""
    with plain_http() as http:

        def post(path: str, body: dict[str, Any], session: str) -> None:
            http.post(mock.base_url + path, json=body, headers={"X-Mockstream-Session": session})

        post(
            "/messages",
            {
                "model": "claude-sonnet-4",
                "max_tokens": 99,
                "messages": MESSAGES,
                "stream": True,
                "mockstream": {**KNOBS, "ttft_ms": 120, "itl_ms": 15},
            },
            "agent-7",
        )
        post(
            "/responses",
            {
                "model": "gpt-4.1",
                "input": "x",
                "stream": True,
                "mockstream": {"content": "Short answer.", "ttft_ms": 60, "itl_ms": 20},
            },
            "agent-7",
        )
        post("/chat/completions", {"model": "gpt-4o", "messages": MESSAGES, "mockstream": {"ttft_ms": "soon"}}, "ci")
        _chat(
            mock,
            "ci",
            {"content": "This one breaks.", "ttft_ms": 80, "itl_ms": 25, "fault": {"kind": "reset", "at_token": 2}},
        )
    _chat(
        mock,
        "checkout-flow",
        {
            "content": "Streams arrive as a plan, an encoding and a delivery: this one is cut into small writes.",
            "ttft_ms": 180,
            "itl_ms": 28,
            "jitter_ms": 10,
            "chunk_bytes": 96,
            "tool_calls": [{"name": "search_docs", "arguments": {"query": "timeline", "limit": 3}}],
        },
    )
    entry_id = _entry_id(mock, "checkout-flow")
    _open(ui, entry_id)
    ui.evaluate("for (const card of ['request', 'headers']) document.querySelector(`[data-card=${card}]`).open = false")
    path = _shot(ui, "readme")
    assert path.stat().st_size > 20_000
