"""The vocabulary of errors every layer shares: a refused request, a scripted failure, a bad scenario file,
and what the API says for each status when a script gives no words of its own."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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


class Unmatched(RequestError):
    """No scenario matched a request and the server is strict: a 404 whose message names the closest
    scenarios and the rules that failed. `report` is the same as JSON: a list of
    `{"scenario": name, "failed": [{"rule", "wanted", "got"}]}`, closest first (at most 3)."""

    def __init__(self, message: str, report: list[dict[str, Any]]):
        super().__init__(404, message, None, "no_scenario_matched")
        self.report = report


@dataclass(frozen=True, slots=True)
class Failure:
    """What a scripted error says; None leaves that part to the API's own words."""

    message: str | None = None
    type: str | None = None
    code: str | None = None


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
        self.problems = problems
        self.lines = [f"{source}: {p}" for p in problems]
        super().__init__("\n".join(self.lines))

    @classmethod
    def merged(cls, lines: list[str]) -> ScenarioError:
        """One error for many files, so a user fixes them all in one go."""
        error = cls("", [])
        error.lines = lines
        error.args = ("\n".join(lines),)
        return error


# What the API sends for each status when a scripted http_error gives no type/code/message of its own.
API_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Bad request."),
    401: (
        "invalid_request_error",
        "invalid_api_key",
        "Incorrect API key provided: sk-mock****. You can find your "
        "API key at https://platform.openai.com/account/api-keys.",
    ),
    403: (
        "invalid_request_error",
        "unsupported_country_region_territory",
        "Country, region, or territory not supported",
    ),
    404: (
        "invalid_request_error",
        "model_not_found",
        "The model `{model}` does not exist or you do not have access to it.",
    ),
    408: ("invalid_request_error", "timeout", "Request timed out."),
    409: ("invalid_request_error", "conflict", "The request conflicts with another request."),
    422: ("invalid_request_error", None, "Unprocessable entity."),
    429: (
        "requests",
        "rate_limit_exceeded",
        "Rate limit reached for {model} in organization org-mockstream on "
        "requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in {retry}.",
    ),
    500: ("server_error", None, "The server had an error while processing your request. Sorry about that!"),
    502: ("server_error", None, "Bad gateway."),
    503: ("service_unavailable_error", "server_is_overloaded", "The server is overloaded or not ready yet."),
    504: ("server_error", None, "Gateway timeout."),
    529: ("overloaded_error", None, "Overloaded"),
}


def api_error(
    status: int,
    model: str,
    message: str | None = None,
    type: str | None = None,
    code: str | None = None,
    retry: str = "20s",
) -> RequestError:
    """The error the API would send for `status`, with any of its parts overridden."""
    default_type, default_code, default_message = API_ERRORS.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", None, f"HTTP {status}.")
    )
    return RequestError(
        status,
        message or default_message.format(model=model, retry=retry),
        None,
        code if code is not None else default_code,
        type or default_type,
    )


# The status whose defaults an in-band error (a 200 stream that fails) takes from its `code`.
CODE_STATUS = {"rate_limit_exceeded": 429, "insufficient_quota": 429, "server_is_overloaded": 503}


def in_band_error(model: str, failure: Failure) -> RequestError:
    """The error an `error_event` carries: its message and type follow its code (a rate limit that strikes
    after the 200 reads like a 429), else the API's server error."""
    return api_error(CODE_STATUS.get(failure.code or "", 500), model, failure.message, failure.type, failure.code)


class StateUnavailable(Exception):
    """The shared state store (`--state redis://...`) cannot be reached when the server starts."""
