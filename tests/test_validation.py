"""Bad input gets the API's error shape and status, with `param` naming the field; the server keeps serving."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest

GOOD = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}


@pytest.fixture(scope="module")
def http(server):
    """One keep-alive client for the module: a bad request must not spoil the connection for the next one."""
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        yield client


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    """The inner error object, after checking the status and the exact OpenAI shape."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    assert error["type"] == "invalid_request_error"
    return error


def assert_still_serves(http: httpx.Client) -> None:
    """A good streaming request right after a bad one streams to the end."""
    body = {**GOOD, "stream": True, "mockstream": {"tokens": ["still", " here"]}}
    with http.stream("POST", "/chat/completions", json=body) as response:
        assert response.status_code == 200
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    deltas = [json.loads(line[6:])["choices"][0]["delta"].get("content") for line in lines[1:-2]]
    assert deltas == ["still", " here"]


# ---------------------------------------------------------------- the request body ---
def test_empty_body(http):
    error = error_of(http.post("/chat/completions", headers={"content-type": "application/json"}), 400)
    assert "JSON" in error["message"]
    assert_still_serves(http)


def test_invalid_json(http):
    response = http.post("/chat/completions", content=b'{"model": "gpt-4o", "messages": [',
                         headers={"content-type": "application/json"})
    error = error_of(response, 400)
    assert "JSON" in error["message"]
    assert error["param"] is None
    assert_still_serves(http)


@pytest.mark.parametrize("body", [[GOOD], "hello", 42, None, True])
def test_body_not_an_object(http, body):
    response = http.post("/chat/completions", content=json.dumps(body).encode(),
                         headers={"content-type": "application/json"})
    error = error_of(response, 400)
    assert "object" in error["message"]
    assert_still_serves(http)


# (body changes, expected param, a fragment the message must contain)
BAD_FIELDS = [
    pytest.param({"model": None}, None, "model", id="missing-model"),
    pytest.param({"model": 4}, "model", "string", id="model-not-string"),
    pytest.param({"messages": None}, "messages", "messages", id="missing-messages"),
    pytest.param({"messages": []}, "messages", "messages", id="empty-messages"),
    pytest.param({"messages": "Hi"}, "messages", "array", id="messages-not-array"),
    pytest.param({"messages": ["Hi"]}, "messages[0].role", "role", id="message-not-object"),
    pytest.param({"messages": [{"content": "Hi"}]}, "messages[0].role", "role", id="message-without-role"),
    pytest.param({"n": "2"}, "n", "integer", id="n-string"),
    pytest.param({"n": 1.5}, "n", "integer", id="n-float"),
    pytest.param({"n": 0}, "n", "128", id="n-zero"),
    pytest.param({"n": 129}, "n", "128", id="n-too-big"),
    pytest.param({"stream": "true"}, "stream", "boolean", id="stream-string"),
    pytest.param({"stream": 1}, "stream", "boolean", id="stream-int"),
    pytest.param({"max_tokens": 0}, "max_tokens", "1", id="max-tokens-zero"),
    pytest.param({"max_completion_tokens": -3}, "max_completion_tokens", "1", id="max-completion-tokens-negative"),
    pytest.param({"max_tokens": "10"}, "max_tokens", "integer", id="max-tokens-string"),
    pytest.param({"stream_options": {"include_usage": True}}, "stream_options", "stream", id="options-without-stream"),
    pytest.param({"stream": False, "stream_options": {"include_usage": True}}, "stream_options", "stream",
                 id="options-with-stream-false"),
    pytest.param({"stream": True, "stream_options": [True]}, "stream_options", "object", id="options-not-object"),
    pytest.param({"stream": True, "stream_options": {"include_usage": "yes"}}, "stream_options.include_usage",
                 "boolean", id="include-usage-string"),
]


@pytest.mark.parametrize(("changes", "param", "fragment"), BAD_FIELDS)
def test_bad_request_field(http, changes, param, fragment):
    body = {**GOOD, **changes}
    body = {k: v for k, v in body.items() if v is not None}
    error = error_of(http.post("/chat/completions", json=body), 400)
    assert error["param"] == param
    assert fragment in error["message"]
    assert_still_serves(http)


def test_missing_model_uses_the_apis_words(http):
    error = error_of(http.post("/chat/completions", json={"messages": GOOD["messages"]}), 400)
    assert error["message"] == "you must provide a model parameter"


