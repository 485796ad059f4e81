"""mockstream in a real browser: headless Chromium, driven with Playwright, against real servers.

The pages under `tests/browser/app/` are what a chat front-end does: `fetch()` + `getReader()` +
`TextDecoder` (a correct parser and a naive one) and `new EventSource(url)`. They are served from
another origin (a plain static server on another port) or from the mock itself (`--static`).

Chromium is Debian's (`/usr/bin/chromium`, installed by `.ci/run`; MOCKSTREAM_CHROMIUM points elsewhere);
Playwright never downloads one. Without it these tests are skipped, saying what to install, except under
CI=true, where they fail; a Chromium that is there but cannot start always fails them.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import signal
import subprocess
import sys
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import unavailable
from playwright.sync_api import sync_playwright

from mockstream.plan.schema import DEFAULT_TEXT, Scenario
from mockstream.testing import MockServer

APP = Path(__file__).parent / "browser" / "app"
CHROMIUM = os.environ.get("MOCKSTREAM_CHROMIUM", "/usr/bin/chromium")
# Playwright adds --headless and an empty temporary --user-data-dir itself.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TEXT = "Hello, 世界! Ça va?"
WAIT_MS = 15_000


# ---------------------------------------------------------------- servers and browser ---
class PageServer:
    """A plain static file server on its own port: the "dev server" of a front-end on another origin."""

    def __init__(self, root: Path, host: str = "127.0.0.1"):
        handler = functools.partial(_QuietHandler, directory=str(root))
        self.httpd = http.server.ThreadingHTTPServer((host, 0), handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="page-server", daemon=True)
        self.thread.start()

    def origin(self, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class Serve:
    """`mockstream serve ...` in a subprocess, on a free port, stopped with SIGTERM. Its output is drained
    by a thread (a full pipe would block the server) and kept in `output` for failure messages."""

    def __init__(self, *flags: str):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mockstream", "serve", "--port", "0", "--speed", "0", *flags],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.process.stdout is not None
        self.output: list[str] = []
        found = None
        for line in self.process.stdout:  # log lines may come first; EOF if it exits
            self.output.append(line)
            found = re.search(r"listening on (http://\S+) ", line)
            if found is not None:
                break
        if found is None:
            self.close()
            raise AssertionError(f"mockstream serve {' '.join(flags)} did not start: {''.join(self.output)}")
        self.url = found.group(1)
        self.drain = threading.Thread(target=self.output.extend, args=(self.process.stdout,), daemon=True)
        self.drain.start()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            if hasattr(self, "drain"):
                self.drain.join(timeout=5)
            assert self.process.stdout is not None
            self.process.stdout.close()


INSTALL_CHROMIUM = "`apt-get install chromium`, as .ci/run does, or point MOCKSTREAM_CHROMIUM at a Chromium binary"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        unavailable(f"Chromium is not installed at {CHROMIUM} (install it: {INSTALL_CHROMIUM})")
    with sync_playwright() as playwright:
        try:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=30_000)
        except Exception as exc:
            problem = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
        else:
            problem = None
        if problem is not None:  # a failure, not a skip: it is installed, so it must start
            pytest.fail(f"Chromium did not start from {CHROMIUM} ({problem}); {INSTALL_CHROMIUM}.", pytrace=False)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def tab(browser: Any) -> Iterator[Any]:
    """One tab for the module (opening one costs most of a second); uncaught page errors land in `tab.errors`."""
    context = browser.new_context()
    context.set_default_timeout(WAIT_MS)
    shared = context.new_page()
    shared.errors = []
    shared.on("pageerror", lambda error: shared.errors.append(str(error)))
    yield shared
    context.close()


@pytest.fixture
def page(tab: Any) -> Iterator[Any]:
    """The shared tab, on a blank document with no errors recorded; each test then opens its own page."""
    tab.goto("about:blank")
    tab.errors.clear()
    yield tab
    tab.goto("about:blank")  # ends whatever the test left streaming


@pytest.fixture(scope="module")
def mock() -> Iterator[MockServer]:
    """The mock on its own port, any origin allowed (the default), no pacing delays."""
    scenarios = [Scenario.from_dict({"name": "browser-hello", "content": TEXT}, "test_browser.py")]
    with MockServer(scenarios, speed=0) as server:
        yield server


@pytest.fixture(scope="module")
def pages() -> Iterator[PageServer]:
    server = PageServer(APP)
    yield server
    server.close()


@pytest.fixture
def journal(mock: MockServer) -> Callable[[], list[dict[str, Any]]]:
    """Clear the mock's journal now; the returned function reads it over HTTP, as a test outside would."""
    _post(f"{mock.url}/_mockstream/reset")
    return lambda: _get_json(f"{mock.url}/_mockstream/requests")


