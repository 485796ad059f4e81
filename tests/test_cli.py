"""`mockstream serve | validate | --version | --help` as a user runs them: real processes, real sockets."""

from __future__ import annotations

import re
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from helpers import MOCKSTREAM, clean_env, free_port, wait_until

import mockstream
from mockstream.process.cli import SERVE_FLAGS

URL_LINE = re.compile(r"listening on (http://([0-9.]+):(\d+))\b")
FAKER_IMPORTED = re.compile(r"\|\s*faker(\.|\s*$)", re.MULTILINE)
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello there"}]}


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([MOCKSTREAM, *args], capture_output=True, text=True, env=env or clean_env(),
                          timeout=timeout)


@dataclass
class Served:
    process: subprocess.Popen
    line: str
    url: str
    host: str
    port: int
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def stop(self, timeout: float = 10) -> tuple[int, str]:
        """SIGTERM; the exit code and whatever else the process printed on stdout."""
        self.process.send_signal(signal.SIGTERM)
        rest = self.process.stdout.read()
        return self.process.wait(timeout=timeout), rest


def _first_line(process: subprocess.Popen, timeout: float) -> str:
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise AssertionError(f"no line on stdout within {timeout} s")
    return process.stdout.readline()


@contextmanager
def serve(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[Served]:
    """`mockstream serve ARGS` with stderr (logs, import times) kept in a file."""
    log = tmp_path / f"serve-{time.monotonic_ns()}.log"
    with log.open("w") as stderr, subprocess.Popen([MOCKSTREAM, "serve", *args], stdout=subprocess.PIPE,
                                                   stderr=stderr, text=True, env=env or clean_env()) as process:
        try:
            line = _first_line(process, timeout=30)
            found = URL_LINE.search(line)
            assert found, f"no URL in the first line {line!r}; stderr: {log.read_text()[-2000:]}"
            yield Served(process, line, found[1], found[2], int(found[3]), log)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


def scenario_dir(path: Path, name: str) -> Path:
    path.mkdir()
    (path / f"{name}.yaml").write_text(f"name: {name}\ndescription: for the cli tests\ncontent: I am {name}.\n")
    return path


# ---------------------------------------------------------------- serve ---
def test_serve_prints_its_url_serves_and_drains_on_sigterm(tmp_path):
    env = clean_env(PYTHONPROFILEIMPORTTIME="1")  # the import log shows whether Faker was ever imported
    with serve(tmp_path, "--port", "0", "--access-log", "off", env=env) as served, \
            httpx.Client(base_url=served.url, timeout=10) as client:
        assert served.host == "127.0.0.1" and served.port > 0
        assert f"{served.url}/v1" in served.line

        health = client.get("/healthz")
        assert health.status_code == 200 and health.json() == {"status": "ok"}
        models = client.get("/v1/models").json()
        assert models["object"] == "list"
        ids = [m["id"] for m in models["data"]]
        assert {"gpt-4o-mini", "default"} <= set(ids)
        assert all(m["object"] == "model" for m in models["data"])
        assert client.get("/v1/models/gpt-4o-mini").json()["id"] == "gpt-4o-mini"
        assert client.get("/v1/models/no-such-model").status_code == 404

        # scripted text, streamed and not, and the built-in default answer: none of them needs Faker
        streamed = client.post("/v1/chat/completions", json={**CHAT, "stream": True,
                                                              "mockstream": {"content": "Hi 你好"}})
        assert streamed.status_code == 200 and streamed.text.endswith("data: [DONE]\n\n")
        assert '"content":"好"' in streamed.text
        whole = client.post("/v1/chat/completions", json={**CHAT, "mockstream": {"tokens": ["a", "b"]}})
        assert whole.json()["choices"][0]["message"]["content"] == "ab"
        default = client.post("/v1/chat/completions", json={**CHAT, "mockstream": {"ttft_ms": 0, "itl_ms": 0}})
        assert default.json()["choices"][0]["message"]["content"].startswith("Hello!")
        assert not FAKER_IMPORTED.search(served.log_text()), "serving scripted text imported Faker"

        # the control: random text does import it, and the log shows it
        randomized = client.post("/v1/chat/completions", json={**CHAT, "mockstream": {"random_tokens": 5}})
        assert randomized.status_code == 200
        assert FAKER_IMPORTED.search(served.log_text())

        # SIGTERM in the middle of a paced stream: the stream finishes, then the process exits 0
        body = {**CHAT, "stream": True, "mockstream": {"tokens": ["x"] * 20, "ttft_ms": 100, "itl_ms": 25}}
        with client.stream("POST", "/v1/chat/completions", json=body) as response:
            chunks = response.iter_bytes()
            first = next(chunks)
            served.process.send_signal(signal.SIGTERM)
            text = (first + b"".join(chunks)).decode()
        assert text.endswith("data: [DONE]\n\n")
        assert text.count('"content":"x"') == 20
        assert served.process.wait(timeout=10) == 0
        assert served.process.stdout.read() == "", "serve prints one line only"


def test_sigterm_right_after_the_url_still_exits_cleanly(tmp_path):
    with serve(tmp_path, "--port", "0") as served:
        code, _ = served.stop()
    assert code == 0


def _answer(url: str) -> dict:
    body = {**CHAT, "mockstream": {"tokens": ["same", " answer"]}}
    response = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=10)
    assert response.status_code == 200
    return response.json()


