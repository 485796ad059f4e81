"""Due times: when each token is due, as an offset in seconds from the request's start.

Offsets are absolute (ttft + k * itl, plus seeded jitter), never accumulated sleeps, so a thousand
tokens do not drift. `speed` divides every pacing delay; speed 0 removes them all.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Pacing:
    ttft: float = 0.0  # seconds to the first token
    itl: float = 0.0  # seconds between tokens
    jitter: float = 0.0  # +/- seconds around each token's due time

    @classmethod
    def from_knobs(cls, knobs: dict, speed: float) -> Pacing:
        if speed <= 0:
            return cls()
        scale = 1 / (1000 * speed)
        return cls(
            knobs.get("ttft_ms", 0.0) * scale, knobs.get("itl_ms", 0.0) * scale, knobs.get("jitter_ms", 0.0) * scale
        )

    def due_times(self, rng: random.Random | None) -> Iterator[float]:
        """Offsets of token 0, 1, 2, ... forever; never earlier than the previous one (`rng` draws the jitter)."""
        if not self.jitter:  # ttft, ttft + itl, ...: summed in C (no Python frame per token); their rounding
            # stays under a microsecond over a million tokens, and every offset is still from the request's start
            return itertools.accumulate(itertools.repeat(self.itl), initial=self.ttft)
        return self._jittered(rng)

    def _jittered(self, rng: random.Random | None) -> Iterator[float]:
        previous = 0.0
        k = 0
        while True:
            due = self.ttft + k * self.itl
            if self.jitter:
                due = max(previous, due + rng.uniform(-self.jitter, self.jitter))  # type: ignore[union-attr]
            previous = due
            yield due
            k += 1

    def duration(self, tokens: int) -> float:
        """When the last of `tokens` tokens is due (no jitter): how long a non-streamed answer takes."""
        return 0.0 if tokens == 0 else self.ttft + (tokens - 1) * self.itl
