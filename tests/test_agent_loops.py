"""Agent loops against mockstream: a `turns:` scenario drives a real framework's tool loop (openai-agents) to its
final answer with no sequence and no reset; a three-turn tool-using conversation recorded through the recorder
replays in order, byte for byte, from an agent loop written with openai-python (Chat and Responses), in
parallel tests (xdist) and from `mockstream serve --workers 2`; and the recorded example in
`scenarios/recorded-tool-loop/` validates and replays.

Matching is stateless here: every answer is chosen from the request alone (its turn number, its last tool
result), so nothing is reset between runs and any process answers any turn.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import itertools
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml
from helpers import MOCKSTREAM, Server, clean_env, journal, unavailable
from helpers import serve as serve_process

from mockstream.plan.json_schema import scenario_schema
from mockstream.plan.schema import Scenario, load_scenarios
from mockstream.record import attach
from mockstream.testing import MockServer

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "scenarios" / "recorded-tool-loop"
# The httpx the SDK is built on (httpx; its fork httpx2 from openai 3 on): a transport must be of its kind.
SDK_HTTPX: Any = sys.modules[openai.DefaultHttpxClient.__mro__[1].__module__.partition(".")[0]]
URL_LINE = re.compile(r"listening on (http://127\.0\.0\.1:\d+)\b")
MODEL = "gpt-4o-mini"
QUESTION = "What is the weather in Paris?"
SUNNY = "It is sunny in Paris."

# One scenario for the whole loop of one tool: the turn number of the request picks the answer.
WEATHER_LOOP = Scenario.from_dict({
    "name": "weather-loop",
    "description": "turn 0 calls get_weather, turn 1 answers",
    "match": {"tools": ["get_weather"]},
    "turns": [
        {"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]},
        {"content": SUNNY},
    ],
})
# The upstream of the recordings: two tool rounds, then the answer; cut into 7-byte writes.
NOON = "It is sunny in Paris, and it is noon there."
THREE_TURNS = Scenario.from_dict({
    "name": "weather-then-time",
    "description": "turn 0 calls get_weather, turn 1 says a word and calls get_time, turn 2 answers",
    "match": {"tools": ["get_time", "get_weather"]},
    "chunk_bytes": 7,
    "chunk_gap_ms": 0,
    "turns": [
        {"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]},
        {"content": "One more thing.", "tool_calls": [{"name": "get_time", "arguments": {"city": "Paris"}}]},
        {"content": NOON},
    ],
})


# ---------------------------------------------------------------- the tools, run locally ---
def get_weather(city: str) -> str:
    return json.dumps({"city": city, "sky": "sunny", "temp_c": 21})


def get_time(city: str) -> str:
    return json.dumps({"city": city, "time": "12:00"})


TOOLS: dict[str, Callable[..., str]] = {"get_weather": get_weather, "get_time": get_time}
PARAMETERS = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def chat_tools(names: tuple[str, ...]) -> list[dict[str, Any]]:
    return [{"type": "function", "function": {"name": n, "description": f"{n} of a city", "parameters": PARAMETERS}}
            for n in names]


def responses_tools(names: tuple[str, ...]) -> list[dict[str, Any]]:
    return [{"type": "function", "name": n, "description": f"{n} of a city", "parameters": PARAMETERS}
            for n in names]


# ---------------------------------------------------------------- what the client saw ---
@dataclass
class Exchange:
    """One call of a loop as it crossed the socket: the request body, the response's headers and bytes."""

    request: bytes
    headers: Any  # the SDK's httpx.Headers
    body: bytearray = field(default_factory=bytearray)


class Tap(SDK_HTTPX.BaseTransport):  # type: ignore[misc]
    """httpx's own transport, keeping every request body and every response byte as the client reads it."""

    def __init__(self, **options: Any) -> None:
        self.inner = SDK_HTTPX.HTTPTransport(**options)
        self.exchanges: list[Exchange] = []

    def handle_request(self, request: Any) -> Any:
        response = self.inner.handle_request(request)
        exchange = Exchange(request.read(), response.headers)
        self.exchanges.append(exchange)
        return SDK_HTTPX.Response(response.status_code, headers=response.headers, stream=_Tapped(response, exchange),
                              extensions=response.extensions, request=request)

    def close(self) -> None:
        self.inner.close()


class _Tapped(SDK_HTTPX.SyncByteStream):  # type: ignore[misc]
    def __init__(self, response: Any, exchange: Exchange) -> None:
        self.response, self.exchange = response, exchange

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.response.stream:
            self.exchange.body += chunk
            yield chunk

    def close(self) -> None:
        self.response.close()


