"""`mockstream serve | validate`: flags, each also read from a MOCKSTREAM_<FLAG> environment variable.

A flag on the command line wins over its variable. Heavy imports (aiohttp, Faker) wait until a
command needs them, so `mockstream --help` answers at once.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from . import __version__
from .errors import ScenarioError

ENV_PREFIX = "MOCKSTREAM_"
LOG_LEVELS = ("debug", "info", "warning", "error")


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise ValueError(f"port must be 0..65535, got {value}")
    return value


def _speed(text: str) -> float:
    value = float(text)
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"speed must be a finite number >= 0, got {text}")
    return value


def _seed(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(f"seed must be >= 0, got {value}")
    return value


def _positive(value: int) -> int:
    if value < 1:
        raise ValueError(f"must be at least 1, got {value}")
    return value


def _route(text: str) -> tuple[str, str]:
    from .server import DIALECT_NAMES

    path, _, dialect = text.partition("=")
    if not path.startswith("/") or dialect not in DIALECT_NAMES:
        raise ValueError(
            f"expected PATH=DIALECT with PATH starting with / and DIALECT one of "
            f"{', '.join(DIALECT_NAMES)}, got {text!r}"
        )
    return path, dialect


def _directory(text: str) -> str:
    if not os.path.isdir(text):
        raise ValueError(f"not a directory: {text}")
    return text


def _level(text: str) -> str:
    if text.lower() not in LOG_LEVELS:
        raise ValueError(f"expected one of {', '.join(LOG_LEVELS)}, got {text!r}")
    return text.lower()


@dataclass(frozen=True)
class Flag:
    name: str
    parse: Callable[[str], Any]
    default: Any
    help: str
    many: bool = False  # repeatable on the command line; comma-separated in the environment variable

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper().replace("-", "_")


SERVE_FLAGS = (
    Flag("host", str, "127.0.0.1", "address to listen on (0.0.0.0 in a container)"),
    Flag("port", _port, 8000, "port to listen on; 0 picks a free one"),
    Flag("scenarios", str, None, "directory (or file) of YAML/JSON scenario files to load"),
    Flag("seed", _seed, 0, "server seed: the same seed and request give byte-identical answers"),
    Flag("speed", _speed, 1.0, "divide every pacing delay by this; 0 streams with no delay at all"),
    Flag("journal-size", lambda text: _positive(int(text)), 1000, "how many requests the journal keeps"),
    Flag("log-level", _level, "info", f"one of {', '.join(LOG_LEVELS)}; debug also logs every request"),
    Flag("cors-origin", str, ["*"], "an origin browsers may call from (repeat for several)", many=True),
    Flag(
        "route",
        _route,
        [],
        "PATH=DIALECT: also serve a dialect (chat, completions, responses, messages) "
        "at PATH, e.g. /api/chat=chat (repeat for several)",
        many=True,
    ),
    Flag("static", _directory, None, "serve this folder at / (your app's page, same origin as the mock)"),
)


class UsageError(Exception):
    """A bad flag or environment variable: printed as one line, exit code 2."""


def _env_defaults(flags: Sequence[Flag], environ: dict[str, str]) -> dict[str, Any]:
    values = {}
    for flag in flags:
        raw = environ.get(flag.env)
        if raw is None or raw == "":
            values[flag.name.replace("-", "_")] = flag.default
            continue
        try:
            if flag.many:
                values[flag.name.replace("-", "_")] = [flag.parse(item.strip()) for item in raw.split(",") if item]
            else:
                values[flag.name.replace("-", "_")] = flag.parse(raw)
        except ValueError as exc:
            raise UsageError(f"{flag.env}={raw!r}: {exc}") from None
    return values


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mockstream",
        description="A mock server for OpenAI-style streaming APIs that misbehaves on demand.",
    )
    parser.add_argument("--version", action="version", version=f"mockstream {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="run the mock server",
        description="Run the mock server. Every flag can also be set with the "
        "environment variable shown; the flag wins.",
    )
    for flag in SERVE_FLAGS:
        serve.add_argument(
            f"--{flag.name}",
            type=_argparse_type(flag),
            default=argparse.SUPPRESS,
            action="append" if flag.many else "store",
            help=f"{flag.help} (env {flag.env}; default: {flag.default})",
        )
    validate = commands.add_parser("validate", help="check scenario files and report every problem")
    validate.add_argument("paths", nargs="+", help="scenario files or directories")
    return parser


def _argparse_type(flag: Flag) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            return flag.parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = flag.name
    return convert


def main(argv: Sequence[str] | None = None, environ: dict[str, str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    environ = dict(os.environ if environ is None else environ)
    try:
        if args.command == "serve":
            options = {**_env_defaults(SERVE_FLAGS, environ), **vars(args)}
            return _serve(options)
        if args.command == "validate":
            return _validate(args.paths)
    except (UsageError, ScenarioError) as exc:
        print(f"mockstream: {exc}", file=sys.stderr)
        return 2
    parser.print_help()
    return 0


def _validate(paths: Sequence[str]) -> int:
    from .scenario import load_scenarios

    scenarios = load_scenarios(*paths)
    for scenario in scenarios:
        print(f"ok  {scenario.name:24s} {scenario.source}")
    return 0


def _serve(options: dict[str, Any]) -> int:
    import asyncio
    import logging

    from .scenario import load_scenarios
    from .server import create_app

    logging.basicConfig(level=options["log_level"].upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    scenarios = load_scenarios(options["scenarios"]) if options["scenarios"] else []
    app = create_app(
        scenarios,
        seed=options["seed"],
        speed=options["speed"],
        journal_size=options["journal_size"],
        cors_origins=options["cors_origin"],
        routes=dict(options["route"]),
        static=options["static"],
    )
    try:
        import uvloop
    except ImportError:
        runner: Callable = asyncio.run
    else:
        runner = uvloop.run
    try:
        runner(_run(app, options))
    except OSError as exc:
        print(
            f"mockstream: cannot listen on {options['host']}:{options['port']}: {exc.strerror or exc}", file=sys.stderr
        )
        return 1
    return 0


async def _run(app, options: dict[str, Any]) -> None:
    import asyncio
    import signal

    from aiohttp import web

    from .server import SCENARIOS

    access = options["log_level"] == "debug"
    runner = web.AppRunner(
        app, handler_cancellation=True, access_log=None if not access else web.access_logger, shutdown_timeout=5.0
    )
    # Signals are handled before the URL is printed: a supervisor may send SIGTERM as soon as it sees it.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await runner.setup()
    site = web.TCPSite(runner, options["host"], options["port"])
    await site.start()
    host, port = runner.addresses[0][:2]
    shown = f"[{host}]" if ":" in host else host
    print(
        f"mockstream {__version__} listening on http://{shown}:{port} (base_url http://{shown}:{port}/v1, "
        f"{len(app[SCENARIOS])} scenarios loaded)",
        flush=True,
    )
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
