"""The examples of the README and the docs (docs/) as a user copies them: the pytest files run in a fresh
project (pytester, an ini of its own without this repository's `asyncio_mode = "auto"`), the other Python
snippets run as scripts (those that call a server, against a real one), and
what it lists (ready scenarios, the knobs an error names) is what the checkout and the server really have."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from mockstream.testing import MockServer

ROOT = Path(__file__).resolve().parent.parent
# The README and the docs site's pages (docs/*.md), read as one text: a section is found wherever it lives.
README = "\n".join(
    path.read_text(encoding="utf-8") for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
)
HEADING = re.compile(r"^(#{1,6}) (.+)$")


def sections(text: str) -> dict[str, str]:
    """Each heading's own text (up to the next heading of any level), fenced blocks kept whole: a `# comment`
    inside a code block is not a heading."""
    found: dict[str, list[str]] = {}
    current, fenced = "", False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        heading = None if fenced else HEADING.match(line)
        if heading:
            current = heading.group(2).strip()
            found.setdefault(current, [])
        else:
            found.setdefault(current, []).append(line)
    return {name: "\n".join(lines) for name, lines in found.items()}


def python_blocks(section: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", section, flags=re.MULTILINE | re.DOTALL)


SECTIONS = sections(README)
TESTED = ("In your tests", "Test helpers", "Embeddings")  # the sections whose Python blocks run here
EXAMPLES = [block for name in TESTED for block in python_blocks(SECTIONS[name])]
TEST_FILES = [block for block in EXAMPLES if re.search(r"^(async )?def test_", block, re.MULTILINE)]
SCRIPTS = [block for block in EXAMPLES if block not in TEST_FILES]


def test_the_sections_hold_the_examples_this_module_runs():
    assert len(TEST_FILES) >= 1 and len(SCRIPTS) >= 1, EXAMPLES
    assert any("async def test_" in block for block in TEST_FILES)  # the one that needs pytest-asyncio


@pytest.mark.parametrize("number", range(len(TEST_FILES)))
def test_a_readme_test_file_passes_in_a_fresh_project(pytester: pytest.Pytester, number):
    source = TEST_FILES[number]
    tests = re.findall(r"^(?:async )?def (test_\w+)", source, re.MULTILINE)
    pytester.makefile(".ini", pytest="[pytest]\n")  # the user's own configuration: no asyncio_mode
    pytester.makepyfile(test_readme=source)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v", timeout=120)
    output = str(result.stdout) + str(result.stderr)
    result.assert_outcomes(passed=len(tests))
    for test in tests:
        assert f"test_readme.py::{test} PASSED" in output, output


@pytest.mark.parametrize("number", range(len(SCRIPTS)))
def test_a_readme_snippet_runs_as_a_script(tmp_path, number):
    script = tmp_path / "snippet.py"
    script.write_text(SCRIPTS[number], encoding="utf-8")
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------- what the README lists ---
def test_the_ready_scenarios_table_lists_every_file_with_its_name():
    table = SECTIONS["Ready scenarios"]
    listed = re.findall(r"^\| `([a-z0-9-]+)` \|", table, re.MULTILINE)
    files = sorted(p for p in (ROOT / "scenarios").iterdir() if p.suffix in (".yaml", ".yml", ".json"))
    names = [yaml.safe_load(p.read_text(encoding="utf-8"))["name"] for p in files]
    assert sorted(listed) == sorted(names)
    assert [p.stem for p in files] == sorted(names)  # each file is named after its scenario


def test_the_knob_lists_the_readme_shows_are_what_the_server_and_validate_print(tmp_path):
    with MockServer() as server:
        answer = httpx.post(f"{server.base_url}/chat/completions", timeout=10, json={
            "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "mockstream": {"chunk_byte": 1}})
    assert answer.status_code == 400
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nchunk_byte: 1\nfinish_reason: done\nmatch:\n  modle: gpt\n")
    validated = subprocess.run([sys.executable, "-m", "mockstream", "validate", "bad.yaml"], cwd=tmp_path,
                               capture_output=True, text=True, timeout=60)
    assert validated.returncode == 2

    shown = [line for line in README.splitlines() if "unknown knob (did you mean 'chunk_bytes'?)" in line]
    assert len(shown) == 2, shown
    [from_validate] = [line for line in shown if line.startswith("mockstream: bad.yaml:")]
    [from_server] = [line for line in shown if line.startswith('{"error"')]
    assert from_validate == validated.stderr.splitlines()[0]
    assert answer.text == from_server
    readme_validate = README[README.index("$ mockstream validate bad.yaml\n"):].split("```")[0].splitlines()[1:]
    assert readme_validate == validated.stderr.splitlines()


def test_determinism_names_every_knob_left_out_of_the_seed():
    from mockstream.plan.plan import DELIVERY_KNOBS

    text = " ".join(SECTIONS["Determinism"].split())
    for knob in DELIVERY_KNOBS:
        assert f"`{knob}`" in text, knob
    assert "left out of the seed" in text and "same ids and text" in text


# ---------------------------------------------------------------- what the README says the faults send ---
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def chat(server: MockServer, stream: bool = True, **knobs) -> httpx.Response:
    return httpx.post(f"{server.base_url}/chat/completions", json={**CHAT, "stream": stream, "mockstream": knobs},
                      timeout=30)


@pytest.mark.parametrize(
    ("fault", "says"),
    [
        ({"retry_after": 1}, "Please try again in 1s."),
        ({"retry_after": 0.5}, "Please try again in 0.5s."),
        ({"retry_after_ms": 2500}, "Please try again in 2.5s."),
        ({}, "Please try again in 20s."),
    ],
)
def test_a_429_says_the_wait_it_advertises(server, fault, says):
    answer = chat(server, fault={"kind": "http_error", "status": 429, **fault})
    assert answer.status_code == 429
    message = answer.json()["error"]["message"]
    assert message.endswith(says), message
    assert message.count("try again") == 1
    wait = says.removeprefix("Please try again in ").removesuffix("s.")
    assert answer.headers["x-ratelimit-reset-requests"] == f"{wait}s"  # the same wait as the rate-limit header


def test_openai_processing_ms_is_the_time_planned_before_the_headers(make_server):
    server = make_server(speed=1)
    slow = {"content": "one two three four", "ttft_ms": 300, "itl_ms": 100}
    refused = chat(server, **slow, fault={"kind": "http_error", "status": 503})
    assert refused.status_code == 503
    assert refused.headers["openai-processing-ms"] == "0"  # refused at once: nothing was generated
    delayed = chat(server, **slow, fault={"kind": "slow_headers", "ms": 120})
    assert delayed.status_code == 200 and delayed.text.endswith("data: [DONE]\n\n")
    assert delayed.headers["openai-processing-ms"] == "120"  # a stream's headers leave before its first token
    streamed = chat(server, **slow)
    assert streamed.headers["openai-processing-ms"] == "0"
    whole = chat(server, stream=False, **slow)  # a non-streamed answer comes after its whole generation
    assert whole.status_code == 200
    assert int(whole.headers["openai-processing-ms"]) >= 300 + 3 * 100 - 1, whole.headers


# ---------------------------------------------------------------- the examples that call a running server ---
SERVED = {  # section -> lines the script prints, against a server at the address the docs give
    "From openai-python": ["你好!"],
    "Gemini": ["thought Let", "thought  me", "text Hello", "text !"],
}


@pytest.mark.parametrize("section", SERVED)
def test_an_example_that_calls_the_server_runs_against_a_real_one(tmp_path, section):
    block = python_blocks(SECTIONS[section])[0]  # (the README's quick start and its docs page hold the same)
    assert "http://127.0.0.1:8000" in block  # the address `mockstream serve` listens on by default
    with MockServer(speed=0) as server:
        script = tmp_path / "example.py"
        script.write_text(block.replace("http://127.0.0.1:8000", server.url), encoding="utf-8")
        result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                                timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    printed = result.stdout.splitlines()
    assert all(line in printed for line in SERVED[section]), printed
