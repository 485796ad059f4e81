"""`mockstream serve` as a container runs it: configured by environment only, drained on SIGTERM, health-checked,
logging each request, and split over worker processes. Real processes and sockets on loopback, never a mock."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest
from helpers import MOCKSTREAM, clean_env, free_port, serve, wait_until

from mockstream.server.access_log import AccessLog, timestamp
from mockstream.server.journal import Entry

MESSAGES = [{"role": "user", "content": "Hello there"}]
CHAT = {"model": "gpt-4o-mini", "messages": MESSAGES}
INLINE = """
scenarios:
  - name: inline-a
    content: Answer from the inline YAML.
  - name: inline-slow
    tokens: [one, " two", " three"]
    ttft_ms: 3000
    itl_ms: 1000
"""


def stream_text(client: httpx.Client, knobs: dict, **extra) -> str:
    body = {**CHAT, "stream": True, "mockstream": knobs, **extra}
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    return response.text


def content_of(sse: str) -> str:
    pieces = []
    for line in sse.splitlines():
        if line.startswith("data: {"):
            for choice in json.loads(line[6:])["choices"]:
                pieces.append(choice["delta"].get("content") or "")
    return "".join(pieces)


# ---------------------------------------------------------------- configured by environment only ---
def test_serve_takes_port_seed_speed_and_inline_scenarios_from_the_environment(tmp_path):
    from mockstream.testing import MockServer

    body = {**CHAT, "mockstream": {"tokens": ["same", " answer"]}}
    with MockServer(seed=5) as reference, MockServer(seed=0) as other:
        at_seed_5 = httpx.post(f"{reference.url}/v1/chat/completions", json=body, timeout=10).json()
        at_seed_0 = httpx.post(f"{other.url}/v1/chat/completions", json=body, timeout=10).json()
    assert at_seed_5["id"] != at_seed_0["id"]

    port = free_port()
    env = clean_env(MOCKSTREAM_PORT=str(port), MOCKSTREAM_SEED="5", MOCKSTREAM_SPEED="0",
                    MOCKSTREAM_SCENARIOS_INLINE=INLINE, MOCKSTREAM_PROT="9")
    with serve(tmp_path, env=env) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        assert server.port == port
        assert "2 scenarios loaded" in server.stdout_lines()[0]
        assert "MOCKSTREAM_PROT is not a setting (did you mean MOCKSTREAM_PORT?)" in server.stderr()
        assert client.post("/v1/chat/completions", json=body).json() == at_seed_5  # the seed took effect
        ids = {m["id"] for m in client.get("/v1/models").json()["data"]}
        assert {"inline-a", "inline-slow"} <= ids
        assert content_of(stream_text(client, {}, model="inline-a")) == "Answer from the inline YAML."
        started = time.monotonic()
        slow = stream_text(client, {}, model="inline-slow")  # 5 s of pacing, gone at speed 0
        assert time.monotonic() - started < 2.0
        assert content_of(slow) == "one two three"
        code, _ = server.signal_and_time()
    assert code == 0


def test_inline_json_adds_to_the_scenario_directory(tmp_path):
    folder = tmp_path / "scenarios"
    folder.mkdir()
    (folder / "mounted.yaml").write_text("name: mounted\ncontent: From the mounted folder.\n")
    inline = json.dumps({"name": "inline-json", "content": "From JSON."})
    env = clean_env(MOCKSTREAM_PORT="0", MOCKSTREAM_SCENARIOS=str(folder), MOCKSTREAM_SCENARIOS_INLINE=inline)
    with serve(tmp_path, env=env) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        assert content_of(stream_text(client, {}, model="mounted")) == "From the mounted folder."
        assert content_of(stream_text(client, {}, model="inline-json")) == "From JSON."
        code, _ = server.signal_and_time()
    assert code == 0


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("MOCKSTREAM_WORKERS", "0", "must be at least 1"),
        ("MOCKSTREAM_SHUTDOWN_GRACE", "-1", "seconds >= 0"),
        ("MOCKSTREAM_LOG_FORMAT", "xml", "expected one of text, json"),
        ("MOCKSTREAM_ACCESS_LOG", "maybe", "expected on or off"),
        ("MOCKSTREAM_PORT", "http", "expected a whole number"),
    ],
)
def test_a_bad_variable_exits_2_at_once_naming_it(variable, value, says):
    started = time.monotonic()
    result = subprocess.run([MOCKSTREAM, "serve"], capture_output=True, text=True, timeout=30,
                            env=clean_env(**{"MOCKSTREAM_PORT": "0", variable: value}))
    assert result.returncode == 2
    assert f"{variable}={value!r}" in result.stderr and says in result.stderr
    assert result.stdout == ""  # never a half-started server
    assert time.monotonic() - started < 10


@pytest.mark.parametrize(
    ("inline", "says"),
    [
        ("name: broken\nfinish_reason: nope\n", "MOCKSTREAM_SCENARIOS_INLINE: finish_reason: unknown value 'nope'"),
        ('[{"name": "a", "content": "x"}, {"name": "b", "chunk_byte": 2}]',
         "MOCKSTREAM_SCENARIOS_INLINE: [1].chunk_byte: unknown knob (did you mean 'chunk_bytes'?)"),
        ("name: [unclosed\n", "MOCKSTREAM_SCENARIOS_INLINE: not valid YAML or JSON"),
        ("content: no name\n", "MOCKSTREAM_SCENARIOS_INLINE: name: every scenario needs a non-empty string name"),
    ],
)
def test_a_bad_inline_scenario_exits_2_naming_the_variable_and_field(inline, says):
    result = subprocess.run([MOCKSTREAM, "serve"], capture_output=True, text=True, timeout=30,
                            env=clean_env(MOCKSTREAM_PORT="0", MOCKSTREAM_SCENARIOS_INLINE=inline))
    assert result.returncode == 2
    assert says in result.stderr
    assert result.stdout == ""


def test_an_inline_scenario_given_as_a_flag_is_named_by_the_flag_and_names_collide_loudly(tmp_path):
    bad = subprocess.run([MOCKSTREAM, "serve", "--port", "0", "--scenarios-inline", "name: x\nitl_ms: -1\n"],
                         capture_output=True, text=True, timeout=30, env=clean_env())
    assert bad.returncode == 2
    assert "--scenarios-inline: itl_ms:" in bad.stderr
    (tmp_path / "twice.yaml").write_text("name: twice\ncontent: file\n")
    clash = subprocess.run([MOCKSTREAM, "serve", "--port", "0"], capture_output=True, text=True, timeout=30,
                           env=clean_env(MOCKSTREAM_SCENARIOS=str(tmp_path),
                                         MOCKSTREAM_SCENARIOS_INLINE="name: twice\ncontent: inline\n"))
    assert clash.returncode == 2
    assert f"MOCKSTREAM_SCENARIOS_INLINE: name: scenario 'twice' is already defined in {tmp_path / 'twice.yaml'}" \
        in clash.stderr


# ---------------------------------------------------------------- graceful shutdown ---
def _open_streams(url: str, count: int, knobs: dict) -> tuple[list[threading.Thread], list, threading.Barrier]:
    """`count` streams in threads; each records (full text, seconds) or the exception. The barrier releases
    once every stream has its first bytes."""
    results: list = [None] * count
    first_bytes = threading.Barrier(count + 1, timeout=20)

    clients = [httpx.Client(timeout=30) for _ in range(count)]  # made before the threads start

    def one(i: int) -> None:
        started = time.monotonic()
        body = {**CHAT, "stream": True, "mockstream": knobs}
        try:
            with clients[i] as client, client.stream("POST", f"{url}/v1/chat/completions", json=body) as response:
                chunks = response.iter_bytes()
                text = next(chunks)
                first_bytes.wait()
                for chunk in chunks:
                    text += chunk
            results[i] = (text.decode(), time.monotonic() - started)
        except Exception as exc:  # kept for the assertion that shows it
            results[i] = exc
            with contextlib.suppress(threading.BrokenBarrierError):
                first_bytes.abort()

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    return threads, results, first_bytes


def test_sigterm_lets_20_open_streams_finish_within_the_grace_period_then_exits_0(tmp_path):
    knobs = {"tokens": ["tok"] * 20, "ttft_ms": 50, "itl_ms": 75}  # about 1.5 s each
    with serve(tmp_path, "--port", "0", "--shutdown-grace", "5") as server:
        threads, results, first_bytes = _open_streams(server.url, 20, knobs)
        first_bytes.wait()
        code, took = server.signal_and_time()
        for thread in threads:
            thread.join(timeout=15)
        # stopped accepting at once: a new connection is refused while the old streams drain
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{server.url}/healthz", timeout=5)
        access = server.access_lines()
    assert code == 0
    assert all(isinstance(r, tuple) for r in results), results
    for text, _ in results:
        assert text.endswith("data: [DONE]\n\n")
        assert content_of(text) == "tok" * 20
    assert 0.8 < took < 5.0, f"the drain took {took:.2f} s: it must wait for the streams, and no longer"
    assert sum("outcome=completed" in line for line in access) == 20


def test_streams_longer_than_the_grace_period_are_cut_when_it_ends(tmp_path):
    knobs = {"tokens": ["tok"] * 100, "ttft_ms": 0, "itl_ms": 300}  # 30 s each
    with serve(tmp_path, "--port", "0", "--shutdown-grace", "1", "--log-format", "json") as server:
        threads, results, first_bytes = _open_streams(server.url, 3, knobs)
        first_bytes.wait()
        code, took = server.signal_and_time()
        for thread in threads:
            thread.join(timeout=15)
        access = [json.loads(line) for line in server.access_lines()]
    assert code == 0
    assert 0.9 < took < 2.0, f"grace 1 s, yet the process took {took:.2f} s to exit"
    for result in results:
        text = result[0] if isinstance(result, tuple) else ""
        assert "data: [DONE]" not in text  # cut, not completed (or the client saw the connection drop)
    assert [entry["outcome"] for entry in access] == ["shutdown"] * 3


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_an_idle_server_exits_within_half_a_second(tmp_path, signum):
    with serve(tmp_path, "--port", "0") as server, httpx.Client(timeout=5) as client:
        assert client.get(f"{server.url}/healthz").status_code == 200  # its connection stays open, idle
        code, took = server.signal_and_time(signum)
    assert code == 0
    assert took < 0.5, f"idle exit took {took:.3f} s"


# ---------------------------------------------------------------- health ---
def health(*args: str, env: dict[str, str] | None = None, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([MOCKSTREAM, "health", *args], capture_output=True, text=True, timeout=timeout,
                          env=env if env is not None else clean_env())


def test_health_wait_succeeds_once_the_server_is_up(tmp_path):
    port = free_port()
    waiting = subprocess.Popen([MOCKSTREAM, "health", "--wait", "20"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=clean_env(MOCKSTREAM_PORT=str(port)))
    with waiting:
        time.sleep(1.0)  # nothing listens yet: it keeps trying
        assert waiting.poll() is None
        with serve(tmp_path, env=clean_env(MOCKSTREAM_PORT=str(port))) as server:
            out, err = waiting.communicate(timeout=20)
            assert waiting.returncode == 0, err
            assert f"healthy: http://127.0.0.1:{port}/healthz answered 200" in out
            once = health("--url", server.url)  # a base URL is enough
            assert once.returncode == 0
            assert health("--url", f"{server.url}/no-such-page").returncode == 1
            code, _ = server.signal_and_time()
    assert code == 0


def test_health_fails_clearly_when_nothing_listens():
    port = free_port()
    started = time.monotonic()
    result = health("--url", f"http://127.0.0.1:{port}", "--wait", "1")
    waited = time.monotonic() - started
    assert result.returncode == 1
    assert result.stderr.strip() == (f"mockstream: http://127.0.0.1:{port}/healthz: nothing is listening "
                                     "(connection refused) after waiting 1 s")
    assert 1.0 <= waited < 10
    once = health(env=clean_env(MOCKSTREAM_PORT=str(port)))  # the URL comes from MOCKSTREAM_PORT
    assert once.returncode == 1 and f"127.0.0.1:{port}/healthz: nothing is listening" in once.stderr
    bad = health("--url", "ftp://example")
    assert bad.returncode == 2 and "expected an http:// URL" in bad.stderr


def test_health_reports_a_server_that_answers_with_an_error(tmp_path):
    with serve(tmp_path, "--port", "0") as server:
        result = health("--url", f"{server.url}/v1/models/no-such-model")
        assert result.returncode == 1
        assert "answered 404 Not Found" in result.stderr
        server.signal_and_time()


# ---------------------------------------------------------------- access log ---
def test_one_access_line_per_request_with_scenario_status_outcome_and_duration(tmp_path):
    inline = "name: cut\ntokens: [a, b, c, d]\nttft_ms: 0\nitl_ms: 0\nfault: {kind: reset, at_token: 2}\n"
    with serve(tmp_path, "--port", "0", "--log-format", "json",
               env=clean_env(MOCKSTREAM_SCENARIOS_INLINE=inline)) as server, \
            httpx.Client(base_url=server.url, timeout=10) as client:
        stream_text(client, {"tokens": ["x", "y"], "ttft_ms": 0, "itl_ms": 100})
        with pytest.raises(httpx.HTTPError):
            client.post("/v1/chat/completions", json={**CHAT, "model": "cut", "stream": True}).read()
        assert client.post("/v1/chat/completions", json={**CHAT, "mockstream": {"chunk_byte": 1}}).status_code == 400
        assert client.get("/healthz").status_code == 200  # health probes are left out
        assert client.get("/v1/models").status_code == 200
        assert wait_until(lambda: len(server.access_lines()) >= 4)
        code, _ = server.signal_and_time()
        lines = [json.loads(line) for line in server.access_lines()]
    assert code == 0
    assert [(e["method"], e["path"], e["scenario"], e["status"], e["outcome"]) for e in lines] == [
        ("POST", "/v1/chat/completions", "default", 200, "completed"),
        ("POST", "/v1/chat/completions", "cut", 200, "fault:reset"),
        ("POST", "/v1/chat/completions", None, 400, "rejected"),
        ("GET", "/v1/models", None, 200, "completed"),
    ]
    assert 90 <= lines[0]["duration_ms"] < 5000  # one 100 ms gap between the two tokens
    assert {e["worker"] for e in lines} == {server.process.pid}
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", e["time"]) for e in lines)


def test_access_log_times_are_datetimes_iso_format_to_the_millisecond():
    """The log keeps the text of the current second: the milliseconds must still round as datetime's do."""
    edges = [0.0, -0.5, 1.0005, 1764066781.9995, 1764066781.9999996, 1764066781.0004999, 1796092044.9159994]
    spread = [random.Random(7).uniform(0, 4e9) for _ in range(20000)]
    dense = [1764066781 + step / 997 for step in range(3000)]  # a few seconds, many lines each: the kept text
    for seconds in edges + spread + dense:
        expected = datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="milliseconds")
        assert timestamp(seconds) == expected.replace("+00:00", "Z"), seconds


