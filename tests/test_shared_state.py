"""`--state redis://...`: sequence positions, fault rolls, runtime scenarios and the journal shared by every
worker and replica on one Redis. A real `redis-server` on a free port (Debian's package; `.ci/run` installs
it), real `mockstream serve` processes and real clients on loopback, never a fake."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import pytest
from helpers import MOCKSTREAM, Server, clean_env, free_port, serve, unavailable, wait_until
from wire import auth_headers

MESSAGES = [{"role": "user", "content": "Hello there"}]
SCENARIOS = """
scenarios:
  - name: flaky
    description: two 429s, then an answer (the classic retry test)
    sequence:
      - fault: {kind: http_error, status: 429, retry_after_ms: 1}
      - fault: {kind: http_error, status: 429, retry_after_ms: 1}
      - content: ok
  - name: steps
    description: a new answer on each call
    sequence:
      - content: first
      - content: second
      - content: third
      - content: fourth
"""


# ---------------------------------------------------------------- a real redis-server ---
class Redis:
    """`redis-server` on 127.0.0.1:`port`, saving its RDB in `directory` (after 1 s with a change, and on
    SIGTERM), so a restart on the same port and directory finds what was written before."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory, self.port = directory, port or free_port()
        self.process: subprocess.Popen | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> Redis:
        binary = shutil.which("redis-server")
        if binary is None:
            unavailable("redis-server is not installed (apt-get install redis-server)")
        log = self.directory / "redis.log"
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
             "--save", "1 1", "--appendonly", "no", "--daemonize", "no", "--logfile", str(log)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        assert wait_until(self.answers, timeout=10), f"redis-server did not answer: {log.read_text()[-2000:]}"
        return self

    def answers(self) -> bool:
        import redis

        try:
            with redis.Redis(port=self.port, socket_connect_timeout=0.5) as client:
                return bool(client.ping())
        except redis.ConnectionError:
            return False

    def stop(self) -> None:
        """SIGTERM: Redis saves its RDB and exits 0."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(timeout=10) == 0
        self.process = None

    def stored_keys(self, db: int = 0) -> list[str]:
        import redis

        with redis.Redis(port=self.port, db=db, decode_responses=True) as client:
            return sorted(client.keys("*"))

    def flush(self) -> None:
        import redis

        with redis.Redis(port=self.port) as client:
            client.flushall()

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Redis]:
    server = Redis(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def redis_db(redis_server: Redis) -> Redis:
    """The module's Redis, emptied before the test."""
    redis_server.flush()
    return redis_server


@pytest.fixture
def scenario_dir(tmp_path: Path) -> str:
    folder = tmp_path / "scenarios"
    folder.mkdir()
    (folder / "shared.yaml").write_text(SCENARIOS)
    return str(folder)


# ---------------------------------------------------------------- talking to a mock ---
def chat(url: str, model: str, session: str | None = None, **knobs) -> httpx.Response:
    """One non-streamed chat call on a fresh connection (so the kernel picks the worker)."""
    body = {"model": model, "messages": MESSAGES, **({"mockstream": knobs} if knobs else {})}
    headers = {"X-Mockstream-Session": session} if session else {}
    with httpx.Client(timeout=10) as client:
        return client.post(f"{url}/v1/chat/completions", json=body, headers=headers)


def said(url: str, model: str, session: str | None = None, **knobs) -> str:
    response = chat(url, model, session, **knobs)
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]["message"]["content"]