def _post(url: str) -> Any:
    with urllib.request.urlopen(urllib.request.Request(url, data=b"", method="POST"), timeout=10) as response:
        return json.load(response)


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def _open(page: Any, url: str) -> Any:
    page.goto(url)
    page.wait_for_function("typeof chat === 'function'")
    return page


def _chat(page: Any, url: str, **options: Any) -> dict[str, Any]:
    return page.evaluate("([url, options]) => chat(url, options)", [url, options])


def _query(**params: str) -> str:
    return urllib.parse.urlencode(params)


def _listen(page: Any, url: str, how: str) -> dict[str, Any]:
    return page.evaluate("([url, how]) => listen(url, how)", [url, how])


# ---------------------------------------------------------------- fetch from another origin ---
def test_fetch_from_another_origin_streams_the_whole_answer(page, mock, pages, journal):
    _open(page, pages.origin() + "/index.html")
    headers = {
        "Authorization": "Bearer sk-dev",
        "X-Mockstream-Scenario": "browser-hello",
        "x-stainless-os": "MacOS",
        "x-stainless-lang": "js",
    }
    result = _chat(page, f"{mock.base_url}/chat/completions", headers=headers)

    assert result["error"] is None, result
    assert result["finish"] == "stop"
    assert page.inner_text("#answer") == TEXT  # the scenario named in a custom header: the preflight let it through
    assert page.inner_text("#status") == "stop"
    assert result["requestId"], "x-request-id is not readable: Access-Control-Expose-Headers is missing it"
    assert result["hidden"] is None  # sent by the mock, not exposed: proof the browser applied CORS at all
    [entry] = journal()
    assert entry["path"] == "/v1/chat/completions"
    assert entry["scenario"] == "browser-hello"
    assert entry["outcome"] == "completed"
    sent = {name.lower(): value for name, value in entry["headers"].items()}
    assert sent["origin"] == pages.origin()
    assert sent["x-stainless-os"] == "MacOS"
    assert sent["authorization"] == "***"


def test_cors_origin_allows_that_origin_and_refuses_others(browser, pages):
    allowed = pages.origin("localhost")
    other = PageServer(APP, host="localhost")
    serve = Serve("--cors-origin", allowed)
    try:
        url = f"{serve.url}/v1/chat/completions"
        good = browser.new_page()
        bad = browser.new_page()
        try:
            ok = _chat(_open(good, allowed + "/index.html"), url, knobs={"content": TEXT})
            refused = _chat(_open(bad, other.origin("localhost") + "/index.html"), url, knobs={"content": TEXT})
        finally:
            good.close()
            bad.close()
        entries = _get_json(f"{serve.url}/_mockstream/requests")
    finally:
        serve.close()
        other.close()

    assert ok["error"] is None and ok["text"] == TEXT, ok
    assert refused["error"] == "TypeError: Failed to fetch", refused
    assert refused["text"] == ""
    # The preflight was refused, so the POST itself never reached the mock.
    assert [e["headers"].get("Origin") for e in entries] == [allowed]


# ---------------------------------------------------------------- alias + --static, one origin ---
def test_route_alias_and_static_page_on_one_origin(page):
    serve = Serve("--route", "/api/chat=chat", "--route", "/api/stream=chat", "--static", str(APP))
    try:
        _open(page, serve.url + "/")  # index.html, which POSTs to /api/chat as the app always did
        page.click("#send")
        page.wait_for_function("window.result !== undefined")
        result = page.evaluate("window.result")
        answer = page.inner_text("#answer")
        streamed = _listen(page, f"{serve.url}/api/stream?{_query(content=TEXT, done='false')}", "stop")
        entries = _get_json(f"{serve.url}/_mockstream/requests")
    finally:
        serve.close()

    assert result["error"] is None, result
    assert answer == DEFAULT_TEXT
    assert streamed["text"] == TEXT and streamed["finish"] == "stop"
    assert [(e["method"], e["path"], e["outcome"]) for e in entries] == [
        ("POST", "/api/chat", "completed"),
        ("GET", "/api/stream", "completed"),
    ]
    assert entries[0]["headers"]["Origin"] == serve.url  # same origin: no preflight needed