def _slow_stream_seconds(url: str) -> float:
    body = {**CHAT, "stream": True, "mockstream": {"tokens": ["slow"] * 3, "ttft_ms": 3000, "itl_ms": 1000}}
    started = time.monotonic()
    response = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=10)
    assert response.text.endswith("data: [DONE]\n\n")
    return time.monotonic() - started


def _journal(url: str) -> list:
    response = httpx.get(f"{url}/_mockstream/requests", timeout=10)
    assert response.status_code == 200
    return response.json()


def _access_logged(served: Served) -> bool:
    return "POST /v1/chat/completions" in served.log_text()


ENV_SETTINGS = {"host": "127.0.0.2", "seed": "5", "log_level": "debug"}


@pytest.fixture(scope="module")
def reference_answers() -> dict[int, dict]:
    """The answer to `_answer`'s request from an in-process server at seeds 5 and 7."""
    from mockstream.testing import MockServer

    answers = {}
    for seed in (5, 7):
        with MockServer(seed=seed) as srv:
            answers[seed] = _answer(srv.url)
    assert answers[5]["id"] != answers[7]["id"]
    return answers


def test_every_flag_is_read_from_the_environment(tmp_path, reference_answers):
    port = free_port()
    env = clean_env(MOCKSTREAM_HOST="127.0.0.2", MOCKSTREAM_PORT=str(port),
                    MOCKSTREAM_SCENARIOS=str(scenario_dir(tmp_path / "env", "from-env")), MOCKSTREAM_SEED="5",
                    MOCKSTREAM_SPEED="0", MOCKSTREAM_LOG_LEVEL="debug", MOCKSTREAM_JOURNAL_SIZE="1")
    with serve(tmp_path, env=env) as served:
        assert (served.host, served.port) == ("127.0.0.2", port)
        ids = [m["id"] for m in httpx.get(f"{served.url}/v1/models", timeout=10).json()["data"]]
        assert "from-env" in ids
        assert _answer(served.url) == reference_answers[5]
        assert _slow_stream_seconds(served.url) < 2.0  # speed 0: the 5 s of pacing are gone
        assert wait_until(lambda: _access_logged(served)), "debug logs every request"
        assert len(_journal(served.url)) == 1  # two chat requests, a journal of one
        code, _ = served.stop()
    assert code == 0


