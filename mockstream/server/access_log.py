"""The access log of `mockstream serve`: one line per request on stdout, as text or as JSON lines
(`--log-format json`) for log collectors. It takes the
scenario, status and outcome of an API request from its journal entry, so it says how a stream really ended
(`completed`, `fault:reset`, `client_disconnected`, ...), not just the status sent before the body.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from .direct import JOURNALED
from .journal import Entry

FORMATS = ("text", "json")
NOT_LOGGED = frozenset({"/healthz"})  # a health probe every few seconds would drown the requests


_second: tuple[float, str] = (-1.0, "")  # the last whole second formatted, and its text


def timestamp(seconds: float) -> str:
    """UTC with milliseconds: 2026-11-25T10:33:01.123Z, as datetime's isoformat gives it. The text of the
    second is kept: one access-log line per request asks for it, and this costs a third of isoformat."""
    global _second
    fraction, whole = math.modf(seconds)  # rounded to microseconds as datetime rounds them
    micro = round(fraction * 1_000_000)
    if micro >= 1_000_000:
        whole, micro = whole + 1, micro - 1_000_000
    elif micro < 0:
        whole, micro = whole - 1, micro + 1_000_000
    second = _second
    if second[0] != whole:
        second = _second = (whole, datetime.fromtimestamp(whole, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"))
    return f"{second[1]}.{micro // 1000:03d}Z"


class AccessLog:
    """Writes one line per finished request: method, path, scenario, status, outcome, duration, worker pid."""

    def __init__(self, log_format: str = "text", write: Callable[[str], Any] | None = None):
        self.log_format = log_format
        self.worker = os.getpid()
        self._write = write or self._stdout
        self._pending: list[str] = []  # lines for stdout, written at the end of this pass of the loop

    def line(
        self, method: str, path: str, scenario: str | None, status: int | None, outcome: str, duration_ms: float
    ) -> str:
        now = timestamp(time.time())
        if self.log_format == "json":
            return json.dumps(
                {
                    "time": now,
                    "method": method,
                    "path": path,
                    "scenario": scenario,
                    "status": status,
                    "outcome": outcome,
                    "duration_ms": duration_ms,
                    "worker": self.worker,
                },
                ensure_ascii=False,
            )
        return (
            f"{now} {method} {path} scenario={scenario or '-'} status={status if status is not None else '-'} "
            f"outcome={outcome} duration_ms={duration_ms} worker={self.worker}"
        )

    def ended(self, entry: Entry) -> None:
        """A journal listener: the line of an API request, once its entry says how it ended."""
        self._write(
            self.line(entry.method, entry.path, entry.scenario, entry.status, entry.outcome, entry.duration_ms or 0.0)
        )

    def for_aiohttp(self, also: AbstractAccessLogger | None = None) -> type[AbstractAccessLogger]:
        """aiohttp's access-logger hook, for the requests the journal does not keep (models, admin calls,
        pages, 404s); `also` is another aiohttp logger that sees every request."""
        access_log = self

        class Logger(AbstractAccessLogger):
            def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
                if also is not None:
                    also.log(request, response, time)
                if request.path in NOT_LOGGED or _journaled(request):
                    return
                status, duration = response.status, round(time * 1000, 3)
                line = access_log.line(request.method, request.path, None, status, _outcome(status), duration)
                access_log._write(line)

        return Logger

    def _stdout(self, line: str) -> None:
        """Keep the line and write what was kept once per pass of the event loop, then flush: a burst of
        requests ending together costs one write and one system call, not one each."""
        pending = self._pending
        pending.append(line)
        if len(pending) > 1:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write the lines kept for stdout (the server calls it once more as it stops)."""
        lines, self._pending = self._pending, []
        if not lines:
            return
        try:
            try:
                sys.stdout.write("\n".join(lines) + "\n")
            except UnicodeEncodeError:  # a path or header not in UTF-8 (aiohttp keeps its bytes as surrogates)
                for line in lines:
                    try:
                        sys.stdout.write(line + "\n")
                    except UnicodeEncodeError:
                        sys.stdout.write(line.encode("ascii", "backslashreplace").decode("ascii") + "\n")
        except (OSError, ValueError):  # stdout closed or gone: serving matters more than logging
            return
        _flush()


def _journaled(request: web.BaseRequest) -> bool:
    """A request whose journal entry writes its line (an API route's, served directly or through the router)."""
    if request.get(JOURNALED, False):
        return True
    match_info = getattr(request, "match_info", None)
    return getattr(getattr(match_info, "handler", None), "journaled", False)


def _outcome(status: int | None) -> str:
    """How a request the journal does not keep (models, admin routes, the page) ended, from its status."""
    if status is None or status >= 500:
        return "internal_error"
    return "completed" if status < 400 else "rejected"


def _flush() -> None:
    with contextlib.suppress(OSError, ValueError):  # stdout closed or gone: serving matters more than logging
        sys.stdout.flush()
