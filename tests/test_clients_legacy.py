"""The pre-1.0 openai client (openai==0.28.1) against a real mockstream server, unchanged.

openai 0.28 cannot share a virtualenv with openai >= 1, so this module builds one of its own, once, under
`.cache/openai-0.28/` in the repository (git-ignored) and reuses it while `pip show openai` there says
0.28.1. Building needs the package index; without it these tests fail and say so, they never skip.
`legacy_client.py` (run with that virtualenv's Python) is the application: `openai.api_base = ...`,
`openai.ChatCompletion.create(..., stream=True)`, `chunk.choices[0].delta.get('content')`.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mockstream import load_scenarios
from mockstream.plan.content import tokenize
from mockstream.plan.schema import Scenario
from mockstream.testing import MockHandle, MockServer

LEGACY = "0.28.1"
ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".cache" / "openai-0.28"
CLIENT = Path(__file__).resolve().parent / "legacy_client.py"
SCENARIOS = ROOT / "scenarios"
MESSAGES = [{"role": "user", "content": "Tell me something."}]
TEXT = "The old client reads every chunk the same way the new one does."
TOKENS = ["Eins", " zwei", " drei", " vier", " fünf", " sechs"]
K = 3
BUILD_TIMEOUT = 540
CALL_TIMEOUT = 30

# The first test may build the virtualenv (about half a minute with a warm package cache).
pytestmark = pytest.mark.timeout(BUILD_TIMEOUT + 60)


# ---------------------------------------------------------------- the separate virtualenv ---
def _python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _has_legacy(venv: Path) -> bool:
    python = _python(venv)
    if not python.exists():
        return False
    shown = subprocess.run([str(python), "-m", "pip", "show", "openai"], capture_output=True, text=True,
                           timeout=60, env=_env())
    return shown.returncode == 0 and f"Version: {LEGACY}" in shown.stdout.splitlines()


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"  # the server is local: never through a proxy
    return env


@contextlib.contextmanager
def _build_lock() -> Iterator[None]:
    """One build at a time, across pytest-xdist workers and concurrent runs."""
    VENV.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; builds are rare enough
        yield
        return
    with open(VENV.parent / "openai-0.28.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _run(command: list[str], what: str) -> None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=BUILD_TIMEOUT, env=_env())
    except subprocess.TimeoutExpired:
        pytest.fail(f"{what} took longer than {BUILD_TIMEOUT} s: {' '.join(command)}", pytrace=False)
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip().splitlines()[-25:]
        pytest.fail(
            f"{what} failed (exit {done.returncode}), so the openai {LEGACY} tests cannot run. They need the "
            f"package index reachable (`pip install openai=={LEGACY}`).\n$ {' '.join(command)}\n" + "\n".join(output),
            pytrace=False,
        )


def legacy_python() -> Path:
    """The Python of a virtualenv with openai 0.28.1, built on first use and reused afterwards."""
    with _build_lock():
        if _has_legacy(VENV):
            return _python(VENV)
        shutil.rmtree(VENV, ignore_errors=True)  # half-built or another version: start over
        started = time.monotonic()
        _run([sys.executable, "-m", "venv", str(VENV)], f"creating the virtualenv {VENV}")
        _run([str(_python(VENV)), "-m", "pip", "install", "--quiet", f"openai=={LEGACY}"],
             f"installing openai=={LEGACY} into {VENV}")
        if not _has_legacy(VENV):
            pytest.fail(f"{VENV}: pip installed something, but `pip show openai` does not report {LEGACY}",
                        pytrace=False)
        sys.stderr.write(f"\nbuilt the openai {LEGACY} virtualenv in {time.monotonic() - started:.1f} s\n")
        return _python(VENV)


class LegacyClient:
    """`legacy_client.py` running in the 0.28 virtualenv; one process answers every call of the module."""

    def __init__(self, python: Path):
        self.process = subprocess.Popen(
            [str(python), str(CLIENT)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=_env(), cwd=str(CLIENT.parent),
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.errors: list[str] = []
        self._threads = [threading.Thread(target=self._read, args=(self.process.stdout, self.lines), daemon=True),
                         threading.Thread(target=self._drain, args=(self.process.stderr,), daemon=True)]
        for thread in self._threads:
            thread.start()

    @staticmethod
    def _read(stream, lines: queue.Queue) -> None:
        for line in stream:
            if line.startswith("RESULT "):
                lines.put(line[len("RESULT "):])
        lines.put(None)

    def _drain(self, stream) -> None:
        for line in stream:
            self.errors.append(line)
            del self.errors[:-200]

    def call(self, server: MockServer, call: str, **kwargs: Any) -> dict[str, Any]:
        kwargs.setdefault("request_timeout", 10)
        request = {"api_base": server.base_url, "call": call, "kwargs": kwargs}
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        try:
            line = self.lines.get(timeout=CALL_TIMEOUT)
        except queue.Empty:
            pytest.fail(f"the openai {LEGACY} client gave no answer in {CALL_TIMEOUT} s:\n{''.join(self.errors)}")
        if line is None:
            pytest.fail(f"the openai {LEGACY} client exited:\n{''.join(self.errors)}")
        result = json.loads(line)
        assert result["version"] == LEGACY
        return result

    def close(self) -> None:
        process = self.process
        assert process.stdin is not None
        process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        for thread in self._threads:
            thread.join(timeout=5)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture(scope="module")
def legacy() -> Iterator[LegacyClient]:
    client = LegacyClient(legacy_python())
    yield client
    client.close()


@pytest.fixture(scope="module")
def srv() -> Iterator[MockServer]:
    """A server with the ready scenario files and two of our own, for the header route."""
    own = [
        # one byte per write, 1 ms apart: the client's reads really see split lines and characters
        Scenario.from_dict({"name": "legacy-one-byte", "tokens": ["Hé", " 你好", " 😀"], "chunk_bytes": 1}),
        Scenario.from_dict({"name": "legacy-disconnect", "tokens": TOKENS,
                            "fault": {"kind": "disconnect", "at_token": K}}),
    ]
    with MockServer([*load_scenarios(SCENARIOS), *own], speed=0) as server:
        yield server


def chat(legacy: LegacyClient, srv: MockServer, knobs: dict[str, Any] | None = None, **kwargs: Any) -> dict:
    kwargs.setdefault("model", "gpt-3.5-turbo")
    kwargs.setdefault("messages", MESSAGES)
    kwargs.setdefault("stream", True)
    if knobs is not None:
        kwargs["mockstream"] = knobs
    return legacy.call(srv, "chat", **kwargs)


def text_of(result: dict[str, Any]) -> str:
    return "".join(piece for piece in result["pieces"] if piece)


def contents(result: dict[str, Any]) -> list[str]:
    return [piece for piece in result["pieces"] if piece]


# ---------------------------------------------------------------- ChatCompletion, streamed ---
def test_chat_stream_reassembles_the_text(legacy, srv):
    result = chat(legacy, srv, {"content": TEXT})
    assert result["error"] is None, result
    assert text_of(result) == TEXT
    assert len(contents(result)) == len(tokenize(TEXT))
    assert result["pieces"][0] == ""  # the role chunk
    assert result["pieces"][-1] is None  # the finish chunk's delta is {}
    assert [r for r in result["finish_reasons"] if r] == ["stop"]
    assert set(result["objects"]) == {"chat.completion.chunk"}


def test_the_mockstream_keyword_travels_in_the_body(legacy, srv):
    handle = MockHandle(srv)
    handle.reset()
    result = chat(legacy, srv, {"tokens": TOKENS})
    assert contents(result) == TOKENS
    [entry] = handle.requests
    assert entry.body["mockstream"] == {"tokens": TOKENS}
    assert entry.body["stream"] is True


def test_chunk_bytes_one_via_the_keyword(legacy, srv):
    text = "Héllo wörld — 你好，世界！ 😀"
    result = chat(legacy, srv, {"content": text, "chunk_bytes": 1, "chunk_gap_ms": 0})
    assert result["error"] is None, result
    assert text_of(result) == text


def test_chunk_bytes_one_with_gaps_via_the_scenario_header(legacy, srv):
    result = chat(legacy, srv, headers={"X-Mockstream-Scenario": "legacy-one-byte"})
    assert result["error"] is None, result
    assert contents(result) == ["Hé", " 你好", " 😀"]


def test_a_scenario_file_through_the_header(legacy, srv):
    [scenario] = load_scenarios(SCENARIOS / "length-cutoff.yaml")
    result = chat(legacy, srv, headers={"X-Mockstream-Scenario": "length-cutoff"})
    assert text_of(result) == scenario.knobs["content"]
    assert [r for r in result["finish_reasons"] if r] == ["length"]


def test_chat_async_stream(legacy, srv):
    result = legacy.call(srv, "chat_async", model="gpt-3.5-turbo", messages=MESSAGES, stream=True,
                         mockstream={"tokens": TOKENS})
    assert result["error"] is None, result
    assert contents(result) == TOKENS


# ---------------------------------------------------------------- faults ---
def test_error_event_raises_api_error_after_k_deltas(legacy, srv):
    result = chat(legacy, srv, {"tokens": TOKENS, "fault": {"kind": "error_event", "at_token": K,
                                                            "message": "Upstream failed."}})
    assert contents(result) == TOKENS[:K]
    error = result["error"]
    assert error["mro"][0] == "openai.error.APIError"
    assert "Upstream failed." in error["message"]
    assert "(Error occurred while streaming.)" in error["message"]


def test_error_event_scenario_file_through_the_header(legacy, srv):
    [scenario] = load_scenarios(SCENARIOS / "fault-error-event.yaml")
    fault = scenario.knobs["fault"]
    result = chat(legacy, srv, headers={"X-Mockstream-Scenario": "fault-error-event"})
    assert contents(result) == tokenize(scenario.knobs["content"])[: fault.at_token]
    assert result["error"]["class"] == "APIError"
    assert fault.message in result["error"]["message"]


def test_disconnect_raises_a_connection_error_after_k_deltas(legacy, srv):
    result = chat(legacy, srv, {"tokens": TOKENS, "fault": {"kind": "disconnect", "at_token": K}})
    assert contents(result) == TOKENS[:K]
    error = result["error"]
    # 0.28 does not wrap errors while reading a stream: requests' own connection error reaches the caller
    assert "requests.exceptions.RequestException" in error["mro"], error
    assert error["class"] in ("ChunkedEncodingError", "ConnectionError"), error


def test_disconnect_through_the_header(legacy, srv):
    result = chat(legacy, srv, headers={"X-Mockstream-Scenario": "legacy-disconnect"})
    assert contents(result) == TOKENS[:K]
    assert "requests.exceptions.RequestException" in result["error"]["mro"]


def test_reset_raises_a_connection_error_after_k_deltas(legacy, srv):
    result = chat(legacy, srv, {"tokens": TOKENS, "fault": {"kind": "reset", "at_token": K}})
    assert contents(result) == TOKENS[:K]
    assert "requests.exceptions.RequestException" in result["error"]["mro"], result["error"]


def test_truncate_ends_quietly_without_finish_reason(legacy, srv):
    result = chat(legacy, srv, {"tokens": TOKENS, "fault": {"kind": "truncate", "at_token": K}})
    assert result["error"] is None
    assert contents(result) == TOKENS[:K]
    assert [r for r in result["finish_reasons"] if r] == []


def test_malformed_raises_api_error_after_k_deltas(legacy, srv):
    result = chat(legacy, srv, {"tokens": TOKENS, "fault": {"kind": "malformed", "at_token": K}})
    assert contents(result) == TOKENS[:K]
    assert result["error"]["class"] == "APIError"
    assert result["error"]["http_status"] == 200


def test_http_error_raises_rate_limit_error(legacy, srv):
    result = chat(legacy, srv, headers={"X-Mockstream-Scenario": "fault-http-error"})
    assert result["pieces"] == []
    assert result["error"]["class"] == "RateLimitError"
    assert result["error"]["http_status"] == 429


def test_stall_pauses_then_finishes(legacy, srv):
    started = time.monotonic()
    result = chat(legacy, srv, {"tokens": TOKENS, "fault": {"kind": "stall", "at_token": K, "ms": 300}})
    assert time.monotonic() - started >= 0.3
    assert result["error"] is None
    assert contents(result) == TOKENS


# ---------------------------------------------------------------- non-streaming, Completion ---
def test_non_streaming_chat(legacy, srv):
    result = chat(legacy, srv, {"content": TEXT}, stream=False)
    assert result["error"] is None, result
    assert result["objects"] == ["chat.completion"]
    assert result["content"] == TEXT
    assert result["finish_reasons"] == ["stop"]
    assert result["usage"]["completion_tokens"] == len(tokenize(TEXT))


def test_completion_stream(legacy, srv):
    result = legacy.call(srv, "completion", model="gpt-3.5-turbo-instruct", prompt="Once", stream=True,
                         mockstream={"tokens": TOKENS})
    assert result["error"] is None, result
    assert contents(result) == TOKENS
    assert [r for r in result["finish_reasons"] if r] == ["stop"]
    assert set(result["objects"]) == {"text_completion"}


def test_completion_stream_cut_by_max_tokens(legacy, srv):
    result = legacy.call(srv, "completion", model="m", prompt="Once", stream=True, max_tokens=2,
                         mockstream={"tokens": TOKENS, "chunk_bytes": 1, "chunk_gap_ms": 0})
    assert contents(result) == TOKENS[:2]
    assert [r for r in result["finish_reasons"] if r] == ["length"]


def test_completion_non_streaming(legacy, srv):
    result = legacy.call(srv, "completion", model="m", prompt="Once", mockstream={"content": TEXT})
    assert result["error"] is None, result
    assert result["content"] == TEXT
    assert result["objects"] == ["text_completion"]
    assert result["usage"]["total_tokens"] == result["usage"]["prompt_tokens"] + len(tokenize(TEXT))