@dataclass
class Loop:
    """An agent loop's run: its final answer, the tool calls it ran (name, arguments) and its exchanges."""

    answer: str
    calls: list[tuple[str, dict[str, Any]]]
    exchanges: list[Exchange]

    def bodies(self) -> list[bytes]:
        return [bytes(exchange.body) for exchange in self.exchanges]


@contextlib.contextmanager
def sdk(base_url: str, **headers: str) -> Iterator[tuple[openai.OpenAI, Tap]]:
    tap = Tap()
    http = openai.DefaultHttpxClient(transport=tap)
    client = openai.OpenAI(base_url=base_url, api_key="sk-test", max_retries=0, timeout=10, http_client=http,
                           default_headers=headers)
    with client:
        yield client, tap


# ---------------------------------------------------------------- agent loops written with openai-python ---
MAX_TURNS = 6  # a loop that never gets its final answer fails instead of spinning


def chat_loop(base_url: str, tools: tuple[str, ...] = ("get_weather", "get_time"), **headers: str) -> Loop:
    """Call, run the tools it asks for, append their results, call again until an answer has no tool call."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": QUESTION}]
    calls: list[tuple[str, dict[str, Any]]] = []
    with sdk(base_url, **headers) as (client, tap):
        for _ in range(MAX_TURNS):
            content, wanted = "", {}
            for chunk in client.chat.completions.create(model=MODEL, messages=messages, tools=chat_tools(tools),
                                                        stream=True):
                if not chunk.choices:
                    continue
                delta = chunk.choices[0].delta
                content += delta.content or ""
                for part in delta.tool_calls or ():
                    call = wanted.setdefault(part.index, {"id": "", "name": "", "arguments": ""})
                    call["id"] += part.id or ""
                    if part.function is not None:
                        call["name"] += part.function.name or ""
                        call["arguments"] += part.function.arguments or ""
            assistant: dict[str, Any] = {"role": "assistant", "content": content or None}
            if wanted:
                assistant["tool_calls"] = [
                    {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
                    for c in wanted.values()
                ]
            messages.append(assistant)
            if not wanted:
                return Loop(content, calls, tap.exchanges)
            for call in wanted.values():
                arguments = json.loads(call["arguments"])
                calls.append((call["name"], arguments))
                result = TOOLS[call["name"]](**arguments)
                messages.append({"role": "tool", "tool_call_id": call["id"], "content": result})
    raise AssertionError(f"no final answer after {MAX_TURNS} calls: {messages}")


def responses_loop(base_url: str, tools: tuple[str, ...] = ("get_weather", "get_time"), **headers: str) -> Loop:
    """The same loop on the Responses API: the whole conversation goes back each time (no previous_response_id),
    the output items and then a function_call_output for each call."""
    items: list[Any] = [{"role": "user", "content": QUESTION}]
    calls: list[tuple[str, dict[str, Any]]] = []
    with sdk(base_url, **headers) as (client, tap):
        for _ in range(MAX_TURNS):
            final = None
            for event in client.responses.create(model=MODEL, input=items, tools=responses_tools(tools), stream=True):
                if event.type == "response.completed":
                    final = event.response
            assert final is not None, "the stream ended without response.completed"
            items += [item.model_dump(mode="json", exclude_none=True) for item in final.output]
            wanted = [item for item in final.output if item.type == "function_call"]
            if not wanted:
                return Loop(final.output_text, calls, tap.exchanges)
            for call in wanted:
                arguments = json.loads(call.arguments)
                calls.append((call.name, arguments))
                items.append({"type": "function_call_output", "call_id": call.call_id,
                              "output": TOOLS[call.name](**arguments)})
    raise AssertionError(f"no final answer after {MAX_TURNS} calls: {items}")


LOOPS: dict[str, Callable[..., Loop]] = {"chat": chat_loop, "responses": responses_loop}
THREE_TURN_CALLS = [("get_weather", {"city": "Paris"}), ("get_time", {"city": "Paris"})]


@functools.cache  # a directory is read once: thousands of 7-byte writes take a while to load
def loaded(directory: Path) -> list[Scenario]:
    return load_scenarios(directory)


def recordings(directory: Path, dialect: str) -> list[Scenario]:
    """The recordings of a dialect in a directory, by turn (each turn once)."""
    scenarios = [s for s in loaded(directory) if s.match.dialect == dialect and s.recording is not None]
    scenarios.sort(key=lambda s: s.match.turn if s.match.turn is not None else -1)
    assert [s.match.turn for s in scenarios] == list(range(len(scenarios))), [s.name for s in scenarios]
    return scenarios


def read_yaml(path: Path) -> Any:
    return yaml.load(path.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def recorded_answers(directory: str | Path, dialect: str) -> list[bytes]:
    """The recorded answers of a dialect in a directory, by turn: each one's writes joined."""
    return [b"".join(w.data for w in s.recording.writes) for s in recordings(Path(directory), dialect) if s.recording]