async def test_access_lines_ending_in_one_pass_of_the_loop_are_flushed_once(monkeypatch):
    """A burst of streams ending together costs one write to stdout, and no line waits past that pass."""

    class Stdout:
        def __init__(self):
            self.text, self.flushed, self.flushes = "", "", 0

        def write(self, text: str) -> None:
            self.text += text

        def flush(self) -> None:
            self.flushed, self.flushes = self.text, self.flushes + 1

    stdout = Stdout()
    monkeypatch.setattr(sys, "stdout", stdout)
    log = AccessLog()
    for number in range(3):
        log.ended(Entry(number, time.time(), "POST", "/v1/chat/completions", {}, status=200, outcome="completed"))
    assert stdout.flushes == 0
    await asyncio.sleep(0)
    assert stdout.flushes == 1
    assert stdout.flushed.count("outcome=completed") == 3


def test_text_access_log_and_switching_it_off(tmp_path):
    with serve(tmp_path, "--port", "0", "--speed", "0") as server, \
            httpx.Client(base_url=server.url, timeout=10) as client:
        stream_text(client, {"tokens": ["x"]})
        assert wait_until(lambda: len(server.access_lines()) == 1)
        line = server.access_lines()[0]
        assert re.fullmatch(
            r"\S+Z POST /v1/chat/completions scenario=default status=200 outcome=completed "
            rf"duration_ms=[0-9.]+ worker={server.process.pid}", line), line
        server.signal_and_time()
    with serve(tmp_path, "--port", "0", "--speed", "0", env=clean_env(MOCKSTREAM_ACCESS_LOG="off")) as server, \
            httpx.Client(base_url=server.url, timeout=10) as client:
        stream_text(client, {"tokens": ["x"]})
        code, _ = server.signal_and_time()
        assert server.access_lines() == []
    assert code == 0