def test_a_flag_wins_over_its_environment_variable(tmp_path, reference_answers):
    env_port, flag_port = free_port(), free_port()
    env = clean_env(MOCKSTREAM_HOST="127.0.0.2", MOCKSTREAM_PORT=str(env_port),
                    MOCKSTREAM_SCENARIOS=str(scenario_dir(tmp_path / "env", "from-env")), MOCKSTREAM_SEED="5",
                    MOCKSTREAM_SPEED="0.001", MOCKSTREAM_LOG_LEVEL="debug", MOCKSTREAM_JOURNAL_SIZE="1")
    flags = ["--host", "127.0.0.3", "--port", str(flag_port),
             "--scenarios", str(scenario_dir(tmp_path / "flag", "from-flag")), "--seed", "7", "--speed", "0",
             "--log-level", "warning", "--journal-size", "3"]
    with serve(tmp_path, *flags, env=env) as served:
        assert (served.host, served.port) == ("127.0.0.3", flag_port)
        ids = [m["id"] for m in httpx.get(f"{served.url}/v1/models", timeout=10).json()["data"]]
        assert "from-flag" in ids and "from-env" not in ids
        assert _answer(served.url) == reference_answers[7]
        assert _slow_stream_seconds(served.url) < 2.0  # the env's speed 0.001 would take over an hour
        assert len(_journal(served.url)) >= 2
        code, _ = served.stop()
    assert code == 0
    assert not _access_logged(served), "--log-level warning must silence the debug access log"


# ---------------------------------------------------------------- refusing to start ---
@pytest.mark.parametrize(
    ("variable", "value"),
    [("MOCKSTREAM_PORT", "abc"), ("MOCKSTREAM_PORT", "70000"), ("MOCKSTREAM_SPEED", "-1"),
     ("MOCKSTREAM_SEED", "x"), ("MOCKSTREAM_LOG_LEVEL", "loud")],
)
def test_a_bad_environment_value_exits_2_naming_the_variable(variable, value):
    args = () if variable == "MOCKSTREAM_PORT" else ("--port", "0")
    result = run("serve", *args, env=clean_env(**{variable: value}))
    assert result.returncode == 2
    assert variable in result.stderr and value in result.stderr
    assert result.stdout == ""


def test_a_flag_overrides_a_bad_environment_value(tmp_path):
    """The flag wins, so its variable is not even read: a stale MOCKSTREAM_PORT never blocks `--port 0`."""
    with serve(tmp_path, "--port", "0", "--access-log", "off", env=clean_env(MOCKSTREAM_PORT="abc")) as served:
        assert served.port != 0
        assert _answer(served.url)


@pytest.mark.parametrize("args", [["--port", "abc"], ["--speed", "-2"], ["--log-level", "loud"], ["--nope"]])
def test_a_bad_flag_exits_2_naming_the_flag(args):
    result = run("serve", *args)
    assert result.returncode == 2
    assert args[0] in result.stderr
    assert result.stdout == ""