# ---------------------------------------------------------------- mockstream serve, a subprocess ---
@contextlib.contextmanager
def serve(logs: Path, *args: str) -> Iterator[Server]:
    """`mockstream serve --port 0 --speed 0 ARGS`, its output in files under `logs`; killed at the end."""
    logs.mkdir(parents=True, exist_ok=True)
    with serve_process(logs, "--port", "0", "--speed", "0", "--access-log", "off", *args) as server:
        yield server


# ---------------------------------------------------------------- 1. a framework's tool loop on `turns:` ---
@pytest.fixture(scope="module")
def agents() -> Any:
    try:
        import agents  # openai-agents, in the test extra
    except ImportError:
        unavailable("openai-agents is not installed: pip install -e '.[test]'")
    agents.set_tracing_disabled(True)  # nothing goes to OpenAI's trace API
    return agents


@pytest.mark.parametrize("streamed", [False, True], ids=["run", "run_streamed"])
@pytest.mark.parametrize("api", ["chat", "responses"])
async def test_a_turns_scenario_drives_openai_agents_to_its_answer_twice_in_a_row(agents, make_server, api, streamed):
    server = make_server([WEATHER_LOOP])
    asked: list[str] = []

    @agents.function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        asked.append(city)
        return "Sunny, 21 C."

    async with openai.AsyncOpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0, timeout=10,
                                  http_client=openai.DefaultAsyncHttpxClient(verify=False)) as client:
        model_class = agents.OpenAIChatCompletionsModel if api == "chat" else agents.OpenAIResponsesModel
        agent = agents.Agent(name="forecaster", instructions="Answer with the weather tool.", tools=[get_weather],
                             model=model_class(model=MODEL, openai_client=client))
        answers = []
        for _ in range(2):  # the same server, nothing reset in between
            if streamed:
                run = agents.Runner.run_streamed(agent, QUESTION, max_turns=4)
                async for _event in run.stream_events():
                    pass
            else:
                run = await agents.Runner.run(agent, QUESTION, max_turns=4)
            answers.append(run.final_output)
    assert answers == [SUNNY, SUNNY]
    assert asked == ["Paris", "Paris"]
    entries = journal(server)
    path = "/v1/chat/completions" if api == "chat" else "/v1/responses"
    assert [(e["path"], e["scenario"], e["turn"], e["status"]) for e in entries] == [
        (path, "weather-loop", turn, 200) for turn in (0, 1, 0, 1)
    ]
    assert [e["body"].get("stream", False) for e in entries] == [streamed] * 4
    # each second call carries the tool's result back: the turn comes from the conversation, not from a counter
    second = json.dumps(entries[1]["body"])
    assert "Sunny, 21 C." in second and "Sunny, 21 C." not in json.dumps(entries[0]["body"])


# ---------------------------------------------------------------- 2. record a three-turn loop, replay it ---
@dataclass
class Recorded:
    directory: Path
    loops: dict[str, Loop]  # what each dialect's loop saw through the recorder


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    """Both loops run once through the recorder (an in-process `mockstream record`) to a mockstream upstream."""
    directory = tmp_path_factory.mktemp("recorded") / "tool-loop"
    with MockServer([THREE_TURNS], speed=0) as upstream:
        recorder = MockServer(record_all=True, on_miss="proxy")
        attach(recorder.app, upstream.url, directory)
        with recorder:
            loops = {dialect: loop(recorder.base_url) for dialect, loop in LOOPS.items()}
        forwarded = [e["body"] for e in journal(upstream)]
    assert forwarded == [json.loads(x.request) for d in LOOPS for x in loops[d].exchanges]  # passed on unchanged
    return Recorded(directory, loops)


