"""The fault catalogue: every way a real stream (or a proxy in front of it) misbehaves.

One module per kind, each a `Fault` subclass registered by its `kind` (a duplicate kind fails at import,
naming both classes). Adding a kind is one new module and its line below.
"""

from __future__ import annotations

from . import disconnect, error_event, http_error, malformed, reset, slow_headers, stall, truncate  # noqa: F401
from .base import KINDS, DeliveryFault, Fault, describe, parse

__all__ = ["KINDS", "DeliveryFault", "Fault", "describe", "parse"]
