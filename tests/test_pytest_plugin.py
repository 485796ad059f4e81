"""The pytest plugin, used the way a user meets it: inner pytest sessions in subprocesses, where the plugin
loads through its `pytest11` entry point (never by import), talking to a real server over a real socket.

Each outer test runs one inner session and checks several things in it, because a session costs seconds.
Inner tests record what the outer test needs (timings, ids, ports, threads and modules alive at the end) in
JSON files next to them.
"""

from __future__ import annotations

import json
import re

import pytest

pytest_plugins = ["pytester"]

# Inner sessions leave no .pytest_cache behind and skip plugins they do not use (Faker's alone costs seconds).
INNER = ("-p", "no:cacheprovider", "-p", "no:faker", "-p", "no:anyio")

INI = """
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
xfail_strict = true
filterwarnings = error
{extra}
"""

# Every inner session records, once it is over, which threads are alive, which modules were imported and
# whether the ports its servers listened on still accept connections.
CONFTEST = """
import json, os, socket, sys, threading

import pytest

PORTS = set()
WATCHED = ("aiohttp", "faker", "mockstream.testing.server", "mockstream.server", "mockstream.testing.pytest_plugin")


@pytest.fixture(autouse=True)
def _remember_the_port(request):
    if "mockstream_server" in request.fixturenames:
        PORTS.add(request.getfixturevalue("mockstream_server").port)


def _listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        return False
    return True


def pytest_unconfigure(config):
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    report = {
        "threads": [thread.name for thread in threading.enumerate()],
        "modules": [name for name in WATCHED if name in sys.modules],
        "plugin": config.pluginmanager.hasplugin("mockstream"),
        "listening": [port for port in sorted(PORTS) if _listening(port)],
        "ports": sorted(PORTS),
        "pid": os.getpid(),
    }
    (config.rootpath / f"finish-{worker}.json").write_text(json.dumps(report))
"""

# One paced request; the outer test reads how long the server took over it (journal `duration_ms`, free of
# client start-up noise).
PACING = """
import json, pathlib

import httpx

BODY = {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "pace me"}]}


def test_pacing(mockstream):
    mockstream.script(content="paced answer", ttft_ms=600)
    response = httpx.post(mockstream.base_url + "/chat/completions", json=BODY, timeout=30)
    assert response.status_code == 200
    [entry] = mockstream.requests
    record = {"duration_ms": entry.duration_ms}
    (pathlib.Path(__file__).parent / "pacing.json").write_text(json.dumps(record))
"""

