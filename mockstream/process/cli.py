"""`mockstream serve | record | validate | health | schema`: flags, each also read from a MOCKSTREAM_<FLAG>
environment variable.

A flag on the command line wins over its variable. Heavy imports (aiohttp, Faker) wait until a
command needs them, so `mockstream --help` and `mockstream health` answer at once.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .. import __version__
from ..errors import ScenarioError
from .flags import ENV_PREFIX, RECORD_FLAGS, SERVE_FLAGS, Flag, seconds


class UsageError(Exception):
    """A bad flag or environment variable: printed as one line, exit code 2."""


def _env_defaults(flags: Sequence[Flag], environ: dict[str, str], given: Iterable[str] = ()) -> dict[str, Any]:
    """Each flag's value from its variable, else its default; a flag given on the command line wins, so its
    variable is not even read (a stale variable never stops a command that overrides it)."""
    _warn_misspelt((*SERVE_FLAGS, *RECORD_FLAGS), environ)
    given = set(given)
    values = {}
    for flag in flags:
        if flag.name.replace("-", "_") in given:
            continue
        raw = environ.get(flag.env)
        if raw is None or raw == "":
            values[flag.name.replace("-", "_")] = flag.default
            continue
        try:
            if flag.many and flag.separator is None:
                values[flag.name.replace("-", "_")] = [flag.parse(raw)]
            elif flag.many:
                values[flag.name.replace("-", "_")] = [
                    flag.parse(item.strip()) for item in raw.split(flag.separator) if item
                ]
            else:
                values[flag.name.replace("-", "_")] = flag.parse(raw)
        except ValueError as exc:
            raise UsageError(f"{flag.env}={raw!r}: {exc}") from None
    return values


def _warn_misspelt(flags: Sequence[Flag], environ: dict[str, str]) -> None:
    """A MOCKSTREAM_* variable close to a real one is most likely a typo: say so (other names are left alone,
    since projects use MOCKSTREAM_* for their own settings too)."""
    import difflib

    known = [flag.env for flag in flags]
    for name in environ:
        if name.startswith(ENV_PREFIX) and name not in known:
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.85)
            if close:
                print(
                    f"mockstream: warning: {name} is not a setting (did you mean {close[0]}?); ignored", file=sys.stderr
                )


def _parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The top-level parser, and each command's own parser by name."""
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
    _add_flags(serve, SERVE_FLAGS)
    record = commands.add_parser(
        "record",
        help="forward every request to an upstream and record each exchange as a scenario file",
        description="Run a proxy to the upstream: every API request is forwarded, its answer streams back as "
        "it arrives, and each exchange is written to --out as a scenario file that `mockstream serve "
        "--scenarios DIR` replays. Every flag can also be set with the environment variable shown; the flag "
        "wins.",
    )
    _add_flags(record, RECORD_FLAGS)
    validate = commands.add_parser("validate", help="check scenario files and report every problem")
    validate.add_argument("paths", nargs="+", help="scenario files or directories")
    commands.add_parser(
        "schema",
        help="print the JSON Schema of scenario files (for editors)",
        description="Print the JSON Schema (draft 2020-12) of scenario files on stdout.",
    )
    health = commands.add_parser(
        "health",
        help="exit 0 when a server answers /healthz (for a HEALTHCHECK and CI scripts)",
        description="Exit 0 when the server answers GET /healthz with 200, else 1 with the reason.",
    )
    health.add_argument(
        "--url",
        type=_argparse_type(Flag("url", _health_url, None, "")),
        default=None,
        help="the server (http://HOST:PORT) or its health URL (default: built from MOCKSTREAM_HOST and "
        "MOCKSTREAM_PORT, else http://127.0.0.1:8000/healthz)",
    )
    health.add_argument(
        "--wait",
        type=_argparse_type(Flag("wait", seconds, 0.0, "")),
        default=0.0,
        metavar="SECONDS",
        help="keep trying for up to SECONDS until it answers (default: one try)",
    )
    return parser, dict(commands.choices)


def _add_flags(command: argparse.ArgumentParser, flags: Sequence[Flag]) -> None:
    for flag in flags:
        shown = f"{flag.help} (env {flag.env}{_shown_default(flag.default)})"
        if flag.bare:
            command.add_argument(
                f"--{flag.name}", action="store_const", const=True, default=argparse.SUPPRESS, help=shown
            )
            continue
        command.add_argument(
            f"--{flag.name}",
            type=_argparse_type(flag),
            default=argparse.SUPPRESS,
            action="append" if flag.many else "store",
            help=shown,
        )


def _health_url(text: str) -> str:
    from .health import health_url

    return health_url(text)


def _shown(default: Any) -> str:
    """A default as a user would type it: on/off, a list comma-separated (as its variable takes it)."""
    if isinstance(default, bool):
        return "on" if default else "off"
    if isinstance(default, (list, tuple)):
        return ",".join(_shown(item) for item in default)
    return "" if default is None else str(default)


def _shown_default(default: Any) -> str:
    """`; default: VALUE` for --help, or nothing when there is no default (None, an empty list)."""
    shown = _shown(default)
    return f"; default: {shown}" if shown else ""


def _argparse_type(flag: Flag) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            return flag.parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = flag.name
    return convert


