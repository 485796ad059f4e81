"""`slow_headers`: the response headers themselves come `ms` late."""

from __future__ import annotations

from dataclasses import dataclass

from ..plan.checks import number
from .base import Fault


@dataclass(frozen=True)
class SlowHeaders(Fault):
    """The response headers themselves come `ms` late."""

    kind = "slow_headers"
    before_response = True
    checks = {"ms": number(0, 86_400_000)}
    ms: float = 0.0

    def header_delay(self) -> float:
        return self.ms / 1000