# ---------------------------------------------------------------- mockstream knobs ---
BAD_KNOBS = [
    pytest.param("fast", "mockstream", "object", id="knobs-not-object"),
    pytest.param([{"content": "x"}], "mockstream", "object", id="knobs-array"),
    pytest.param({"chunk_bytes": 0}, "mockstream.chunk_bytes", "at least 1", id="chunk-bytes-zero"),
    pytest.param({"chunk_bytes": "4"}, "mockstream.chunk_bytes", "integer", id="chunk-bytes-string"),
    pytest.param({"chunk_bytes": True}, "mockstream.chunk_bytes", "integer", id="chunk-bytes-bool"),
    pytest.param({"chunk_bytes": 2.5}, "mockstream.chunk_bytes", "integer", id="chunk-bytes-float"),
    pytest.param({"events_per_write": 0}, "mockstream.events_per_write", "at least 1", id="events-per-write-zero"),
    pytest.param({"itl_ms": -5}, "mockstream.itl_ms", "between", id="itl-negative"),
    pytest.param({"ttft_ms": "fast"}, "mockstream.ttft_ms", "number", id="ttft-string"),
    pytest.param({"jitter_ms": None}, "mockstream.jitter_ms", "number", id="jitter-null"),
    pytest.param({"finish_reason": "done"}, "mockstream.finish_reason", "content_filter", id="finish-reason-unknown"),
    pytest.param({"content": 5}, "mockstream.content", "string", id="content-not-string"),
    pytest.param({"tokens": "abc"}, "mockstream.tokens", "array", id="tokens-string"),
    pytest.param({"tokens": ["a", 1]}, "mockstream.tokens", "string", id="tokens-not-strings"),
    pytest.param({"tokens": ["a", ""]}, "mockstream.tokens", "empty", id="tokens-empty-string"),
    pytest.param({"random_tokens": -1}, "mockstream.random_tokens", "between 0", id="random-tokens-negative"),
    pytest.param({"random_tokens": 1.5}, "mockstream.random_tokens", "integer", id="random-tokens-float"),
    pytest.param({"seed": -1}, "mockstream.seed", "between", id="seed-negative"),
    pytest.param({"seed": "7"}, "mockstream.seed", "integer", id="seed-string"),
    pytest.param({"scenario": ""}, "mockstream.scenario", "non-empty", id="scenario-empty"),
    pytest.param({"scenario": 3}, "mockstream.scenario", "string", id="scenario-not-string"),
]


@pytest.mark.parametrize(("knobs", "param", "fragment"), BAD_KNOBS)
def test_bad_knob(http, knobs, param, fragment):
    error = error_of(http.post("/chat/completions", json={**GOOD, "stream": True, "mockstream": knobs}), 400)
    assert error["param"] == param
    assert fragment in error["message"]
    assert_still_serves(http)


def test_unknown_knob_typo_names_the_field_and_suggests_the_knob(http):
    error = error_of(http.post("/chat/completions", json={**GOOD, "mockstream": {"chunk_byte": 1}}), 400)
    assert error["param"] == "mockstream.chunk_byte"
    assert "chunk_bytes" in error["message"]
    assert "did you mean" in error["message"].lower()
    assert_still_serves(http)


def test_unknown_knob_lists_the_valid_ones(http):
    error = error_of(http.post("/chat/completions", json={**GOOD, "mockstream": {"zzz": 1}}), 400)
    assert error["param"] == "mockstream.zzz"
    for knob in ("content", "tokens", "random_tokens", "chunk_bytes", "itl_ms", "seed"):
        assert knob in error["message"]


def test_every_bad_knob_is_reported_at_once(http):
    knobs = {"chunk_bytes": 0, "finish_reason": "done"}
    error = error_of(http.post("/chat/completions", json={**GOOD, "mockstream": knobs}), 400)
    assert error["param"] == "mockstream.chunk_bytes"
    assert "mockstream.chunk_bytes" in error["message"]
    assert "mockstream.finish_reason" in error["message"]


@pytest.mark.parametrize("knobs", [
    {"content": "a", "tokens": ["b"]},
    {"content": "a", "random_tokens": 3},
    {"tokens": ["a"], "random_tokens": 3},
    {"content": "a", "tokens": ["b"], "random_tokens": 3},
])
def test_two_text_sources_at_once(http, knobs):
    error = error_of(http.post("/chat/completions", json={**GOOD, "mockstream": knobs}), 400)
    assert error["param"].startswith("mockstream.")
    assert error["param"].removeprefix("mockstream.") in knobs
    assert "only one" in error["message"]
    assert_still_serves(http)


@pytest.mark.parametrize(("knobs", "fragment"), [
    ({"random_tokens": 5, "locale": "xx_XX"}, "xx_XX"),
    ({"random_tokens": 5, "locale": "zh_CM"}, "zh_CN"),  # the closest locale is suggested
    ({"random_tokens": 5, "locale": 7}, "locale"),
    ({"content": "hi", "locale": "zh_CN"}, "random_tokens"),  # a locale without random text means nothing
])
def test_bad_locale(http, knobs, fragment):
    error = error_of(http.post("/chat/completions", json={**GOOD, "mockstream": knobs}), 400)
    assert error["param"] == "mockstream.locale"
    assert fragment in error["message"]
    assert_still_serves(http)


