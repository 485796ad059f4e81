"""Recording: a proxy that forwards API requests to a real (or compatible) server, streams the answers back
write by write, and keeps each exchange as a scenario file that replays it (`mockstream record`)."""

from __future__ import annotations

from .proxy import DEFAULT_TIMEOUT, Proxy, attach
from .store import REDACTED, Redactor

__all__ = ["DEFAULT_TIMEOUT", "REDACTED", "Proxy", "Redactor", "attach"]