# The main inner session: every way in, the marker, scripts, files, the journal, reset and server errors.
MAIN = '''
import asyncio, json, pathlib

import httpx
import openai
import pytest

from mockstream.dialects.chat import CHAT
from mockstream import Scenario
from mockstream.server.journal import Entry
from mockstream.server import State
from mockstream.testing import create_app

MESSAGES = [{"role": "user", "content": "Hi"}]
BODY = {"model": "gpt-4o-mini", "stream": True, "messages": MESSAGES}


def collect(client, **kwargs):
    stream = client.chat.completions.create(model="gpt-4o-mini", stream=True, messages=MESSAGES, **kwargs)
    return "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)


def deltas(sse_text):
    """The content deltas of a chat SSE body (complete events only)."""
    found = []
    for event in sse_text.split("\\n\\n")[:-1]:
        data = event.removeprefix("data: ")
        if data != "[DONE]":
            choices = json.loads(data)["choices"]
            if choices:
                found.append(choices[0]["delta"].get("content"))
    return found


def lower(headers):
    return {key.lower(): value for key, value in headers.items()}


def test_sync_openai_and_the_journal(mockstream):
    with mockstream.openai() as client:
        text = collect(client, extra_headers={"X-Trace": "t-1"}, extra_body={"user": "ann"})
    assert text.startswith("Hello! This is mockstream")
    [entry] = mockstream.requests
    assert isinstance(entry, Entry)
    assert entry.body == {**BODY, "user": "ann"}
    headers = lower(entry.headers)
    assert headers["x-trace"] == "t-1"
    assert headers["authorization"] == "***"
    assert (entry.method, entry.path, entry.status, entry.outcome) == ("POST", "/v1/chat/completions", 200, "completed")
    assert entry.scenario == "default"
    assert entry.events_sent > 3 and entry.bytes_sent > 100


async def test_async_openai(mockstream):
    mockstream.script(tokens=["As", "ync", "!"])
    async with mockstream.async_openai() as client:
        stream = await client.chat.completions.create(model="gpt-4o-mini", stream=True, messages=MESSAGES)
        pieces = [chunk.choices[0].delta.content async for chunk in stream if chunk.choices]
    assert [piece for piece in pieces if piece] == ["As", "ync", "!"]
    assert [entry.outcome for entry in mockstream.requests] == ["completed"]


async def test_in_loop_app_with_aiohttp_client(aiohttp_client):
    app = create_app(speed=0)
    client = await aiohttp_client(app)
    knobs = {"content": "in the loop", "chunk_bytes": 1}
    response = await client.post("/v1/chat/completions", json={**BODY, "mockstream": knobs})
    assert response.status == 200
    assert "".join(d or "" for d in deltas(await response.text())) == "in the loop"
    [entry] = State.of(app).journal
    assert entry.outcome == "completed" and entry.body["mockstream"] == knobs


@pytest.mark.mockstream(content="one two three", chunk_bytes=1, fault={"kind": "disconnect", "at_token": 2})
def test_marker_scripts_the_stream(mockstream):
    seen = []
    with mockstream.openai(max_retries=0) as client, pytest.raises(openai.APIConnectionError):
        for chunk in client.chat.completions.create(model="m", stream=True, messages=MESSAGES):
            seen.append(chunk.choices[0].delta.content)
    assert seen == ["", "one", " two"]
    [entry] = mockstream.requests
    assert entry.outcome == "fault:disconnect"


@pytest.mark.mockstream(content="only the server", chunk_bytes=1, fault={"kind": "disconnect", "at_token": 2})
def test_marker_with_only_the_server(mockstream_server):
    pieces = []
    with httpx.stream("POST", mockstream_server.base_url + "/chat/completions", json=BODY) as response:
        with pytest.raises(httpx.RemoteProtocolError):
            pieces.extend(response.iter_raw())
    assert {len(piece) for piece in pieces} == {1}
    assert deltas(b"".join(pieces).decode()) == ["", "only", " the"]


def test_script_with_a_fault(mockstream):
    name = mockstream.script(content="one two three", fault={"kind": "http_error", "status": 503})
    with mockstream.openai(max_retries=0) as client, pytest.raises(openai.InternalServerError):
        collect(client)
    [entry] = mockstream.requests
    assert (entry.status, entry.outcome, entry.scenario) == (503, "fault:http_error", name)


def test_script_with_a_sequence_429_then_success(mockstream):
    mockstream.script(sequence=[
        {"fault": {"kind": "http_error", "status": 429, "retry_after": 0.05}},
        {"content": "second time lucky"},
    ])
    with mockstream.openai(max_retries=2) as client:
        assert collect(client) == "second time lucky"
    first, second = mockstream.requests
    assert (first.status, first.outcome, first.extra["sequence_index"]) == (429, "fault:http_error", 0)
    assert (second.status, second.outcome, second.extra["sequence_index"]) == (200, "completed", 1)
    assert lower(second.headers)["x-stainless-retry-count"] == "1"
    assert second.time - first.time >= 0.05


def test_script_a_scenario_object_and_bring_an_http_client(mockstream):
    assert mockstream.script(Scenario.from_dict({"name": "mine", "content": "an object"})) == "mine"
    with mockstream.openai(http_client=httpx.Client(headers={"X-Mine": "yes"})) as client:
        assert collect(client) == "an object"
    assert lower(mockstream.requests[0].headers)["x-mine"] == "yes"


def test_load_a_scenario_file(mockstream, tmp_path):
    path = tmp_path / "loaded.yaml"
    path.write_text("version: 1\\nscenarios:\\n  - name: from-load\\n    content: loaded from a file\\n")
    assert mockstream.load(path) == ["from-load"]
    with mockstream.openai() as client:
        assert collect(client, extra_headers={"X-Mockstream-Scenario": "from-load"}) == "loaded from a file"
    assert [entry.scenario for entry in mockstream.requests] == ["from-load"]


def test_scenario_file_from_the_option(mockstream):
    with mockstream.openai() as client:
        assert collect(client, extra_headers={"X-Mockstream-Scenario": "from-option"}) == "named on the command line"


SEQUENCE = {"sequence": [{"fault": {"kind": "http_error", "status": 429}}, {"content": "ok"}]}


def test_reset_first_test_leaves_a_mess(mockstream):
    mockstream.script(content="scripted by the first test")
    assert httpx.post(mockstream.base_url + "/chat/completions", json=BODY).status_code == 200
    response = httpx.post(mockstream.base_url + "/chat/completions", json={**BODY, "mockstream": SEQUENCE})
    assert response.status_code == 429
    assert len(mockstream.requests) == 2


def test_reset_second_test_starts_clean(mockstream):
    assert mockstream.requests == []
    response = httpx.post(mockstream.base_url + "/chat/completions", json=BODY)
    assert "scripted by the first test" not in "".join(d or "" for d in deltas(response.text))
    response = httpx.post(mockstream.base_url + "/chat/completions", json={**BODY, "mockstream": SEQUENCE})
    assert response.status_code == 429  # the sequence starts over
    headers = {"X-Mockstream-Scenario": "from-load"}
    response = httpx.post(mockstream.base_url + "/chat/completions", json=BODY, headers=headers)
    assert response.status_code == 404  # the file the previous test loaded is gone
    assert [entry.scenario for entry in mockstream.requests] == ["default", "default", None]


def test_server_error_surfaces_in_its_test(mockstream, monkeypatch):
    def broken(request):
        raise RuntimeError("the dialect broke on purpose")

    monkeypatch.setattr(CHAT, "parse", broken)
    with mockstream.openai(max_retries=0) as client, pytest.raises(openai.InternalServerError):
        collect(client)


def test_server_error_with_only_the_server(mockstream_server, monkeypatch):
    def broken(plan):
        raise RuntimeError("the encoder broke on purpose")

    monkeypatch.setattr(CHAT, "encode", broken)
    with pytest.raises(httpx.HTTPError):
        httpx.post(mockstream_server.base_url + "/chat/completions", json=BODY).raise_for_status()


def test_the_next_test_is_not_blamed(mockstream):
    assert mockstream.requests == []  # not even what a test with only the server asked
    assert httpx.post(mockstream.base_url + "/chat/completions", json=BODY).status_code == 200
    assert mockstream.errors() == []
'''