@pytest.fixture(scope="module")
def replay(recorded: Recorded, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serve(tmp_path_factory.mktemp("replay-logs"), "--scenarios", str(recorded.directory)) as served:
        yield served


@pytest.mark.parametrize("dialect", LOOPS)
def test_the_recorder_keeps_each_turn_of_the_loop_as_one_file_matched_by_its_turn(recorded, dialect):
    loop = recorded.loops[dialect]
    assert loop.calls == THREE_TURN_CALLS
    assert loop.answer == NOON
    files = sorted(recorded.directory.glob(f"{dialect}-gpt-4o-mini-*.yaml"))
    rules = [read_yaml(path)["match"] for path in files]
    assert sorted((r["turn"], r["last_role"]) for r in rules) == [(0, "user"), (1, "tool"), (2, "tool")]
    assert all(r["dialect"] == dialect and re.search(r["user"], QUESTION) for r in rules)
    assert sorted(r.get("tool_result") is not None for r in rules) == [False, True, True]
    # the recorded writes are what the loop read through the recorder, and each turn had 7-byte writes
    assert recorded_answers(recorded.directory, dialect) == loop.bodies()
    for scenario in recordings(recorded.directory, dialect):
        assert scenario.recording is not None and scenario.recording.end == "completed"
        assert max(len(write.data) for write in scenario.recording.writes) == 7


@pytest.mark.parametrize("dialect", LOOPS)
def test_mockstream_serve_replays_the_recorded_loop_in_order_byte_for_byte(recorded, replay, dialect):
    before = recorded.loops[dialect]
    for _ in range(2):  # and again: nothing on the server moved on
        again = LOOPS[dialect](replay.base_url)
        assert (again.answer, again.calls) == (NOON, THREE_TURN_CALLS)
        assert [x.request for x in again.exchanges] == [x.request for x in before.exchanges]
        assert again.bodies() == before.bodies()
        assert [x.headers["content-type"] for x in again.exchanges] == ["text/event-stream; charset=utf-8"] * 3


def test_a_request_the_recording_never_saw_is_refused_naming_the_closest(replay):
    """Replaying recordings, a miss is an error (no made-up answer): a tool result the loop never sent."""
    messages = [
        {"role": "user", "content": QUESTION},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "Snow."},
    ]
    response = httpx.post(f"{replay.base_url}/chat/completions", timeout=10,
                          json={"model": MODEL, "messages": messages, "stream": True})
    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] == "no_scenario_matched"
    assert "tool_result" in response.text


# ---------------------------------------------------------------- 3. the replay in parallel ---
PARALLEL_TESTS = """
import base64
import json
import os

import pytest

from test_agent_loops import LOOPS, NOON, THREE_TURN_CALLS

URL = os.environ["AGENT_LOOP_URL"] + "/v1"
with open("expected.json") as file:  # the recorded answers of each dialect, by turn
    EXPECTED = {dialect: [base64.b64decode(body) for body in bodies] for dialect, bodies in json.load(file).items()}


@pytest.mark.parametrize("dialect", ["chat", "responses"])
@pytest.mark.parametrize("run", range(4))
def test_the_loop(dialect, run):
    loop = LOOPS[dialect](URL)
    assert (loop.answer, loop.calls) == (NOON, THREE_TURN_CALLS)
    assert loop.bodies() == EXPECTED[dialect]
"""


# Not loaded by the generated run: each xdist worker would spend seconds importing them.
UNUSED_PLUGINS = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-p", "no:faker", "-p", "no:anyio",
                  "-p", "no:aiohttp", "-p", "no:asyncio")


def test_parallel_tests_replay_the_loop_from_one_server_under_xdist(recorded, replay, pytester, monkeypatch):
    monkeypatch.setenv("AGENT_LOOP_URL", replay.url)
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parent), prepend=os.pathsep)  # the loops are this module's
    expected = {d: [base64.b64encode(body).decode() for body in recorded_answers(recorded.directory, d)] for d in LOOPS}
    pytester.path.joinpath("expected.json").write_text(json.dumps(expected))
    pytester.makepyfile(test_parallel=PARALLEL_TESTS)
    result = pytester.runpytest_subprocess("-n", "2", "-v", *UNUSED_PLUGINS, timeout=60)
    result.assert_outcomes(passed=8)
    ran_on = re.findall(r"^\[(gw\d)\] .*PASSED test_parallel.py::test_the_loop", str(result.stdout), re.MULTILINE)
    assert len(ran_on) == 8 and set(ran_on) == {"gw0", "gw1"}, str(result.stdout)  # two processes ran loops


def test_two_workers_answer_any_turn_of_loops_running_at_once(recorded, tmp_path):
    expected = {dialect: recorded_answers(recorded.directory, dialect) for dialect in LOOPS}
    runs: list[tuple[str, Loop | BaseException]] = []
    with serve(tmp_path, "--workers", "2", "--scenarios", str(recorded.directory)) as served:
        start = threading.Barrier(8)

        def run(dialect: str) -> None:
            start.wait()
            try:  # a new connection for each call, so the kernel picks a worker for each turn
                runs.append((dialect, LOOPS[dialect](served.base_url, Connection="close")))
            except BaseException as exc:
                runs.append((dialect, exc))

        threads = [threading.Thread(target=run, args=(d,)) for d in ("chat", "responses") * 4]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    assert len(runs) == 8
    workers_of_runs = []
    for dialect, loop in runs:
        assert isinstance(loop, Loop), f"{dialect}: {loop!r}"
        assert (loop.answer, loop.calls) == (NOON, THREE_TURN_CALLS)
        assert loop.bodies() == expected[dialect]
        workers_of_runs.append({x.headers["x-mockstream-worker"] for x in loop.exchanges})
    assert len(set().union(*workers_of_runs)) == 2, workers_of_runs
    assert any(len(workers) == 2 for workers in workers_of_runs), workers_of_runs  # one loop, two processes