def test_a_bad_or_missing_scenario_directory_exits_2_naming_file_and_field(tmp_path):
    (tmp_path / "ok.yaml").write_text("name: fine\ncontent: ok\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: broken\nfinish_reason: nope\nchunk_byte: 2\n")
    missing = tmp_path / "nowhere"
    runs = [subprocess.Popen([MOCKSTREAM, "serve", "--port", "0", "--scenarios", str(path)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=clean_env()) for path in (tmp_path, missing)]
    results = []
    for process in runs:
        with process:
            out, err = process.communicate(timeout=30)
        results.append((process.returncode, out, err))
    (bad_code, bad_out, bad_err), (missing_code, missing_out, missing_err) = results
    assert bad_code == 2, bad_err
    assert f"{bad}: finish_reason: unknown value 'nope'; expected one of: stop" in bad_err
    assert f"{bad}: chunk_byte: unknown knob (did you mean 'chunk_bytes'?)" in bad_err
    assert "ok.yaml" not in bad_err
    assert missing_code == 2, missing_err
    assert str(missing) in missing_err
    assert bad_out == missing_out == ""


# ---------------------------------------------------------------- --version, --help, import cost ---
def test_version():
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"mockstream {mockstream.__version__}"


def test_serve_help_documents_every_flag_and_its_variable():
    result = run("serve", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    required = ["host", "port", "scenarios", "seed", "speed", "log-level"]
    names = {flag.name for flag in SERVE_FLAGS}
    assert set(required) <= names
    for name in names:
        assert f"--{name}" in text
        assert "MOCKSTREAM_" + name.upper().replace("-", "_") in text


def _imported(code: str) -> set[str]:
    probe = f"{code}\nimport sys\nprint(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=clean_env(),
                            timeout=30)
    assert result.returncode == 0, result.stderr
    return set(result.stdout.split())


def test_import_mockstream_is_light():
    modules = _imported("import mockstream\nassert mockstream.Scenario and mockstream.load_scenarios")
    assert "mockstream" in modules
    assert "faker" not in modules
    assert "aiohttp" not in modules
    assert "yaml" not in modules


def test_help_imports_neither_faker_nor_aiohttp():
    result = subprocess.run([MOCKSTREAM, "--help"], capture_output=True, text=True, timeout=30,
                            env=clean_env(PYTHONPROFILEIMPORTTIME="1"))
    assert result.returncode == 0
    assert "serve" in result.stdout and "validate" in result.stdout
    imported = {line.split("|")[-1].strip().split(".")[0] for line in result.stderr.splitlines() if "|" in line}
    assert "mockstream" in imported  # the import log is there
    assert "faker" not in imported
    assert "aiohttp" not in imported


def test_validate_reads_files_like_serve(tmp_path):
    scenario_dir(tmp_path / "good", "checked")
    result = run("validate", str(tmp_path / "good"))
    assert result.returncode == 0
    assert result.stdout.split()[:2] == ["ok", "checked"]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["serve", "--prot", "8001"], "mockstream serve: error: unrecognized argument --prot (did you mean --port?)"),
        (["serve", "--sed=3"], "mockstream serve: error: unrecognized argument --sed=3 (did you mean --seed?)"),
        (["health", "--wiat", "1"], "mockstream health: error: unrecognized argument --wiat (did you mean --wait?)"),
        (["serve", "--xyzzy"], "mockstream serve: error: unrecognized argument --xyzzy"),
    ],
)
def test_an_unknown_flag_exits_2_with_the_commands_usage_and_the_closest_flag(args, says):
    result = run(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith(f"usage: mockstream {args[0]} ")  # the command's usage, not the top-level one
    assert lines[-1] == says
    assert result.stdout == ""


def test_serve_help_shows_defaults_as_a_user_types_them():
    text = " ".join(run("serve", "--help").stdout.split())
    assert "None" not in text and "[" not in text.partition("options:")[2].replace("[...]", "")
    assert "(env MOCKSTREAM_CORS_ORIGIN; default: *)" in text
    assert "(env MOCKSTREAM_SCENARIOS)" in text  # no default: none shown
    assert "(env MOCKSTREAM_ROUTE)" in text  # an empty list: none shown
    assert "(env MOCKSTREAM_ACCESS_LOG; default: on)" in text
    assert "(env MOCKSTREAM_PORT; default: 8000)" in text


def test_validate_an_empty_directory_exits_2_saying_no_scenario_files_were_found(tmp_path):
    empty = tmp_path / "emptydir"
    empty.mkdir()
    (empty / "notes.txt").write_text("not a scenario")
    result = run("validate", str(empty))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"mockstream: {empty}: no scenario files (*.yaml, *.yml, *.json) found in this directory"
    )
    assert result.stdout == ""


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"])
def test_validate_an_empty_file_says_it_is_empty(tmp_path, text):
    empty = tmp_path / "empty.yaml"
    empty.write_text(text)
    result = run("validate", str(empty))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"mockstream: {empty}: the file is empty: expected a scenario object, a list of them or {{scenarios: [...]}}"
    )
    assert "NoneType" not in result.stderr