def streamed(url: str, model: str, **knobs) -> str:
    """A streamed chat call's text (a 200 that ends with [DONE])."""
    body = {"model": model, "messages": MESSAGES, "stream": True, "mockstream": knobs}
    with httpx.Client(timeout=10) as client:
        response = client.post(f"{url}/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    assert response.text.endswith("data: [DONE]\n\n")
    return "".join(
        choice["delta"].get("content") or ""
        for line in response.text.splitlines()
        if line.startswith("data: {")
        for choice in json.loads(line[6:])["choices"]
    )


def journal(url: str, **filters: str) -> list[dict]:
    with httpx.Client(timeout=10) as client:
        response = client.get(f"{url}/_mockstream/requests", params=filters)
    assert response.status_code == 200, response.text
    return response.json()


def journal_of(url: str, count: int, **filters: str) -> list[dict]:
    """The shared journal once it holds `count` entries (a request's summary is written once it has ended,
    a moment after the client has its answer)."""
    entries: list[dict] = []

    def enough() -> bool:
        nonlocal entries
        entries = journal(url, **filters)
        return len(entries) >= count

    wait_until(enough, timeout=5)
    return entries


def post(url: str, path: str, body: object = None) -> httpx.Response:
    with httpx.Client(timeout=10) as client:
        return client.post(f"{url}{path}", json=body)


def healthz(url: str) -> dict:
    with httpx.Client(timeout=10) as client:
        response = client.get(f"{url}/healthz")
    assert response.status_code == 200, response.text
    return response.json()


def serve_shared(tmp_path: Path, url: str, *args: str) -> AbstractContextManager[Server]:
    return serve(tmp_path, "--port", "0", "--speed", "0", "--state", url, *args)


# ---------------------------------------------------------------- one sequence, many workers ---
def test_a_retried_429_429_then_ok_takes_exactly_three_calls_whichever_worker_answers(
    tmp_path, redis_db, scenario_dir
):
    import openai

    spanned = 0  # sessions whose three calls were not all answered by one worker
    with serve_shared(tmp_path, redis_db.url(), "--workers", "2", "--scenarios", scenario_dir) as server:
        for number in range(12):  # a session lands all three calls on one worker with odds 1 in 4
            session = f"retry-{number}"
            calls: list[tuple[int, str]] = []

            def seen(response: httpx.Response, calls: list[tuple[int, str]] = calls) -> None:
                calls.append((response.status_code, response.headers["x-mockstream-worker"]))

            http = openai.DefaultHttpxClient(
                limits=httpx.Limits(max_keepalive_connections=0),  # each call (and retry) on a new connection
                event_hooks={"response": [seen]},
            )
            sdk = openai.OpenAI(base_url=f"{server.url}/v1", api_key="sk-test", max_retries=3, timeout=10,
                                http_client=http, default_headers={"X-Mockstream-Session": session})  # fmt: skip
            with sdk as client:
                stream = client.chat.completions.create(model="flaky", messages=MESSAGES, stream=True)
                text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
            assert text == "ok"
            assert [status for status, _ in calls] == [429, 429, 200], calls
            entries = journal_of(server.url, 3, session=session)
            assert [(e["status"], e["sequence_index"]) for e in entries] == [(429, 0), (429, 1), (200, 2)]
            assert [str(e["pid"]) for e in entries] == [worker for _, worker in calls]
            spanned += len({worker for _, worker in calls}) > 1
            if spanned >= 2 and number >= 3:
                break
        assert spanned >= 2, "the retries never moved to the other worker: nothing shared was tested"
        keys = redis_db.stored_keys()
        assert keys and all(key.startswith("mockstream:") for key in keys), keys  # the default prefix
        code, _ = server.signal_and_time()
    assert code == 0


def test_the_journal_lists_every_workers_requests_in_arrival_order_and_stays_bounded(tmp_path, redis_db):
    size = 20
    sent: list[str] = []
    pids: set[str] = set()
    with serve_shared(tmp_path, redis_db.url(), "--workers", "2", "--journal-size", str(size)) as server:
        while len(pids) < 2 or len(sent) < 4:  # until both workers have answered
            assert len(sent) < size, f"only worker {pids} answered {len(sent)} fresh connections"
            sent.append(f"call-{len(sent)}")
            response = chat(server.url, "any", sent[-1], content=sent[-1])
            assert response.status_code == 200, response.text
            pids.add(response.headers["x-mockstream-worker"])
        entries = journal_of(server.url, len(sent))
        assert [e["session"] for e in entries] == sent
        assert {str(e["pid"]) for e in entries} == pids
        assert len({e["worker"] for e in entries}) == len({(e["worker"], e["pid"]) for e in entries}) == 2
        times = [e["time"] for e in entries]
        assert times == sorted(times)
        # Past --journal-size the oldest go: it keeps the last `size`, whoever answered them.
        while len(sent) < size + 15:
            sent.append(f"call-{len(sent)}")
            assert chat(server.url, "any", sent[-1]).status_code == 200
        assert wait_until(lambda: [e["session"] for e in journal(server.url)] == sent[-size:]), [
            e["session"] for e in journal(server.url)
        ]
        code, _ = server.signal_and_time()
    assert code == 0


# ---------------------------------------------------------------- two replicas on one Redis ---
def test_a_runtime_scenario_and_a_reset_reach_another_replica(tmp_path, redis_db, scenario_dir):
    late = {"name": "late", "content": "Added at runtime."}
    with serve_shared(tmp_path, redis_db.url(), "--scenarios", scenario_dir) as a, \
            serve_shared(tmp_path, redis_db.url(), "--scenarios", scenario_dir) as b:  # fmt: skip
        assert said(b.url, "late") != "Added at runtime."  # nothing called late yet: the default answer
        assert post(a.url, "/_mockstream/scenarios", late).status_code == 200
        assert said(b.url, "late") == "Added at runtime."  # from the next request on
        assert post(b.url, "/_mockstream/scenarios", {**late, "content": "Replaced."}).status_code == 200
        assert said(a.url, "late") == "Replaced."
        # one sequence position for both
        assert [said(a.url, "steps"), said(b.url, "steps"), said(a.url, "steps")] == ["first", "second", "third"]
        entries = journal_of(a.url, 6)
        assert {e["pid"] for e in entries} == {a.process.pid, b.process.pid}
        assert [e["scenario"] for e in entries] == ["default", "late", "late", "steps", "steps", "steps"]
        assert post(b.url, "/_mockstream/reset").status_code == 200
        assert journal(a.url) == []
        assert said(a.url, "steps") == "first"  # the sequence starts over on A too
        assert [e["scenario"] for e in journal_of(b.url, 1)] == ["steps"]
        assert a.signal_and_time()[0] == 0 and b.signal_and_time()[0] == 0


def test_state_prefix_keeps_two_mocks_on_one_redis_apart(tmp_path, redis_db, scenario_dir):
    url = redis_db.url()
    with serve_shared(tmp_path, url, "--scenarios", scenario_dir, "--state-prefix", "team-a:") as a, \
            serve_shared(tmp_path, url, "--scenarios", scenario_dir, "--state-prefix", "team-b:") as b:  # fmt: skip
        assert [said(a.url, "steps"), said(a.url, "steps")] == ["first", "second"]
        assert said(b.url, "steps") == "first"  # a position of its own
        assert post(a.url, "/_mockstream/scenarios", {"name": "late", "content": "Only on A."}).status_code == 200
        assert said(a.url, "late") == "Only on A."
        assert said(b.url, "late") != "Only on A."
        assert [e["pid"] for e in journal_of(a.url, 3)] == [a.process.pid] * 3
        assert [e["pid"] for e in journal_of(b.url, 2)] == [b.process.pid] * 2
        keys = redis_db.stored_keys()
        assert any(k.startswith("team-a:") for k in keys) and any(k.startswith("team-b:") for k in keys), keys
        assert all(k.startswith(("team-a:", "team-b:")) for k in keys), keys
        assert post(b.url, "/_mockstream/reset").status_code == 200
        assert len(journal(a.url)) == 3  # B's reset cleared B's keys only
        assert journal(b.url) == []
        assert said(a.url, "steps") == "third"
        assert all(k.startswith("team-a:") for k in redis_db.stored_keys()), redis_db.stored_keys()
        assert a.signal_and_time()[0] == 0 and b.signal_and_time()[0] == 0


# ---------------------------------------------------------------- Redis lost and back ---
def test_redis_lost_while_serving_degrades_and_recovers_without_a_restart(tmp_path, scenario_dir):
    (tmp_path / "redis").mkdir()
    store = Redis(tmp_path / "redis").start()
    url = store.url()
    try:
        with serve_shared(tmp_path, url, "--scenarios", scenario_dir) as server:
            assert healthz(server.url) == {"status": "ok"}
            assert post(server.url, "/_mockstream/scenarios", {"name": "late", "content": "Kept."}).status_code == 200
            assert [said(server.url, "steps"), said(server.url, "steps")] == ["first", "second"]
            assert len(journal_of(server.url, 2)) == 2
            store.stop()

            started = time.monotonic()
            assert streamed(server.url, "any", content="No state needed.") == "No state needed."
            assert time.monotonic() - started < 2, "a request that needs no shared state waited on Redis"
            a_roll = {"kind": "http_error", "status": 500, "probability": 0.5}
            for response in (chat(server.url, "steps"), chat(server.url, "any", fault=a_roll)):  # a step, a roll
                assert response.status_code == 503, response.text
                error = response.json()["error"]
                assert set(error) == {"message", "type", "param", "code"}
                assert error["code"] == "state_unavailable" and url in error["message"], error
            with httpx.Client(timeout=10) as client:  # the Anthropic dialect's error shape
                response = client.post(f"{server.url}/v1/messages", headers=auth_headers("messages"),
                                       json={"model": "steps", "max_tokens": 50, "messages": MESSAGES})  # fmt: skip
            assert response.status_code == 503, response.text
            assert response.json()["type"] == "error" and url in response.json()["error"]["message"]
            health = healthz(server.url)
            assert health["status"] == "degraded" and url in health["state"], health

            store.start()  # the same port and directory: it loads the RDB it saved on SIGTERM
            back = time.monotonic()
            assert wait_until(lambda: healthz(server.url) == {"status": "ok"}, timeout=5), healthz(server.url)
            assert time.monotonic() - back < 3
            assert said(server.url, "steps") == "third"  # where it was: nothing written before the loss is lost
            assert said(server.url, "late") == "Kept."
            assert [e["scenario"] for e in journal(server.url)][:2] == ["steps", "steps"]
            assert server.signal_and_time()[0] == 0
    finally:
        store.kill()


# ---------------------------------------------------------------- refused at start ---
@pytest.mark.parametrize("workers", ["1", "2"])
def test_an_unreachable_redis_at_start_exits_2_naming_the_url(workers):
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    started = time.monotonic()
    result = subprocess.run([MOCKSTREAM, "serve", "--port", "0", "--workers", workers, "--state", url],
                            capture_output=True, text=True, timeout=30, env=clean_env())  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "mockstream: " in result.stderr and url in result.stderr, result.stderr
    assert result.stdout == ""  # no start line
    assert time.monotonic() - started < 10


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (["--state", "foo"], {}, "argument --state: expected memory or a Redis URL"),
        (["--state", "http://127.0.0.1:6379"], {}, "argument --state: expected memory or a Redis URL"),
        (["--state", "redis://127.0.0.1:6379/zero"], {}, "got 'redis://127.0.0.1:6379/zero'"),
        (["--state", "redis://127.0.0.1:port/0"], {}, "argument --state: expected memory or a Redis URL"),
        ([], {"MOCKSTREAM_STATE": "foo"}, "MOCKSTREAM_STATE='foo': expected memory or a Redis URL"),
        (["--state-prefix", ""], {}, "argument --state-prefix:"),
    ],
)
def test_a_bad_state_setting_exits_2_naming_it(args, env, says):
    result = subprocess.run([MOCKSTREAM, "serve", "--port", "0", *args], capture_output=True, text=True,
                            timeout=30, env=clean_env(**env))  # fmt: skip
    assert result.returncode == 2
    assert says in result.stderr, result.stderr
    assert result.stdout == ""
