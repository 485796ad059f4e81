"""Every object the OpenAI routes send, checked against OpenAI's own OpenAPI document.

The schemas are vendored in `spec/openai-schemas.json` (`spec/extract.py` regenerates them; `spec/README.md`
says from which commit). Each streamed frame is validated on its own: a Chat chunk as
`CreateChatCompletionStreamResponse`, a legacy chunk as `CreateCompletionResponse`, a Responses event as the
member of the `ResponseStreamEvent` union its `type` names, an in-stream or HTTP error as `ErrorResponse`.
Objects are *closed*: a field the document does not name fails too (a typo would otherwise pass), unless the
real API sends it (`API`, below) or mockstream adds it on purpose (`OURS`).

Where the document and the real API disagree, the test follows the API and lists the difference in `API`
with its evidence (openai-python's types are generated from the API and its recorded streams). Where our
objects miss something both require, the test fails; `FIXES` says what to change, and the failure quotes it.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from spec.schemas import Allow, Schemas
from wire import PATHS, Event, auth_headers, check_framing, read, request_body

from mockstream.plan.content import tokenize

TOKENS = ["Alpha", " beta", " gamma", " delta", " epsilon", " zeta"]
LONG = [f" w{i}" for i in range(24)]
CALL = {"name": "get_weather", "arguments": {"city": "Paris"}}
CALL2 = {"name": "get_time", "arguments": {"zone": "Europe/Paris"}}
NULL = {"type": "null"}


# ---------------------------------------------------------------- where the real API differs ---
RESPONSES_EXAMPLE = "openapi.yaml's own `POST /responses` streaming example (x-oaiMeta, same commit)"
API = (
    Allow("Response", "usage", NULL, None, "the API sends `usage: null` until the response ends "
          f"(response.created, response.in_progress, response.failed): {RESPONSES_EXAMPLE}; openai-python "
          "types/responses/response.py `usage: Optional[ResponseUsage] = None`; wire-format.md §3"),
    Allow("Response", "user", NULL, None, "the API echoes `user: null` when none was sent: "
          f"{RESPONSES_EXAMPLE}; openai-python types/responses/response.py `user: Optional[str] = None`"),
    Allow("Response", "store", {"type": "boolean"}, True, "the API echoes `store` (default true) in every "
          f"response object, which the document's Response schema does not name: {RESPONSES_EXAMPLE}"),
    Allow("CreateCompletionResponse", "choices/[]/finish_reason", NULL, None, "a streamed text_completion chunk "
          "has `finish_reason: null` until the last one (the document reuses the non-streamed object for "
          "chunks): openapi.yaml's own `POST /completions` streaming example; wire-format.md §2"),
    Allow("Embedding", "embedding", {"type": "string"}, "AACAPw==", "with `encoding_format: base64` the API "
          "sends the float32 vector as base64 text, which openai-python asks for and decodes "
          "(resources/embeddings.py); the document types the field as numbers only"),
)  # fmt: skip

# What mockstream sends beyond the OpenAI API, on purpose.
OURS = (
    Allow("ChatCompletionStreamResponseDelta", "reasoning_content", {"type": "string"}, "Hm.", "the reasoning "
          "knobs stream Chat reasoning in vLLM's and DeepSeek's field (reasoning_field: reasoning_content, the "
          "default); OpenAI's Chat API sends no reasoning text, only its count in usage"),
    Allow("ChatCompletionStreamResponseDelta", "reasoning", {"type": "string"}, "Hm.", "reasoning_field: "
          "reasoning (OpenRouter's spelling)"),
    Allow("ChatCompletionResponseMessage", "reasoning_content", {"type": "string"}, "Hm.", "as in the delta"),
    Allow("ChatCompletionResponseMessage", "reasoning", {"type": "string"}, "Hm.", "as in the delta"),
)  # fmt: skip

# What our objects lack that the document and the API both require: the test fails until they are fixed. Each
# entry: a pattern a problem matches (`<json path>: <message>`), and the fix.
FIXES = {
    r"input_tokens_details: 'cache_write_tokens' is a required property": (
        'dialects/responses.py _Spelling.usage(): input_tokens_details needs "cache_write_tokens": 0 '
        "(ResponseUsage.input_tokens_details requires it; openai-python types/responses/response_usage.py "
        "InputTokensDetails.cache_write_tokens: int)"
    ),
}


SCHEMAS = Schemas(allow=(*API, *OURS), fixes=FIXES)
conform = SCHEMAS.conform


# ---------------------------------------------------------------- reading the server ---
def conform_stream(dialect: str, events: list[Event]) -> list[Any]:
    """Validate every frame of a stream; return the decoded objects."""
    objects = []
    for i, event in enumerate(events):
        if dialect != "responses" and event.data == "[DONE]":
            assert i == len(events) - 1, "[DONE] is the last frame"
            continue
        obj = event.json
        objects.append(obj)
        where = f"{dialect} frame {i}"
        if dialect == "responses":
            kind = obj.get("type")
            assert kind in SCHEMAS.stream_events, f"{where}: the document has no Responses event of type {kind!r}"
            conform(SCHEMAS.stream_events[kind], obj, f"{where} ({kind})")
        elif "error" in obj:
            conform("ErrorResponse", obj, f"{where} (in-stream error)")
        else:
            conform(
                "CreateChatCompletionStreamResponse" if dialect == "chat" else "CreateCompletionResponse", obj, where
            )
    return objects


OBJECTS = {"chat": "CreateChatCompletionResponse", "completions": "CreateCompletionResponse", "responses": "Response"}


def post(url: str, path: str, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    with httpx.Client(timeout=10, verify=False) as client:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return client.post(
            url + path,
            content=content,
            headers={"content-type": "application/json", **auth_headers("chat"), **(headers or {})},
        )


def conform_error(reply_status: int, content_type: str, body: Any, where: str) -> None:
    assert reply_status >= 400, where
    assert content_type.startswith("application/json"), (where, content_type)
    conform("ErrorResponse", body, where)


def answer(url: str, dialect: str, knobs: dict[str, Any], stream: bool, fields: dict[str, Any]) -> list[Any]:
    """Ask once and validate whatever comes back, streamed or not; return the objects."""
    body = request_body(dialect, knobs, stream=stream, **fields)
    where = f"{dialect} {'stream' if stream else 'object'} {json.dumps({**knobs, **fields})}"
    if not stream:
        reply = post(url, PATHS[dialect], body)
        if reply.status_code != 200:
            conform_error(reply.status_code, reply.headers["content-type"], reply.json(), where)
            return [reply.json()]
        conform(OBJECTS[dialect], reply.json(), where)
        return [reply.json()]
    got = read(url, dialect, body)
    if got.status != 200:
        conform_error(got.status, got.headers["content-type"], got.json(), where)
        return [got.json()]
    assert got.error is None, (where, got.error)
    check_framing(dialect, got)
    return conform_stream(dialect, got.events)


# ---------------------------------------------------------------- the matrix ---
KNOBS: dict[str, dict[str, Any]] = {
    "text": {"tokens": TOKENS},
    "unicode": {"content": "Héllo wörld — 你好，世界！ 😀"},
    "random": {"random_tokens": 12},
    "empty": {"content": ""},
    "tool_call": {"tool_calls": [CALL]},
    "text_then_tool_call": {"tokens": TOKENS[:2], "tool_calls": [CALL]},
    "parallel_tool_calls": {"tool_calls": [CALL, CALL2]},
    "finish_stop": {"tokens": TOKENS, "finish_reason": "stop"},
    "finish_length": {"tokens": TOKENS, "finish_reason": "length"},
    "finish_content_filter": {"tokens": TOKENS, "finish_reason": "content_filter"},
    "finish_tool_calls": {"tokens": TOKENS, "tool_calls": [CALL], "finish_reason": "tool_calls"},
    "reasoning": {"reasoning": "First, think. Then answer.", "tokens": TOKENS},
    "reasoning_tokens": {"reasoning_tokens": 5, "tokens": TOKENS},
    "reasoning_field": {"reasoning": "Think it over.", "reasoning_field": "reasoning", "tokens": TOKENS},
    "reasoning_then_tool_call": {"reasoning": "Which tool?", "tool_calls": [CALL]},
}
LIMIT = {"chat": "max_tokens", "completions": "max_tokens", "responses": "max_output_tokens"}
CUTS = {  # the request's token limit cuts the answer (or its reasoning, which comes first)
    "max_tokens_cut": {"tokens": LONG},
    "max_tokens_cuts_reasoning": {"reasoning_tokens": 30, "tokens": TOKENS},
}
DIALECTS = ("chat", "completions", "responses")


def variants(dialect: str) -> list[tuple[bool, dict[str, Any]]]:
    """(stream, request fields): plain both ways; for Chat and legacy Completions also `n: 3` and usage."""
    plain = [(True, {}), (False, {})]
    if dialect == "responses":
        return plain
    usage = {"stream_options": {"include_usage": True}}
    return [*plain, (True, {"n": 3}), (False, {"n": 3}), (True, usage), (True, {"n": 3, **usage})]


def _variant_id(stream: bool, fields: dict[str, Any]) -> str:
    return "-".join(
        [
            "stream" if stream else "object",
            *(["n3"] if "n" in fields else []),
            *(["usage"] if "stream_options" in fields else []),
        ]
    )


MATRIX = [
    pytest.param(dialect, knobs, stream, fields, id=f"{dialect}-{name}-{_variant_id(stream, fields)}")
    for dialect in DIALECTS
    for name, knobs in KNOBS.items()
    for stream, fields in variants(dialect)
] + [
    pytest.param(
        dialect, knobs, stream, {**fields, LIMIT[dialect]: 16}, id=f"{dialect}-{name}-{_variant_id(stream, fields)}"
    )
    for dialect in DIALECTS
    for name, knobs in CUTS.items()
    for stream, fields in variants(dialect)[:2]
]


@pytest.mark.parametrize(("dialect", "knobs", "stream", "fields"), MATRIX)
def test_every_object_conforms(server, dialect, knobs, stream, fields):
    objects = answer(server.url, dialect, knobs, stream, fields)
    assert objects
    assert not [o for o in objects if o.get("error") or o.get("type") == "error"]  # answers, not errors


def test_the_matrix_reaches_every_finish_reason_and_event(server):
    """The matrix is only as good as what it makes the server say: every finish reason of each dialect, and
    the Responses events, must appear in it."""
    reasons: dict[str, set[str]] = {d: set() for d in DIALECTS}
    kinds: set[str] = set()
    for param in MATRIX:
        dialect, knobs, stream, fields = param.values
        if not stream:
            continue
        got = read(server.url, dialect, request_body(dialect, knobs, **fields))  # not validated: coverage only
        for obj in (e.json for e in got.events if e.data != "[DONE]"):
            if dialect == "responses":
                kinds.add(obj["type"])
                status = obj.get("response", {}).get("status")
                reasons[dialect] |= {status} if obj["type"].startswith("response.") and status else set()
            else:
                reasons[dialect] |= {c["finish_reason"] for c in obj["choices"] if c.get("finish_reason")}
    assert reasons["chat"] == {"stop", "length", "tool_calls", "content_filter"}
    assert reasons["completions"] == {"stop", "length", "content_filter"}
    assert reasons["responses"] >= {"in_progress", "completed", "incomplete"}
    assert kinds >= {
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.done", "response.content_part.done",
        "response.output_item.done", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.completed", "response.incomplete",
        "response.reasoning_summary_part.added", "response.reasoning_summary_text.delta",
    }  # fmt: skip


def _usage(dialect: str, objects: list[Any]) -> dict[str, Any]:
    """The usage a stream or object reports (the last one that has it)."""
    found = [o.get("usage") or o.get("response", {}).get("usage") for o in objects]
    [usage, *_] = [u for u in reversed(found) if u] or [None]
    assert usage, f"{dialect}: no usage in {objects}"
    return usage


REASONING = {
    "reasoning": len(tokenize(KNOBS["reasoning"]["reasoning"])),
    "reasoning_tokens": KNOBS["reasoning_tokens"]["reasoning_tokens"],
}


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "object"])
@pytest.mark.parametrize("name", ["text", "tool_call", *REASONING])
@pytest.mark.parametrize("dialect", ["chat", "responses"])
def test_usage_adds_up_and_counts_the_reasoning(server, dialect, name, stream):
    """The document's usage: the total is input + output, and the output count includes the reasoning,
    which `*_tokens_details.reasoning_tokens` reports (CompletionUsage, ResponseUsage)."""
    fields = {"stream_options": {"include_usage": True}} if dialect == "chat" and stream else {}
    usage = _usage(dialect, answer(server.url, dialect, KNOBS[name], stream, fields))
    want = REASONING.get(name, 0)
    if dialect == "chat":
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
        got = usage["completion_tokens_details"]["reasoning_tokens"]
        fix = "dialects/openai.py usage_object(): completion_tokens_details.reasoning_tokens = usage.reasoning_tokens"
    else:
        assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
        got = usage["output_tokens_details"]["reasoning_tokens"]
        fix = "dialects/responses.py _Spelling.usage(): output_tokens_details.reasoning_tokens = usage.reasoning_tokens"
    assert got == want, f"reasoning_tokens is {got}, the plan reasoned {want} tokens: needed fix: {fix}"
    assert usage["completion_tokens" if dialect == "chat" else "output_tokens"] > want


@pytest.mark.parametrize("name", ["reasoning", "reasoning_field", "reasoning_then_tool_call"])
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "object"])
@pytest.mark.parametrize("dialect", ["chat", "responses"])
def test_reasoning_is_spelled_so_the_matrix_validates_it(server, dialect, stream, name):
    """The reasoning knobs must reach the wire (Chat: the `reasoning_field` of the delta or message;
    Responses: a `reasoning` output item first, and its events), or the matrix checks nothing of them."""
    knobs = KNOBS[name]
    objects = answer(server.url, dialect, knobs, stream, {})
    if dialect == "chat":
        field = knobs.get("reasoning_field", "reasoning_content")
        parts = [c.get("delta" if stream else "message", {}).get(field) for o in objects for c in o["choices"]]
        assert "".join(p for p in parts if p) == knobs["reasoning"], f"no Chat {field} in {objects}"
        return
    final = objects[-1]["response"] if stream else objects[-1]
    assert [item["type"] for item in final["output"]][:1] == ["reasoning"], final["output"]
    if stream:
        assert any(o["type"].startswith("response.reasoning") for o in objects), [o["type"] for o in objects]


@pytest.mark.parametrize("allow", [*API, *OURS], ids=[f"{a.schema}.{a.path}" for a in (*API, *OURS)])
def test_every_exception_is_still_needed(allow):
    """An exception the document no longer needs (OpenAI fixed it) must go: the document refuses its example,
    which `accept` takes."""
    assert allow.stale() is None, allow.stale()


# ---------------------------------------------------------------- faults ---
@pytest.mark.parametrize("fault", [
    {"kind": "error_event", "at_token": 3},
    {"kind": "error_event", "at_token": 0},
    {"kind": "error_event", "at_token": 2, "message": "Upstream failed.", "code": "server_error"},
    {"kind": "error_event", "at_token": 2, "type": "server_error", "code": "rate_limit_exceeded"},
], ids=["at-3", "at-0", "message", "type-code"])  # fmt: skip
@pytest.mark.parametrize("dialect", DIALECTS)
def test_in_stream_errors_conform(server, dialect, fault):
    objects = answer(server.url, dialect, {"tokens": TOKENS, "fault": fault}, True, {})
    if dialect == "responses":
        assert [o["type"] for o in objects[-2:]] == ["error", "response.failed"]
    else:
        assert "error" in objects[-1]


@pytest.mark.parametrize("status", [400, 401, 403, 404, 429, 500, 503])
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "object"])
@pytest.mark.parametrize("dialect", DIALECTS)
def test_http_error_bodies_conform(server, dialect, stream, status):
    fault = {"kind": "http_error", "status": status}
    [body] = answer(server.url, dialect, {"tokens": TOKENS, "fault": fault}, stream, {})
    assert "error" in body


def test_http_error_with_its_own_words_conforms(server):
    fault = {"kind": "http_error", "status": 429, "message": "Slow down.", "type": "tokens", "code": "rate_limit"}
    [body] = answer(server.url, "chat", {"fault": fault}, True, {})
    assert body["error"]["message"] == "Slow down."


BAD = [
    ("chat", {"messages": [{"role": "user", "content": "x"}]}),
    ("chat", {"model": "gpt-4o-mini"}),
    ("chat", {"model": "gpt-4o-mini", "messages": []}),
    ("chat", {"model": "gpt-4o-mini", "messages": "hi"}),
    ("chat", {"model": "gpt-4o-mini", "messages": [{"content": "no role"}]}),
    ("chat", {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], "n": 0}),
    ("chat", {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}),
    ("chat", {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}),
    (
        "chat",
        {
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": "x"}],
            "stream_options": {"include_usage": True},
        },
    ),
    (
        "chat",
        {
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": "x"}],
            "mockstream": {"finish_reason": "sideways"},
        },
    ),
    ("completions", {"model": "gpt-3.5-turbo-instruct", "prompt": 5}),
    ("completions", {"model": "gpt-3.5-turbo-instruct", "prompt": "x", "n": 500}),
    ("completions", {"prompt": "x"}),
    ("responses", {"model": "gpt-4o-mini"}),
    ("responses", {"model": "gpt-4o-mini", "input": 5}),
    ("responses", {"model": "gpt-4o-mini", "input": "x", "max_output_tokens": 3}),
    ("responses", {"input": "x"}),
]


@pytest.mark.parametrize(("dialect", "body"), BAD, ids=[f"{d}-{i}" for i, (d, _) in enumerate(BAD)])
def test_request_validation_errors_conform(server, dialect, body):
    reply = post(server.url, PATHS[dialect], body)
    assert reply.status_code == 400, reply.text
    conform_error(reply.status_code, reply.headers["content-type"], reply.json(), f"{dialect} {body}")


@pytest.mark.parametrize("dialect", DIALECTS)
def test_unreadable_bodies_and_unknown_routes_conform(server, dialect):
    reply = post(server.url, PATHS[dialect], b"{not json")
    assert reply.status_code == 400, reply.text
    conform_error(reply.status_code, reply.headers["content-type"], reply.json(), f"{dialect} bad JSON")
    reply = post(server.url, PATHS[dialect] + "/nope", {})
    assert reply.status_code == 404, reply.text
    conform_error(reply.status_code, reply.headers["content-type"], reply.json(), f"{dialect} unknown path")


# ---------------------------------------------------------------- models and embeddings ---
def test_models_conform(server):
    with httpx.Client(timeout=10, verify=False, headers=auth_headers("chat")) as client:
        listed = client.get(f"{server.url}/v1/models")
        assert listed.status_code == 200
        conform("ListModelsResponse", listed.json(), "GET /v1/models")
        ids = [m["id"] for m in listed.json()["data"]]
        assert ids
        for model_id in ids:
            one = client.get(f"{server.url}/v1/models/{model_id}")
            assert one.status_code == 200
            conform("Model", one.json(), f"GET /v1/models/{model_id}")
        missing = client.get(f"{server.url}/v1/models/no-such-model")
        assert missing.status_code == 404
        conform_error(missing.status_code, missing.headers["content-type"], missing.json(), "GET unknown model")


EMBED = [
    {"input": "The food was delicious."},
    {"input": ["one", "two", "three"]},
    {"input": "short", "dimensions": 8},
    {"input": ["a", "b"], "encoding_format": "float"},
    {"input": ["a", "b"], "encoding_format": "base64"},
    {"input": [[1, 2, 3], [4, 5]]},
]


@pytest.fixture(scope="module")
def embeddings(server) -> str:
    """The server that answers the embeddings route."""
    return server.url


@pytest.mark.parametrize("fields", EMBED, ids=[f"embed-{i}" for i in range(len(EMBED))])
def test_embeddings_conform(embeddings, fields):
    reply = post(embeddings, "/v1/embeddings", {"model": "text-embedding-3-small", **fields})
    assert reply.status_code == 200, reply.text
    conform("CreateEmbeddingResponse", reply.json(), f"embeddings {fields}")


@pytest.mark.parametrize(
    "body", [{"model": "text-embedding-3-small"}, {"input": "x"}, {"model": "text-embedding-3-small", "input": 5}]
)
def test_embedding_errors_conform(embeddings, body):
    reply = post(embeddings, "/v1/embeddings", body)
    assert reply.status_code == 400, reply.text
    conform_error(reply.status_code, reply.headers["content-type"], reply.json(), f"embeddings {body}")