# ---------------------------------------------------------------- 4. the recorded example ---
# The upstream the example was recorded from, as its descriptions give it to `mockstream serve --scenarios-inline`.
EXAMPLE_UPSTREAM = (
    "{name: weather-loop, match: {tools: [get_weather]}, ttft_ms: 300, itl_ms: 40, turns: "
    "[{tool_calls: [{name: get_weather, arguments: {city: Paris}}]}, {content: It is sunny in Paris.}]}"
)
SCHEMA_LINE = "# yaml-language-server: $schema=../../mockstream/plan/scenario.schema.json"


def example_files() -> dict[str, dict[str, Any]]:
    return {path.name: read_yaml(path) for path in sorted(EXAMPLE.glob("*.yaml"))}


def test_the_recorded_example_validates_explains_itself_and_replays_through_openai_python(tmp_path):
    assert sorted(p.name for p in EXAMPLE.iterdir()) == list(example_files()), "only scenario files"
    assert len(example_files()) == 2
    validated = subprocess.run([MOCKSTREAM, "validate", str(EXAMPLE)], capture_output=True, text=True, timeout=30,
                               env=clean_env())
    assert validated.returncode == 0, validated.stdout + validated.stderr
    assert validated.stdout.count("ok ") == 2, validated.stdout

    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(scenario_schema())
    for name, document in example_files().items():
        path = EXAMPLE / name
        first = path.read_text(encoding="utf-8").splitlines()[0]
        assert first == SCHEMA_LINE and (EXAMPLE / first.partition("$schema=")[2]).is_file(), path
        assert [e.message for e in validator.iter_errors(document)] == [], path
        description = " ".join(document["description"].split())
        assert f"--scenarios-inline '{EXAMPLE_UPSTREAM}'" in description, path
        assert f"mockstream serve --scenarios {EXAMPLE.relative_to(ROOT)}" in description, path
        assert f"Turn {document['match']['turn']} of a recorded two-turn tool loop" in description, path
    with serve(tmp_path, "--scenarios", str(EXAMPLE)) as served:
        loop = chat_loop(served.base_url, ("get_weather",))
    assert (loop.answer, loop.calls) == (SUNNY, [("get_weather", {"city": "Paris"})])
    assert loop.bodies() == recorded_answers(EXAMPLE, "chat")


def test_the_recorded_example_is_what_the_recorder_makes_of_that_loop_today(tmp_path):
    """Recorded again from the upstream its descriptions name, the example comes out the same (but for the
    times: this upstream runs at speed 0): the same files, rules, request, headers and bytes in the same writes.
    When the answers change on purpose, record it again as its descriptions say."""
    committed = example_files()
    out = tmp_path / "again"
    with MockServer([Scenario.from_dict(yaml.safe_load(EXAMPLE_UPSTREAM))], speed=0) as upstream:
        recorder = MockServer(record_all=True, on_miss="proxy")
        attach(recorder.app, upstream.url, out)
        with recorder:
            chat_loop(recorder.base_url, ("get_weather",))
    again = {path.name: read_yaml(path) for path in sorted(out.glob("*.yaml"))}
    assert list(again) == list(committed)

    def kept(recording: dict[str, Any]) -> dict[str, Any]:
        headers = {k: v for k, v in recording["headers"].items() if k != "x-mockstream-worker"}  # the upstream's pid
        return {**recording, "headers": headers, "writes": [w["text"] for w in recording["writes"]], "upstream": ""}

    for name, document in committed.items():
        assert again[name]["match"] == document["match"], name
        assert kept(again[name]["recording"]) == kept(document["recording"]), name
    # the committed times are the upstream's pacing: the first token 300 ms in, then one every 40 ms or so
    for document in committed.values():
        times = [write["at_ms"] for write in document["recording"]["writes"]]
        assert times == sorted(times) and times[0] < 100 and 300 <= times[1] < 400, times
        assert all(30 <= later - earlier <= 60 for earlier, later in itertools.pairwise(times[1:-2])), times
