"""The flags of `mockstream serve` and `mockstream record`: each one's check, default and help, and the
environment variable (MOCKSTREAM_<FLAG>) it is also read from. `cli.py` builds the parsers from these tables.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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


def seconds(text: str) -> float:
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


def _state(text: str) -> str:
    """`memory`, or the URL of the Redis database every worker and replica shares (as redis-py's `from_url`
    takes it: redis://[:PASSWORD@]HOST[:PORT][/DB], rediss:// with TLS, unix:///PATH[?db=DB])."""
    from urllib.parse import urlsplit

    if text.lower() == "memory":
        return "memory"
    expected = (
        "expected memory or a Redis URL: redis://HOST[:PORT][/DB], rediss://HOST[:PORT][/DB] or "
        f"unix:///PATH[?db=DB], got {text!r}"
    )
    parts = urlsplit(text)
    try:
        parts.port  # noqa: B018 (a port that is not a number raises here)
    except ValueError:
        raise ValueError(expected) from None
    if parts.scheme == "unix":
        if not parts.path:
            raise ValueError(expected)
    elif parts.scheme in ("redis", "rediss"):
        if not parts.hostname or (parts.path.strip("/") and not parts.path.strip("/").isdigit()):
            raise ValueError(expected)
    else:
        raise ValueError(expected)
    return text


def _state_prefix(text: str) -> str:
    if not text:
        raise ValueError("must not be empty: POST /_mockstream/reset deletes every key under the prefix")
    return text


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
        seconds,
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
        "metrics",
        _switch,
        True,
        "on or off: Prometheus metrics at /metrics (with --workers, one scrape sees every worker); off removes "
        "the route and its cost",
    ),
    Flag(
        "admin",
        _switch,
        True,
        "on or off: the admin API and the inspector at /_mockstream/* (test-only surfaces: turn them off "
        "where others can reach the port)",
    ),
    Flag(
        "shutdown-grace",
        seconds,
        5.0,
        "on SIGTERM/SIGINT, seconds to let streams in flight finish before closing them",
    ),
    Flag("read-timeout", seconds, 60.0, "seconds a request's body may take to arrive; then a 408 and a close"),
    Flag(
        "workers",
        _workers,
        1,
        "processes sharing the port (SO_REUSEPORT); each has its own journal and sequence positions unless "
        "--state names a Redis they share",
    ),
    Flag(
        "state",
        _state,
        "memory",
        "where the journal, sequence positions, fault rolls and runtime scenarios live: memory (each process "
        "its own) or a Redis URL (redis://HOST:PORT/DB, rediss://..., unix:///PATH) every worker and replica "
        "pointing at it shares",
    ),
    Flag(
        "state-prefix",
        _state_prefix,
        "mockstream:",
        "with a Redis --state: the prefix of every key this mock writes, so several mocks can share one database",
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
    "metrics", "admin", "shutdown-grace", "read-timeout",
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