# ---------------------------------------------------------------- workers ---
def _pids_serving(url: str, tries: int = 200) -> set[str]:
    """The worker pids seen over up to `tries` fresh connections (stops once two are seen)."""
    seen: set[str] = set()
    for _ in range(tries):
        with httpx.Client(timeout=10) as client:  # a new connection each time: the kernel picks a worker
            response = client.post(f"{url}/v1/chat/completions",
                                   json={**CHAT, "stream": True, "mockstream": {"tokens": ["w"]}})
        assert response.status_code == 200 and response.text.endswith("data: [DONE]\n\n")
        seen.add(response.headers["x-mockstream-worker"])
        if len(seen) == 2:
            break
    return seen


def _parent_of(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^PPid:\s+(\d+)", status, re.MULTILINE)[1])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()


def test_two_workers_serve_streams_from_two_processes_and_all_exit_on_sigterm(tmp_path):
    with serve(tmp_path, "--port", "0", "--speed", "0", "--workers", "2") as server:
        assert "2 workers" in server.stdout_lines()[0]
        pids = {int(pid) for pid in _pids_serving(server.url)}
        assert len(pids) == 2, f"only one worker answered: {pids}"
        assert server.process.pid not in pids
        assert all(_parent_of(pid) == server.process.pid for pid in pids)
        def logged() -> set[int]:
            return {int(m[1]) for m in re.finditer(r"worker=(\d+)", "\n".join(server.access_lines()))}

        assert wait_until(lambda: logged() == pids), logged()  # each worker logs its own requests
        # a stream open on some worker while the supervisor is told to stop still finishes
        threads, results, first_bytes = _open_streams(server.url, 4, {"tokens": ["s"] * 10, "itl_ms": 100})
        first_bytes.wait()
        code, took = server.signal_and_time()
        for thread in threads:
            thread.join(timeout=15)
    assert code == 0
    assert all(isinstance(r, tuple) and r[0].endswith("data: [DONE]\n\n") for r in results), results
    assert took < 5
    assert wait_until(lambda: not any(_alive(pid) for pid in pids), timeout=5)


def test_workers_stop_by_themselves_when_the_supervisor_is_killed(tmp_path):
    with serve(tmp_path, "--port", "0", "--workers", "2") as server:
        pids = {int(pid) for pid in _pids_serving(server.url)}
        server.process.kill()
        server.process.wait(timeout=10)
        assert wait_until(lambda: not any(_alive(pid) for pid in pids), timeout=5), "orphaned workers kept serving"


def test_a_port_in_use_fails_before_any_worker_starts():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        for workers in ("1", "2"):
            result = subprocess.run([MOCKSTREAM, "serve", "--port", str(port), "--workers", workers],
                                    capture_output=True, text=True, timeout=30, env=clean_env())
            assert result.returncode == 1
            assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
            assert result.stdout == ""


# ---------------------------------------------------------------- the examples users copy ---
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _service_settings(path: str) -> list[dict[str, str]]:
    """The MOCKSTREAM_* settings each example gives its mockstream service, container or pod."""
    import yaml

    documents = list(yaml.safe_load_all((EXAMPLES / path).read_text()))
    if path == "kubernetes.yaml":
        pods = [doc["spec"]["template"]["spec"] for doc in documents if doc["kind"] == "Deployment"]
        return [{e["name"]: e["value"] for e in c["env"]} for pod in pods for c in pod["containers"]]
    document = documents[0]
    if path == "github-actions.yml":
        return [document["jobs"]["test"]["services"]["mockstream"]["env"]]
    if path == "gitlab-ci.yml":
        return [service["variables"] for service in document["test"]["services"]]
    return [document["services"]["mockstream"]["environment"]]  # docker-compose.yml


@pytest.mark.parametrize("path", ["github-actions.yml", "gitlab-ci.yml", "docker-compose.yml", "kubernetes.yaml"])
def test_every_example_configures_a_server_that_starts(path):
    """Each example's variables are real settings with valid values, and its scenarios (with the mounted
    folder, where it mounts one) load, as `mockstream serve` in the image would load them."""
    from mockstream.process.cli import SERVE_FLAGS, _env_defaults, _scenarios

    known = {flag.env for flag in SERVE_FLAGS}
    for settings in _service_settings(path):
        assert settings and set(settings) <= known, set(settings) - known
        options = _env_defaults(SERVE_FLAGS, {k: str(v) for k, v in settings.items()})
        if path == "docker-compose.yml":
            options["scenarios"] = str(EXAMPLES.parent / "scenarios")  # its ../scenarios:/scenarios mount
        loaded = _scenarios(options, "MOCKSTREAM_SCENARIOS_INLINE")
        assert loaded and all(s.description for s in loaded if s.source == "MOCKSTREAM_SCENARIOS_INLINE")


def test_the_docs_show_the_github_actions_example_as_it_is_in_examples():
    page = (EXAMPLES.parent / "docs" / "container.md").read_text()
    assert (EXAMPLES / "github-actions.yml").read_text() in page
