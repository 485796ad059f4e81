"""The pytest plugin's record modes and strict mode, used the way a user meets them: inner pytest sessions in
subprocesses (the plugin loads through its entry point) whose mock forwards to an upstream, a second real
mockstream server run by the outer test, and records into `recordings/<module>/<test>/`.

Inner tests write what they saw (answers, `handle.recordings`) to JSON files next to them; the outer test
reads those, the recordings on disk and the upstream's journal.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest
import yaml

from mockstream.plan.schema import Scenario
from mockstream.testing import MockHandle, MockServer

# Inner sessions leave no .pytest_cache behind and skip plugins they do not use (Faker alone costs seconds;
# these tests are sync, so no asyncio either).
INNER = (*("-p", "no:cacheprovider", "-p", "no:faker", "-p", "no:anyio", "-p", "no:xdist"), "-rA")
INNER = (*INNER, "-p", "no:aiohttp", "-p", "no:asyncio")

INI = """
[pytest]
xfail_strict = true
filterwarnings = error
{extra}
"""

# One conversation per test: the questions come from questions.json, what came back goes to answers-<test>.json.
TALK = """
import json, pathlib

import openai

HERE = pathlib.Path(__file__).parent


def ask(handle, question):
    with handle.openai(max_retries=0) as client:
        try:
            stream = client.chat.completions.create(
                model="gpt-4o-mini", stream=True, messages=[{"role": "user", "content": question}]
            )
            return "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
        except openai.APIStatusError as exc:
            return {"status": exc.status_code}


def test_conversation(mockstream):
    answers = [ask(mockstream, question) for question in json.loads((HERE / "questions.json").read_text())]
    seen = {"answers": answers, "recordings": [None if p is None else str(p) for p in mockstream.recordings]}
    (HERE / "answers-test_conversation.json").write_text(json.dumps(seen))
"""

# A parametrized test whose id holds a character no directory name can.
PARAMS = """
import pytest


@pytest.mark.parametrize("who", ["ann/bob"])
def test_greet(mockstream, who):
    with mockstream.openai(max_retries=0) as client:
        stream = client.chat.completions.create(
            model="gpt-4o-mini", stream=True, messages=[{"role": "user", "content": f"Greet {who}"}]
        )
        assert "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
"""


@pytest.fixture(autouse=True)
def _not_a_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    """When this suite itself runs under xdist, the inner sessions must not inherit the worker's identity."""
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID", "MOCKSTREAM_UPSTREAM"):
        monkeypatch.delenv(name, raising=False)


def outcomes(result: pytest.RunResult) -> dict[str, set[str]]:
    """test name -> its outcomes in the `-rA` summary (a test that passed and errored at teardown has both)."""
    found: dict[str, set[str]] = {}
    for line in result.outlines:
        match = re.match(r"(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS) \S+::(\S+)", line)
        if match:
            found.setdefault(match[2], set()).add(match[1])
    return found


def recorded_text(path: Path) -> str:
    """The text a recorded Chat stream carries (its writes joined, the deltas of its `data:` events)."""
    writes = yaml.safe_load(path.read_text())["recording"]["writes"]
    raw = b"".join(w["text"].encode() if "text" in w else base64.b64decode(w["base64"]) for w in writes)
    events = [json.loads(line[6:]) for line in raw.decode().splitlines() if line.startswith("data: {")]
    return "".join(event["choices"][0]["delta"].get("content") or "" for event in events if event["choices"])


def user_texts(handle: MockHandle) -> list[str]:
    return [entry.body["messages"][-1]["content"] for entry in handle.requests]


class Talk:
    """The inner project of the record tests: run it with some questions, read what it saw."""

    def __init__(self, pytester: pytest.Pytester):
        self.pytester = pytester
        pytester.makeini(INI.format(extra=""))
        pytester.makepyfile(test_talk=TALK, test_params=PARAMS)
        self.recordings = pytester.path / "recordings" / "test_talk" / "test_conversation"

    def run(self, questions: list[str], *args: str, files: tuple[str, ...] = ("test_talk.py",)) -> pytest.RunResult:
        (self.pytester.path / "questions.json").write_text(json.dumps(questions))
        answers = self.pytester.path / "answers-test_conversation.json"
        answers.unlink(missing_ok=True)
        return self.pytester.runpytest_subprocess(*files, *args, *INNER)

    def seen(self) -> dict:
        return json.loads((self.pytester.path / "answers-test_conversation.json").read_text())

    def files(self) -> list[Path]:
        return sorted(self.recordings.glob("*.yaml"))