@pytest.fixture(autouse=True)
def _not_a_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    """When this suite itself runs under xdist, the inner sessions must not inherit the worker's identity."""
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
        monkeypatch.delenv(name, raising=False)


def write_session(pytester: pytest.Pytester, ini_extra: str = "", **modules: str) -> None:
    pytester.makeini(INI.format(extra=ini_extra))
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_pacing=PACING, **modules)


def finish(pytester: pytest.Pytester, worker: str = "main") -> dict:
    return json.loads((pytester.path / f"finish-{worker}.json").read_text())


def pacing(pytester: pytest.Pytester) -> dict:
    return json.loads((pytester.path / "pacing.json").read_text())


def outcomes(result: pytest.RunResult) -> dict[str, set[str]]:
    """test name -> its outcomes in the `-rA` summary (a test that passed and errored at teardown has both)."""
    found: dict[str, set[str]] = {}
    for line in result.outlines:
        match = re.match(r"(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS) \S+::(\w+)", line)
        if match:
            found.setdefault(match[2], set()).add(match[1])
    return found


def assert_stopped_cleanly(report: dict) -> None:
    assert report["plugin"], "the mockstream plugin was not loaded through its entry point"
    assert "mockstream" not in report["threads"], f"server thread left alive: {report['threads']}"
    assert report["ports"], "no server was started, so nothing was checked"
    assert report["listening"] == [], f"ports still accepting connections: {report['listening']}"


def test_one_session_every_way_in(pytester: pytest.Pytester) -> None:
    """Sync openai, AsyncOpenAI, pytest-aiohttp, the marker (under --strict-markers), scripts, scenario files,
    the journal, reset, server errors; the ini asks for real pacing but the option wins; a scenario file from
    --mockstream-scenarios; the session stops cleanly."""
    write_session(pytester, "mockstream_speed = 1", test_main=MAIN)
    pytester.path.joinpath("option.yaml").write_text("name: from-option\ncontent: named on the command line\n")
    args = ("--strict-markers", "-rA", "--mockstream-speed", "0", "--mockstream-scenarios", "option.yaml")
    result = pytester.runpytest_subprocess(*args, *INNER)
    found = outcomes(result)
    errored = {name for name, seen in found.items() if "ERROR" in seen or "FAILED" in seen}
    assert errored == {"test_server_error_surfaces_in_its_test", "test_server_error_with_only_the_server"}, (
        result.stdout.str()
    )
    assert len([name for name, seen in found.items() if "PASSED" in seen]) == 16, found
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_server_error_surfaces_in_its_test*",
            "*RuntimeError: the dialect broke on purpose*",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_server_error_with_only_the_server*",
            "*RuntimeError: the encoder broke on purpose*",
        ]
    )
    assert pacing(pytester)["duration_ms"] < 300, "--mockstream-speed 0 must win over the ini's mockstream_speed = 1"
    assert_stopped_cleanly(finish(pytester))