@pytest.mark.parametrize(("tool_calls", "param"), [
    ("get_weather", "mockstream.tool_calls"),
    ([], "mockstream.tool_calls"),
    (["get_weather"], "mockstream.tool_calls[0]"),
    ([{"arguments": {}}], "mockstream.tool_calls[0].name"),
    ([{"name": "", "arguments": {}}], "mockstream.tool_calls[0].name"),
    ([{"name": 3, "arguments": {}}], "mockstream.tool_calls[0].name"),
    ([{"name": "f", "arguments": "{not json"}], "mockstream.tool_calls[0].arguments"),
    ([{"name": "f", "arguments": 5}], "mockstream.tool_calls[0].arguments"),
    ([{"name": "f"}, {"name": "g", "argument": {}}], "mockstream.tool_calls[1].argument"),
    ([{"name": "f", "id": 9}], "mockstream.tool_calls[0].id"),
])
def test_bad_tool_calls(http, tool_calls, param):
    body = {**GOOD, "stream": True, "mockstream": {"tool_calls": tool_calls}}
    error = error_of(http.post("/chat/completions", json=body), 400)
    assert error["param"] == param
    assert_still_serves(http)


def test_misspelt_tool_call_field_suggests_the_right_one(http):
    body = {**GOOD, "mockstream": {"tool_calls": [{"name": "f", "argument": {}}]}}
    error = error_of(http.post("/chat/completions", json=body), 400)
    assert "'arguments'" in error["message"]


# ---------------------------------------------------------------- HTTP level ---
@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/chat/completion"),
    ("GET", "/nothing/here"),
    ("POST", "/completions/chat"),
])
def test_unknown_path_is_404(http, method, path):
    error = error_of(http.request(method, path, json=GOOD), 404)
    assert path in error["message"]
    assert_still_serves(http)


def test_wrong_method_is_405(http):
    response = http.get("/responses")
    error = error_of(response, 405)
    assert "GET" in error["message"]
    assert "POST" in error["message"]
    assert_still_serves(http)


def test_wrong_method_names_the_allowed_methods_in_allow(http):
    # RFC 9110 15.5.6: the origin server MUST send Allow with a 405
    allowed = http.put("/chat/completions").headers.get("allow")
    assert allowed is not None
    assert "POST" in allowed.split(", ") and "GET" in allowed.split(", ")
    assert "PUT" not in allowed


@pytest.mark.parametrize(("method", "path", "kwargs", "status"), [
    ("POST", "/chat/completions", {"json": {**GOOD, "n": 0}}, 400),
    ("POST", "/chat/completions", {"json": {**GOOD, "mockstream": {"chunk_byte": 1}}}, 400),
    ("POST", "/chat/completions", {"json": {**GOOD, "mockstream": {"scenario": "nope"}}}, 404),
    ("POST", "/nowhere", {"json": GOOD}, 404),
    ("PUT", "/chat/completions", {}, 405),
    ("POST", "/chat/completions", {"content": b"{}", "headers": {"content-type": "text/plain"}}, 415),
])
def test_error_answers_carry_a_request_id(http, method, path, kwargs, status):
    # the API sends x-request-id on errors too; SDKs expose it as the error's request_id
    response = http.request(method, path, **kwargs)
    assert response.status_code == status
    assert re.fullmatch(r"req_[0-9a-f]{32}", response.headers.get("x-request-id", ""))


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"])
def test_wrong_content_type_is_415(http, content_type):
    response = http.post("/chat/completions", content=json.dumps(GOOD).encode(),
                         headers={"content-type": content_type})
    error = error_of(response, 415)
    assert "application/json" in error["message"]
    assert_still_serves(http)


def test_json_with_a_charset_is_accepted(http):
    response = http.post("/chat/completions", content=json.dumps({**GOOD, "mockstream": {"content": "ok"}}).encode(),
                         headers={"content-type": "application/json; charset=utf-8"})
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "ok"


def test_oversized_body_is_413(http):
    from mockstream.server.errors import MAX_BODY

    big = {**GOOD, "messages": [{"role": "user", "content": "x" * (MAX_BODY + 1024)}]}
    error = error_of(http.post("/chat/completions", json=big), 413)
    assert str(MAX_BODY) in error["message"]
    assert_still_serves(http)


def test_a_body_just_under_the_limit_is_served(http):
    from mockstream.server.errors import MAX_BODY

    # whitespace keeps the prompt-token count cheap; the size is what matters here
    body = {**GOOD, "messages": [{"role": "user", "content": " " * (MAX_BODY - 1024)}],
            "mockstream": {"content": "ok"}}
    response = http.post("/chat/completions", json=body)
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "ok"


@pytest.mark.parametrize(("method", "path"), [("GET", "/v1/nowhere"), ("PUT", "/v1/chat/completions")])
def test_errors_without_a_route_carry_cors_headers(server, method, path):
    """A page on another origin can read the 404/405, not just a bare network error."""
    response = httpx.request(method, server.url + path, headers={"Origin": "http://localhost:5173"})
    assert response.status_code in (404, 405)
    assert response.headers.get("access-control-allow-origin") == "*"
    assert "x-request-id" in response.headers.get("access-control-expose-headers", "")