def test_record_once_replay_new_episodes_all(
    pytester: pytest.Pytester, make_server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """once records a test without recordings through the upstream; none (the default) and once replay them
    without touching it, and refuse what was not recorded; new_episodes adds a file for a new request and keeps
    the old; all records everything again; `handle.recordings` names the files."""
    upstream: MockServer = make_server()
    up = MockHandle(upstream)
    up.script(content="Recorded hello")
    talk = Talk(pytester)

    # once, no recordings yet: forwarded, recorded, answered as the upstream answered
    result = talk.run(["Say hello"], "--mockstream-record=once", "--mockstream-upstream", upstream.url, files=())
    result.assert_outcomes(passed=2)
    [first] = talk.files()
    assert first.name.startswith("chat-gpt-4o-mini-0-"), first
    assert recorded_text(first) == "Recorded hello"
    assert talk.seen() == {"answers": ["Recorded hello"], "recordings": [str(first)]}
    assert sorted(user_texts(up)) == ["Greet ann/bob", "Say hello"]
    greet = pytester.path / "recordings" / "test_params" / "test_greet[ann-bob]"
    assert len(list(greet.glob("*.yaml"))) == 1, sorted(pytester.path.rglob("*"))
    recorded = first.read_bytes()

    # the upstream now answers differently: none replays from the file and refuses what was not recorded
    up.script(content="Upstream changed")
    result = talk.run(["Say hello", "Something else"])
    found = outcomes(result)
    assert found == {"test_conversation": {"PASSED", "ERROR"}}, result.stdout.str()
    assert talk.seen() == {"answers": ["Recorded hello", {"status": 404}], "recordings": [str(first), None]}
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_conversation*",
            "*mockstream (replaying recordings): 1 request matched no scenario:*",
            "*POST /v1/chat/completions, model 'gpt-4o-mini': refused with a 404 (no scenario matched)*",
            f"*closest: {first.stem}*",
            "*user: wanted '*ASay*hello*Z', got 'Something else'",
        ]
    )
    assert len(up.requests) == 2, "none must never reach the upstream"

    # once with the directory there: replay, the upstream untouched
    talk.run(["Say hello"], "--mockstream-record=once", "--mockstream-upstream", upstream.url).assert_outcomes(passed=1)
    assert talk.seen()["answers"] == ["Recorded hello"]
    assert len(up.requests) == 2

    # new_episodes (the upstream from the environment): the old request replays, the new one is recorded
    monkeypatch.setenv("MOCKSTREAM_UPSTREAM", upstream.url)
    talk.run(["Say hello", "Say goodbye"], "--mockstream-record=new_episodes").assert_outcomes(passed=1)
    old, new = sorted(talk.files(), key=lambda path: path != first)
    assert old == first and old.read_bytes() == recorded
    assert recorded_text(new) == "Upstream changed"
    assert talk.seen() == {"answers": ["Recorded hello", "Upstream changed"], "recordings": [str(first), str(new)]}
    assert user_texts(up)[2:] == ["Say goodbye"]
    monkeypatch.delenv("MOCKSTREAM_UPSTREAM")

    # all: the directory is cleared and everything recorded again
    up.script(content="Recorded again")
    result = talk.run(["Say hello"], "--mockstream-record=all", "--mockstream-upstream", upstream.url)
    result.assert_outcomes(passed=1)
    [again] = talk.files()
    assert again.name == first.name  # the same request, so the same file name; its content is new
    assert recorded_text(again) == "Recorded again"
    assert talk.seen() == {"answers": ["Recorded again"], "recordings": [str(again)]}
    assert user_texts(up)[3:] == ["Say hello"]


def test_record_mode_needs_an_upstream(pytester: pytest.Pytester) -> None:
    """once (and any mode that records) without an upstream, or a misspelt mode, stops the session at once."""
    pytester.makeini(INI.format(extra=""))
    pytester.makepyfile(test_talk=TALK)
    result = pytester.runpytest_subprocess("--mockstream-record=once", *INNER)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: mockstream: --mockstream-record=once records through an upstream, and none is given: pass "
            "--mockstream-upstream URL (or set the ini value mockstream_upstream, or $MOCKSTREAM_UPSTREAM)"
        ]
    )
    result = pytester.runpytest_subprocess("--mockstream-record=onse", *INNER)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: mockstream: --mockstream-record: unknown record mode 'onse' (did you mean 'once'?); "
            "expected one of: none, once, new_episodes, all"
        ]
    )


SCENARIOS = r"""
version: 1
scenarios:
  - name: weather
    match: {user: '\AWhat is the weather\?\Z'}
    content: Sunny
  - name: big-model
    match: {model: 'gpt-5', user: 'never'}
    content: Big
"""

STRICT = """
import httpx
import openai
import pytest

BODY = {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "What time is it?"}]}


def ask(handle, question):
    with handle.openai(max_retries=0) as client:
        stream = client.chat.completions.create(
            model="gpt-4o-mini", stream=True, messages=[{"role": "user", "content": question}]
        )
        return "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)


def test_matched(mockstream):
    assert ask(mockstream, "What is the weather?") == "Sunny"


def test_unmatched(mockstream):
    with pytest.raises(openai.NotFoundError, match="Closest: weather"):
        ask(mockstream, "What time is it?")


@pytest.mark.mockstream(strict=False)
def test_marker_turns_it_off(mockstream):
    assert ask(mockstream, "What time is it?").startswith("Hello! This is mockstream")


def test_server_only(mockstream_server):
    response = httpx.post(mockstream_server.base_url + "/chat/completions", json=BODY)
    assert response.status_code == 404
"""