# Run on two xdist workers, with the ini asking for real pacing and a scenario directory, and a seed option.
WORKERS = """
import json, os, pathlib

import httpx
import pytest

from mockstream.testing import MockHandle, MockServer

BODY = {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "Hi"}]}


def answer(base_url, model="gpt-4o-mini"):
    response = httpx.post(base_url + "/chat/completions", json={**BODY, "model": model}, timeout=30)
    assert response.status_code == 200
    events = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: {")]
    return events[0]["id"], "".join(event["choices"][0]["delta"].get("content") or "" for event in events)


@pytest.mark.parametrize("n", range(6))
def test_each_worker_has_its_own_server(mockstream, n):
    mockstream.script(content=f"answer {n}", ttft_ms=0, itl_ms=0)
    assert answer(mockstream.base_url)[1] == f"answer {n}"
    assert len(mockstream.requests) == 1
    record = {"worker": os.environ["PYTEST_XDIST_WORKER"], "pid": os.getpid(), "port": mockstream.server.port}
    (pathlib.Path(__file__).parent / f"worker-{n}.json").write_text(json.dumps(record))


def test_the_scenario_directory_is_loaded_and_survives_reset(mockstream):
    assert answer(mockstream.base_url, "from-dir")[1] == "loaded for the whole session"
    assert [entry.scenario for entry in mockstream.requests] == ["from-dir"]
    mockstream.reset()
    assert answer(mockstream.base_url, "from-dir")[1] == "loaded for the whole session"


def test_the_seed_option_decides_the_ids(mockstream):
    mockstream.script(content="same words", ttft_ms=0, itl_ms=0)
    ids = {}
    for seed in (0, 7):
        with MockServer(seed=seed) as server:
            MockHandle(server).script(content="same words", ttft_ms=0, itl_ms=0)
            ids[seed] = answer(server.base_url)[0]
    assert ids[0] != ids[7]
    assert answer(mockstream.base_url)[0] == ids[7]
"""


def test_xdist_workers_ini_settings_and_seed(pytester: pytest.Pytester) -> None:
    """Under `-n 2` each worker starts its own server (no port clash) with the session's settings: the ini's
    mockstream_speed = 1 makes pacing real, its mockstream_scenarios loads a directory, --mockstream-seed
    reaches the workers."""
    scenarios = pytester.mkdir("scenarios")
    (scenarios / "session.yaml").write_text("name: from-dir\ncontent: loaded for the whole session\n")
    write_session(pytester, "mockstream_speed = 1\nmockstream_scenarios = scenarios", test_workers=WORKERS)
    args = ("-n", "2", "--mockstream-seed", "7", *INNER)
    result = pytester.runpytest_subprocess(*args)
    result.assert_outcomes(passed=9)
    records = [json.loads((pytester.path / f"worker-{n}.json").read_text()) for n in range(6)]
    servers = {record["worker"]: (record["pid"], record["port"]) for record in records}
    assert sorted(servers) == ["gw0", "gw1"], records
    assert len({pid for pid, _ in servers.values()}) == 2
    assert len({port for _, port in servers.values()}) == 2
    assert pacing(pytester)["duration_ms"] >= 600, "the ini's mockstream_speed = 1 must make ttft_ms=600 real"
    for worker in servers:
        report = finish(pytester, worker)
        assert_stopped_cleanly(report)
        assert report["ports"] == [servers[worker][1]]


def test_a_session_that_never_asks_for_a_server(pytester: pytest.Pytester) -> None:
    """The plugin is loaded, yet without the fixture no server starts, and neither aiohttp nor Faker (nor our
    server modules) are imported; `pytest --markers` lists the marker; a bad setting is a usage error before
    any test runs."""
    pytester.makeini("[pytest]\nfilterwarnings = error\n")
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_plain="def test_plain(tmp_path):\n    assert tmp_path.is_dir()\n")
    # pytest-aiohttp imports aiohttp (and Faker's plugin Faker): leave them out to see what we import.
    light = ("-p", "no:aiohttp", "-p", "no:asyncio", "-p", "no:xdist", *INNER)
    pytester.runpytest_subprocess(*light).assert_outcomes(passed=1)
    report = finish(pytester)
    assert report["plugin"], "the mockstream plugin was not loaded through its entry point"
    assert report["modules"] == ["mockstream.testing.pytest_plugin"]
    assert "mockstream" not in report["threads"]
    assert report["ports"] == []

    result = pytester.runpytest_subprocess("--mockstream-speed", "-3", *light)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: mockstream: --mockstream-speed: expected a finite number >= 0, got '-3'"])

    result = pytester.runpytest_subprocess("--markers", *light)
    assert result.ret == 0
    result.stdout.fnmatch_lines(["@pytest.mark.mockstream(**knobs): script the mock stream for this test*"])
