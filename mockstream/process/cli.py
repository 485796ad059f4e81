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
from dataclasses import dataclass
from typing import Any

from .. import __version__
from ..errors import ScenarioError

ENV_PREFIX = "MOCKSTREAM_"
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")
SWITCH = {"on": True, "off": False, "true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"expected a whole number, got {text!r}") from None


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"expected a number, got {text!r}") from None


def _port(text: str) -> int:
    value = _int(text)
    if not 0 <= value <= 65535:
        raise ValueError(f"port must be 0..65535, got {value}")
    return value


def _speed(text: str) -> float:
    value = _float(text)
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"speed must be a finite number >= 0, got {text}")
    return value


def _seed(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise ValueError(f"seed must be >= 0, got {value}")
    return value


def _positive(value: int) -> int:
    if value < 1:
        raise ValueError(f"must be at least 1, got {value}")
    return value


def _route(text: str) -> tuple[str, str]:
    from ..dialects.registry import ROUTABLE

    path, _, dialect = text.partition("=")
    if not path.startswith("/") or dialect not in ROUTABLE:
        raise ValueError(
            f"expected PATH=DIALECT with PATH starting with / and DIALECT one of {', '.join(ROUTABLE)}, got {text!r}"
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


def _log_format(text: str) -> str:
    if text.lower() not in LOG_FORMATS:
        raise ValueError(f"expected one of {', '.join(LOG_FORMATS)}, got {text!r}")
    return text.lower()


def _switch(text: str) -> bool:
    if text.lower() not in SWITCH:
        raise ValueError(f"expected on or off, got {text!r}")
    return SWITCH[text.lower()]


def _seconds(text: str) -> float:
    value = _float(text)
    if not 0 <= value < float("inf"):
        raise ValueError(f"expected a number of seconds >= 0, got {text}")
    return value


def _workers(text: str) -> int:
    value = _positive(_int(text))
    if value > 1 and not hasattr(os, "fork"):
        raise ValueError("more than one worker needs fork(), which this system does not have")
    return value


def _upstream(text: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(f"expected the upstream's base URL, http(s)://HOST[:PORT][/PREFIX], got {text!r}")
    if "@" in parts.netloc:
        raise ValueError(
            "the upstream URL holds credentials (user:password@), which would be written to every recording: "
            "give the URL without them and send the credentials as headers from the client (Authorization, "
            "x-api-key)"
        )
    return text.rstrip("/")


ON_MISS = ("error", "proxy", "default")


def _on_miss(text: str) -> str:
    if text.lower() not in ON_MISS:
        raise ValueError(f"expected one of {', '.join(ON_MISS)}, got {text!r}")
    return text.lower()


def _regex(text: str) -> str:
    try:
        re.compile(text)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression: {exc} in {text!r}") from None
    return text


@dataclass(frozen=True)
class Flag:
    name: str
    parse: Callable[[str], Any]
    default: Any
    help: str
    many: bool = False  # repeatable on the command line; comma-separated in the environment variable
    separator: str | None = ","  # how the variable of a `many` flag separates its values (None: it holds one)
    bare: bool = False  # `--strict` alone means on (its variable takes on/off)

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper().replace("-", "_")


RECORD_ONLY = (
    Flag("out", str, "recordings", "directory the recordings are written to (made if missing)"),
    Flag(
        "redact",
        _regex,
        [],
        "a regex whose matches never reach a recording, in request bodies and answers alike (repeat for "
        "several; the variable holds one: join several with |)",
        many=True,
        separator=None,
    ),
    Flag(
        "upstream-timeout",
        _seconds,
        60.0,
        "seconds the upstream may stay silent (before its headers or in a stream); then the recording ends",
    ),
)
SERVE_FLAGS = (
    Flag("host", str, "127.0.0.1", "address to listen on (0.0.0.0 in a container)"),
    Flag("port", _port, 8000, "port to listen on; 0 picks a free one"),
    Flag("scenarios", str, None, "directory (or file) of YAML/JSON scenario files to load"),
    Flag(
        "scenarios-inline",
        str,
        None,
        "YAML or JSON text of one scenario, a list of them, or {scenarios: [...]} (for CI services, "
        "which cannot mount files)",
    ),
    Flag("seed", _seed, 0, "server seed: the same seed and request give byte-identical answers"),
    Flag("speed", _speed, 1.0, "divide every pacing delay by this; 0 streams with no delay at all"),
    Flag("journal-size", lambda text: _positive(_int(text)), 1000, "how many requests the journal keeps"),
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
    Flag("log-format", _log_format, "text", "text or json: the access log on stdout and other logs on stderr"),
    Flag("access-log", _switch, True, "on or off: one line per request on stdout"),
    Flag(
        "shutdown-grace",
        _seconds,
        5.0,
        "on SIGTERM/SIGINT, seconds to let streams in flight finish before closing them",
    ),
    Flag("read-timeout", _seconds, 60.0, "seconds a request's body may take to arrive; then a 408 and a close"),
    Flag(
        "workers",
        _workers,
        1,
        "processes sharing the port (SO_REUSEPORT); each has its own journal and sequence positions",
    ),
    Flag(
        "upstream",
        _upstream,
        None,
        "the real (or compatible) server, by base URL (https://api.openai.com): a request no scenario matches "
        "is forwarded there and recorded (see --on-miss)",
    ),
    Flag(
        "on-miss",
        _on_miss,
        None,
        "what answers a request no scenario matches: error (a 404 naming the closest scenarios), proxy (the "
        "upstream, recorded) or default (the built-in answer); unset: proxy with --upstream, else error when "
        "a loaded scenario holds a recording, else default; proxy forwards a miss to the upstream even with "
        "--strict",
    ),
    Flag(
        "strict",
        _switch,
        False,
        "a request no scenario matches gets the 404 naming the closest ones; with --upstream (--on-miss proxy) "
        "a miss still goes to the upstream and is recorded",
        bare=True,
    ),
    *RECORD_ONLY,
)
# `mockstream record`: the proxy and the server settings that still mean something with no scenarios.
_RECORD_SHARED = (
    "host", "port", "journal-size", "log-level", "cors-origin", "route", "log-format", "access-log",
    "shutdown-grace", "read-timeout",
)  # fmt: skip
RECORD_FLAGS = (
    Flag(
        "upstream",
        _upstream,
        None,
        "the real (or compatible) server every request is forwarded to, by base URL "
        "(https://api.openai.com, https://api.anthropic.com); required",
    ),
    *RECORD_ONLY,
    *(flag for flag in SERVE_FLAGS if flag.name in _RECORD_SHARED),
)


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
        type=_argparse_type(Flag("wait", _seconds, 0.0, "")),
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