def main(argv: Sequence[str] | None = None, environ: dict[str, str] | None = None) -> int:
    parser, commands = _parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        _refuse_unknown(commands.get(getattr(args, "command", None) or "", parser), unknown)
    environ = dict(os.environ if environ is None else environ)
    try:
        if args.command == "serve":
            options = {**_env_defaults(SERVE_FLAGS, environ, vars(args)), **vars(args)}
            flag_given = "scenarios_inline" in vars(args)
            return _serve(options, "--scenarios-inline" if flag_given else ENV_PREFIX + "SCENARIOS_INLINE")
        if args.command == "record":
            return _record({**_env_defaults(RECORD_FLAGS, environ, vars(args)), **vars(args)})
        if args.command == "validate":
            return _validate(args.paths)
        if args.command == "health":
            return _health(args.url, args.wait, environ)
        if args.command == "schema":
            return _schema()
    except (UsageError, ScenarioError) as exc:
        print(f"mockstream: {exc}", file=sys.stderr)
        return 2
    parser.print_help()
    return 0


def _refuse_unknown(command: argparse.ArgumentParser, unknown: list[str]) -> None:
    """Exit 2 naming each unrecognized argument, with the command's closest flag for a misspelt one
    (`unrecognized argument --prot (did you mean --port?)`), under that command's own usage line."""
    import difflib

    known = sorted(set(re.findall(r"--[a-z][a-z-]*", command.format_help())))
    flags = [item for item in unknown if item.startswith("-")] or unknown
    problems = []
    for item in flags:
        name = item.partition("=")[0]
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6) if name.startswith("--") else []
        problems.append(f"unrecognized argument {item}" + (f" (did you mean {close[0]}?)" if close else ""))
    command.error("; ".join(problems))


def _validate(paths: Sequence[str]) -> int:
    from pathlib import Path

    from ..plan.schema import SCENARIO_SUFFIXES, load_scenarios

    empty = [
        f"{path}: no scenario files (*{', *'.join(SCENARIO_SUFFIXES)}) found in this directory"
        for path in paths
        if Path(path).is_dir() and not any(p.suffix in SCENARIO_SUFFIXES for p in Path(path).iterdir())
    ]
    try:
        scenarios = load_scenarios(*paths)
    except ScenarioError as exc:
        raise ScenarioError.merged([*empty, *exc.lines]) from None
    if empty:
        raise ScenarioError.merged(empty)
    for scenario in scenarios:
        print(f"ok  {scenario.name:24s} {scenario.source}")
    return 0


def _schema() -> int:
    import json

    from ..plan.json_schema import scenario_schema

    print(json.dumps(scenario_schema(), indent=2, ensure_ascii=False))
    return 0


def _health(url: str | None, wait: float, environ: dict[str, str]) -> int:
    from .health import check_health, default_health_url

    healthy, line = check_health(url or default_health_url(environ), wait)
    if healthy:
        print(line)
        return 0
    print(f"mockstream: {line}", file=sys.stderr)
    return 1


def _scenarios(options: dict[str, Any], inline_from: str) -> list:
    """The scenarios of `--scenarios` and `--scenarios-inline`; a name may appear only once across both."""
    from ..plan.schema import load_scenarios

    scenarios = load_scenarios(options["scenarios"]) if options["scenarios"] else []
    if options["scenarios_inline"]:
        seen = {scenario.name: scenario.source for scenario in scenarios}
        for scenario in _inline_scenarios(options["scenarios_inline"], inline_from):
            if scenario.name in seen:
                raise ScenarioError.merged(
                    [f"{inline_from}: name: scenario {scenario.name!r} is already defined in {seen[scenario.name]}"]
                )
            scenarios.append(scenario)
    return scenarios


def _inline_scenarios(text: str, source: str) -> list:
    import yaml

    from ..errors import Problem
    from ..plan.schema import parse_scenarios

    try:
        document = yaml.safe_load(text)  # YAML reads JSON too
    except yaml.YAMLError as exc:
        raise ScenarioError(source, [Problem("", f"not valid YAML or JSON: {exc}")]) from None
    return parse_scenarios(document, source)


def _serve(options: dict[str, Any], inline_from: str) -> int:
    from . import logs

    logs.configure(options["log_level"], options["log_format"])
    scenarios = _scenarios(options, inline_from)
    options["on_miss"] = on_miss(options["on_miss"], options["upstream"], scenarios)
    from .service import start

    return start(scenarios, options)


def on_miss(chosen: str | None, upstream: str | None, scenarios: Sequence[Any]) -> str:
    """`--on-miss`, or its default: proxy with an upstream, else error when a recording is loaded (a replay
    should not answer what was never recorded with made-up text), else the built-in default answer."""
    if chosen is None:
        if upstream:
            return "proxy"
        return "error" if any(scenario.recording is not None for scenario in scenarios) else "default"
    if chosen == "proxy" and not upstream:
        raise UsageError(f"--on-miss proxy needs --upstream URL (or {ENV_PREFIX}UPSTREAM): the server to forward to")
    return chosen


def _record(options: dict[str, Any]) -> int:
    if not options["upstream"]:
        raise UsageError(
            f"record needs --upstream URL (or {ENV_PREFIX}UPSTREAM): the server to forward requests to, e.g. "
            "https://api.openai.com"
        )
    from . import logs

    logs.configure(options["log_level"], options["log_format"])
    from .service import record

    return record(options)