# ---------------------------------------------------------------- EventSource ---
def test_eventsource_builds_the_text_and_closes_on_stop(page, mock, pages, journal):
    _open(page, pages.origin() + "/index.html")
    seen = _listen(page, f"{mock.base_url}/chat/completions?{_query(content=TEXT)}", "stop")

    assert seen["text"] == TEXT and page.inner_text("#answer") == TEXT
    assert seen["finish"] == "stop"
    assert seen["errors"] == []  # closed by the page on "stop", before the stream's end could fire one
    assert seen["readyState"] == 2
    assert page.errors == []  # "[DONE]" came after "stop": the closed source never delivered it
    [entry] = journal()
    assert (entry["method"], entry["status"], entry["body"]["mockstream"]) == ("GET", 200, {"content": TEXT})


def test_eventsource_naive_json_parse_trips_on_done(page, mock, pages):
    _open(page, pages.origin() + "/index.html")
    url = f"{mock.base_url}/chat/completions?{_query(content=TEXT)}"
    seen = _listen(page, url, "naive")

    assert seen["text"] == TEXT
    assert len(page.errors) == 1 and "JSON" in page.errors[0], page.errors  # the real bug, exposed
    assert seen["errors"] == [0]  # then the stream ended and the browser was about to reconnect

    page.errors.clear()
    seen = _listen(page, url + "&done=false", "naive")
    assert seen["text"] == TEXT
    assert page.errors == []
    assert seen["errors"] == [0]


def test_eventsource_reconnects_and_sends_last_event_id(page, mock, pages, journal):
    _open(page, pages.origin() + "/index.html")
    seen = _listen(page, f"{mock.base_url}/chat/completions?{_query(content=TEXT, done='false')}", "reconnect")

    assert seen["opens"] == 2
    assert seen["messages"] > 2 and seen["lastEventId"] == str(seen["messages"])  # ids count the events: 1, 2, ...
    assert 900 <= seen["reconnectMs"] < 2900, seen  # the stream's `retry: 1000`, not Chromium's default 3 s
    first, second = journal()
    assert "last_event_id" not in first
    assert second["last_event_id"] == seen["lastEventId"]


def test_eventsource_bad_knob_is_a_400_that_closes_it(page, mock, pages, journal):
    _open(page, pages.origin() + "/index.html")
    url = f"{mock.base_url}/chat/completions?chunk_bytes=0&fault.kind=stal"
    seen = _listen(page, url, "naive")
    answer = page.evaluate("(url) => fetch(url).then(async (r) => [r.status, await r.json()])", url)

    assert seen["errors"] == [2]  # CLOSED at once: EventSource does not retry a non-200 answer
    assert seen["opens"] == 0 and seen["text"] == ""
    status, body = answer
    assert status == 400
    assert "mockstream.chunk_bytes" in body["error"]["message"]
    assert "mockstream.fault.kind" in body["error"]["message"]
    assert [e["status"] for e in journal()] == [400, 400]  # the EventSource request (never retried), then fetch


# ---------------------------------------------------------------- parsers: the bugs the mock catches ---
DELIVERIES = {"whole-events": {}, "chunk_bytes=1": {"chunk_bytes": 1}, "chunk_bytes=3": {"chunk_bytes": 3}}


PARSERS = ["correct", "naive", "decodeEachRead"]


@pytest.mark.parametrize("delivery", DELIVERIES)
def test_parsers_on_whole_and_cut_events(page, mock, pages, delivery):
    """The same answer to three parsers at once: correct; naive (each read decoded alone and split on
    newlines); and one that buffers lines but still decodes each read alone (the UTF-8 bug by itself)."""
    _open(page, pages.origin() + "/index.html")
    knobs = {"content": TEXT, **DELIVERIES[delivery]}
    results = page.evaluate(
        "([url, knobs, parsers]) => Promise.all(parsers.map((parser) => chat(url, {knobs, parser, into: parser})))",
        [f"{mock.base_url}/chat/completions", knobs, PARSERS],
    )
    correct, naive, decode_each_read = results
    cut = bool(DELIVERIES[delivery])

    # The correct parser reconstructs the text exactly, however the stream is cut.
    assert correct["error"] is None and correct["finish"] == "stop", correct
    assert correct["text"] == TEXT and page.inner_text("#correct") == TEXT
    if not cut:
        # Whole events: the naive parsers look fine, so a test against a well-behaved server passes.
        assert naive["error"] is None and naive["text"] == TEXT and naive["finish"] == "stop", naive
        assert decode_each_read["text"] == TEXT, decode_each_read
        return
    # The cut reached the page as many small reads (the naive parser may stop at its first).
    assert correct["reads"] > 50 and decode_each_read["reads"] > 50, results
    # Cut events: the naive parser throws on a half line (SyntaxError from JSON.parse) or skips the
    # pieces and loses text; it never sees the stop chunk whole.
    assert naive["error"] is not None or naive["text"] != TEXT, f"the naive parser survived {delivery}: {naive}"
    assert naive["finish"] is None, naive
    assert naive["error"] is None or naive["error"].startswith("SyntaxError"), naive
    # Lines buffered but each read decoded alone: every line still parses...
    assert decode_each_read["error"] is None and decode_each_read["finish"] == "stop", decode_each_read
    if DELIVERIES[delivery]["chunk_bytes"] == 1:
        # ...yet a character cut between reads becomes U+FFFD. Only certain with one-byte writes: three-byte
        # writes may keep a character whole, and a busy browser may read several writes at once.
        assert "\ufffd" in decode_each_read["text"], decode_each_read
        assert decode_each_read["text"].startswith("Hello, "), decode_each_read