NOT_STRICT = """
import openai
import pytest

from test_strict import ask


@pytest.mark.mockstream(strict=True)
def test_marker_strict(mockstream):
    with pytest.raises(openai.NotFoundError):
        ask(mockstream, "What time is it?")


def test_next_test_not_strict(mockstream):
    assert ask(mockstream, "What time is it?").startswith("Hello! This is mockstream")
    assert mockstream.misses()[0].miss[0]["scenario"] == "weather"


@pytest.mark.mockstream(strict=True)
def test_fell_through_to_the_default(mockstream):
    with mockstream.strict(False):
        assert ask(mockstream, "What time is it?").startswith("Hello! This is mockstream")


@pytest.mark.mockstream(strict=True, content="scripted")
def test_scripted_is_no_miss(mockstream):
    assert ask(mockstream, "What time is it?") == "scripted"
"""


def report(how: str) -> list[str]:
    return [
        "*mockstream (strict mode): 1 request matched no scenario:*",
        f"*POST /v1/chat/completions, model 'gpt-4o-mini': {how}*",
        "*closest: weather*",
        "*user: wanted '\\\\AWhat is the weather\\\\?\\\\Z', got 'What time is it?'*",
        "*closest: big-model*",
        "*model: wanted 'gpt-5', got 'gpt-4o-mini'*",
    ]


REFUSED, DEFAULTED = report("refused with a 404"), report("answered by the built-in default")


def test_strict_mode(pytester: pytest.Pytester) -> None:
    """Strict from the ini or the option: a request that matched nothing is refused at once and fails its test
    at teardown with the report (closest scenarios, failing rule, wanted and got), a matched one passes, the
    marker's strict=False turns it off for its test; without strict the marker's strict=True does the same for
    one test (also for a request the built-in default answered), and a scripted request is no miss."""
    pytester.path.joinpath("scenarios.yaml").write_text(SCENARIOS)
    pytester.makeini(INI.format(extra="mockstream_scenarios = scenarios.yaml\nmockstream_strict = true"))
    pytester.makepyfile(test_strict=STRICT)
    result = pytester.runpytest_subprocess(*INNER)
    found = outcomes(result)
    assert found == {
        "test_matched": {"PASSED"},
        "test_unmatched": {"PASSED", "ERROR"},
        "test_marker_turns_it_off": {"PASSED"},
        "test_server_only": {"PASSED", "ERROR"},
    }, result.stdout.str()
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_unmatched*", *REFUSED])
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_server_only*", *REFUSED])

    pytester.makeini(INI.format(extra="mockstream_scenarios = scenarios.yaml"))
    pytester.makepyfile(test_not_strict=NOT_STRICT)
    result = pytester.runpytest_subprocess("test_not_strict.py", "test_strict.py::test_server_only", *INNER)
    assert outcomes(result) == {
        "test_marker_strict": {"PASSED", "ERROR"},
        "test_next_test_not_strict": {"PASSED"},
        "test_fell_through_to_the_default": {"PASSED", "ERROR"},
        "test_scripted_is_no_miss": {"PASSED"},
        "test_server_only": {"FAILED"},  # not strict: the default answers with a 200
    }, result.stdout.str()
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_marker_strict*", *REFUSED])
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_fell_through_to_the_default*", *DEFAULTED])

    result = pytester.runpytest_subprocess("--mockstream-strict", "test_strict.py::test_server_only", *INNER)
    assert outcomes(result) == {"test_server_only": {"PASSED", "ERROR"}}, result.stdout.str()
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_server_only*", *REFUSED])


def test_a_request_repeated_while_recording_goes_upstream_again_and_is_the_next_take(tmp_path: Path) -> None:
    import openai

    upstream_scenario = Scenario.from_dict({"name": "hello", "content": "Recorded hello", "match": {"user": "hi"}})
    with MockServer([upstream_scenario]) as upstream, MockServer(upstream=upstream.url) as mock:
        handle = MockHandle(mock)
        with handle.record(tmp_path / "rec", mode="once"):
            client = openai.OpenAI(base_url=mock.base_url, api_key="k", max_retries=0)
            for _ in range(2):  # a retry, say: the same request twice
                client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
            client.close()
            recorded = handle.recordings
        assert len(upstream.state.journal) == 2  # the second went upstream too, not to the first recording
        files = sorted(p.name for p in (tmp_path / "rec").glob("*.yaml"))
        assert len(files) == 2 and [p.name for p in recorded if p is not None] == sorted(files, key=len)
        assert yaml.safe_load((tmp_path / "rec" / sorted(files, key=len)[1]).read_text())["recording"]["take"] == 2
