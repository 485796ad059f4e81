"""Errors a client can read: every refusal is an OpenAI-shaped body with the right HTTP status."""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass
class RequestError(Exception):
    """A request we refuse; rendered as `{"error": {"message", "type", "param", "code"}}`."""

    status: int
    message: str
    param: str | None = None
    code: str | None = None
    type: str = "invalid_request_error"

    def __str__(self) -> str:
        return self.message

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def json_bytes(self) -> bytes:
        return json.dumps(self.body()).encode()


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a scenario or a set of knobs: where (a dotted path) and what."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ScenarioError(ValueError):
    """A scenario file (or inline scenario) that does not validate; lists every problem at once."""

    def __init__(self, source: str, problems: list[Problem]):
        self.lines = [f"{source}: {p}" for p in problems]
        super().__init__("\n".join(self.lines))

    @classmethod
    def merged(cls, lines: list[str]) -> ScenarioError:
        """One error for many files, so a user fixes them all in one go."""
        error = cls("", [])
        error.lines = lines
        error.args = ("\n".join(lines),)
        return error
