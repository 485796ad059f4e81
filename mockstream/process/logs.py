"""What `mockstream serve` writes besides the access log: Python logging on stderr and the start line on
stdout, as text or as JSON lines (`--log-format json`)."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from ..server.access_log import timestamp


class JsonFormatter(logging.Formatter):
    """One JSON object per log record: time, level, logger, message (and the traceback, if any)."""

    def format(self, record: logging.LogRecord) -> str:
        data = {
            "time": timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False)


def configure(level: str, log_format: str) -> None:
    """Send Python logging (warnings, errors, tracebacks; debug detail) to stderr in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


def announce(message: str, log_format: str, **fields: Any) -> None:
    """The start line on stdout: plain text, or a JSON object with the same message and its fields."""
    if log_format == "json":
        message = json.dumps({"time": timestamp(time.time()), "level": "info", "message": message, **fields})
    print(message, flush=True)
