#!/usr/bin/env python3
"""What the pytest plugin costs a test session, measured in fresh processes (median over --reps):

    python bench/plugin.py                   # all: start, reset and tests, 3 reps
    python bench/plugin.py tests --reps 5

start   the fixture's first start, broken down: `import aiohttp.web`, the rest of `import mockstream.testing`,
        `MockServer(...).start()` (a thread, its loop, a bound socket); then the setup time pytest reports for
        a first test asking for `mockstream`, with pytest-aiohttp loaded (it imports aiohttp before any test)
        and without it (the fixture pays for the import).
reset   `MockHandle.reset()` over 1000 calls, and a whole per-test fixture cycle (reset, errors, reset).
tests   200 tiny streaming tests (a parametrize: each scripts a short answer and streams it with openai-python
        through `mockstream.openai()`), wall time of the inner pytest session, beside the same 200 tests doing
        nothing (pytest's own cost) and only asking for the fixture.

Run by hand, never as a timed test. The numbers move with the machine: compare runs made side by side.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

START = """
import json, time
marks = [(time.perf_counter(), time.process_time())]
import aiohttp.web
marks.append((time.perf_counter(), time.process_time()))
from mockstream.testing import MockServer
marks.append((time.perf_counter(), time.process_time()))
server = MockServer(speed=0)
marks.append((time.perf_counter(), time.process_time()))
server.start()
marks.append((time.perf_counter(), time.process_time()))
server.stop()
steps = ["import aiohttp.web", "import mockstream.testing (rest)", "MockServer() (create_app)", "MockServer.start()"]
result = {}
for step, (wall0, cpu0), (wall1, cpu1) in zip(steps, marks, marks[1:]):
    result[step] = wall1 - wall0
    result[step + ", cpu"] = cpu1 - cpu0
print(json.dumps(result))
"""

RESET = """
import json, time
from mockstream.testing import MockHandle, MockServer
with MockServer(speed=0) as server:
    handle = MockHandle(server)
    for _ in range(100):
        handle.reset()
    t0 = time.perf_counter()
    for _ in range(1000):
        handle.reset()
    t1 = time.perf_counter()
    for _ in range(1000):
        handle = MockHandle(server)
        handle.reset()
        handle.errors()
        handle.reset()
    t2 = time.perf_counter()
print(json.dumps({"MockHandle.reset()": (t1 - t0) / 1000, "fixture cycle (reset, errors, reset)": (t2 - t1) / 1000}))
"""

FIRST_TEST = "def test_first(mockstream):\n    pass\n"

TINY = {
    "nothing": "import pytest\n\n@pytest.mark.parametrize('n', range(200))\ndef test_tiny(n):\n    pass\n",
    "fixture only": (
        "import pytest\n\n@pytest.mark.parametrize('n', range(200))\ndef test_tiny(mockstream, n):\n    pass\n"
    ),
    "streaming (openai)": """
import pytest

MESSAGES = [{"role": "user", "content": "Hi"}]


@pytest.mark.parametrize("n", range(200))
def test_tiny(mockstream, n):
    mockstream.script(content=f"tiny answer {n}")
    with mockstream.openai(max_retries=0) as client:
        stream = client.chat.completions.create(model="gpt-4o-mini", stream=True, messages=MESSAGES)
        text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == f"tiny answer {n}"
""",
}
# The same with the TLS set-up httpx does by default (the CA store loaded for every client), to show its cost.
TINY["streaming (openai), CA store loaded"] = (
    TINY["streaming (openai)"]
    .replace(
        "mockstream.openai(max_retries=0)", "mockstream.openai(max_retries=0, http_client=openai.DefaultHttpxClient())"
    )
    .replace("import pytest", "import openai\nimport pytest")
)


def run_python(code: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def run_pytest(directory: Path, *args: str) -> tuple[float, float, str]:
    """Wall time, CPU time (user + system, less sensitive to a busy machine) and output of an inner session."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", *args]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, cwd=directory, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"inner pytest failed:\n{done.stdout}\n{done.stderr}")
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return wall, cpu, done.stdout


def session(files: dict[str, str]) -> tempfile.TemporaryDirectory:
    holder = tempfile.TemporaryDirectory()
    root = Path(holder.name)
    (root / "pytest.ini").write_text("[pytest]\n")
    for name, text in files.items():
        (root / name).write_text(text)
    return holder


def report(title: str, samples: list[dict[str, float]], unit: float, unit_name: str) -> None:
    print(f"\n{title} (median of {len(samples)})")
    for key in samples[0]:
        values = [sample[key] * unit for sample in samples]
        print(f"  {key:45s} {statistics.median(values):9.2f} {unit_name}  (min {min(values):.2f})")


def bench_start(reps: int) -> None:
    report("first start, fresh process", [run_python(START) for _ in range(reps)], 1000, "ms")
    samples = []
    with session({"test_first.py": FIRST_TEST}) as directory:
        for _ in range(reps):
            sample = {}
            for label, args in (("with pytest-aiohttp", ()), ("without pytest-aiohttp", ("-p", "no:aiohttp"))):
                *_, out = run_pytest(Path(directory), "--durations=0", "--durations-min=0", *args)
                setup = re.search(r"([\d.]+)s setup\s+test_first.py::test_first", out)
                sample[f"pytest setup of the first test, {label}"] = float(setup[1]) if setup else float("nan")
            samples.append(sample)
    report("first start, as pytest reports it", samples, 1000, "ms")


def bench_reset(reps: int) -> None:
    report("per test", [run_python(RESET) for _ in range(reps)], 1_000_000, "us")


def bench_tests(reps: int) -> None:
    samples = []
    for _ in range(reps):
        sample = {}
        for label, text in TINY.items():
            with session({"test_tiny.py": text}) as directory:
                wall, cpu, _ = run_pytest(Path(directory))
                sample[f"200 tests, {label}: wall"], sample[f"200 tests, {label}: cpu"] = wall, cpu
        samples.append(sample)
    report("200 tiny tests, whole inner session", samples, 1, "s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("metrics", nargs="*", choices=("start", "reset", "tests", "all"), default="all")
    parser.add_argument("--reps", type=int, default=3)
    options = parser.parse_args()
    metrics = options.metrics
    for metric in ("start", "reset", "tests") if metrics == "all" or "all" in metrics else metrics:
        {"start": bench_start, "reset": bench_reset, "tests": bench_tests}[metric](options.reps)


if __name__ == "__main__":
    main()