# ---------------------------------------------------------------- the demo page ---
def test_demo_page_streams_the_default_scenario(page, tmp_path):
    scenarios = [
        Scenario.from_dict({"name": "chinese", "description": "Chinese tokens", "content": "你好，世界。"}, "test"),
        Scenario.from_dict({"name": "slow-start", "content": "Hi.", "ttft_ms": 3000}, "test"),
    ]
    with MockServer(scenarios, speed=4) as server:  # paced like a model, four times faster
        page.set_viewport_size({"width": 1280, "height": 820})
        page.goto(server.url + "/")
        page.wait_for_function("document.querySelectorAll('#scenario option').length === 3")
        page.click("#go")
        page.wait_for_function("document.getElementById('status').textContent !== '…'")
        page.wait_for_selector("#go:not([disabled])")
        shot = tmp_path / "demo.png"
        page.screenshot(path=str(shot), full_page=True)
        options = page.eval_on_selector_all("#scenario option", "(all) => all.map((o) => o.textContent)")
        stats = {name: page.inner_text(f"#{name}") for name in ("status", "ttft", "tokens", "rate", "reads", "bytes")}
        answer = page.inner_text("#answer")
        raw = page.inner_text("#raw")
        base = page.inner_text("#base")

    assert stats["status"] == "stop", stats
    assert answer == DEFAULT_TEXT
    assert base == server.base_url
    assert options == ["default", "chinese", "slow-start"]
    ttft = re.fullmatch(r"(\d+) ms", stats["ttft"])
    assert ttft is not None and 50 <= int(ttft.group(1)) < 5000, stats  # the default's 250 ms at speed 4
    assert int(stats["tokens"]) > 30, stats
    assert float(stats["rate"]) > 0, stats
    assert int(stats["reads"]) > 1 and int(stats["bytes"]) > len(DEFAULT_TEXT.encode()), stats
    assert "data: [DONE]" in raw and raw.rstrip().endswith('end of stream: finish_reason "stop"')
    assert page.errors == []
    assert shot.stat().st_size > 10_000


# ---------------------------------------------------------------- without Chromium ---
@pytest.mark.parametrize("ci", ["", "true"])
def test_without_chromium_the_browser_tests_skip_saying_what_to_install_and_fail_under_ci(ci, tmp_path):
    """A plain `pytest` on a machine without Chromium skips (with the command to install it); CI=true fails."""
    root = Path(__file__).resolve().parent.parent
    missing = tmp_path / "no-chromium-here"
    env = {**os.environ, "MOCKSTREAM_CHROMIUM": str(missing), "CI": ci}
    chosen = [
        "tests/test_browser.py::test_fetch_from_another_origin_streams_the_whole_answer",
        "tests/test_line_endings.py::test_eventsource_assembles_the_text",
    ]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist", "-rsE", *chosen],
        cwd=root, env=env, capture_output=True, text=True, timeout=120,
    )
    output = result.stdout + result.stderr
    says = f"Chromium is not installed at {missing} (install it: `apt-get install chromium`"
    assert says in output, output
    if ci:
        assert result.returncode == 1, output
        assert "4 errors" in output and "skipped" not in output, output
        assert "CI=true, so every test must run" in output
    else:
        assert result.returncode == 0, output
        assert "4 skipped" in output and "error" not in output.lower(), output
