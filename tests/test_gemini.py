"""Gemini (google-genai) against the real server: streams, whole answers, errors, the JSON array, embeddings."""

from __future__ import annotations

import json
import math
from pathlib import Path

import httpx
import pytest
import yaml
from google import genai
from google.genai import types

SCENARIOS = Path(__file__).parent.parent / "scenarios"


def _client(server, knobs=None):
    options = types.HttpOptions(base_url=server.url, extra_body={"mockstream": knobs} if knobs else None)
    return genai.Client(api_key="x", http_options=options)


def test_stream_text_and_usage(server):
    client = _client(server, {"content": "Hello there"})
    chunks = list(client.models.generate_content_stream(model="gemini-2.5-flash", contents="hi"))
    assert "".join(c.text or "" for c in chunks) == "Hello there"
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    assert chunks[-1].usage_metadata.total_token_count == chunks[-1].usage_metadata.prompt_token_count + 2


def test_generate_content_whole(server):
    client = _client(server, {"content": "Hi you"})
    answer = client.models.generate_content(model="gemini-2.5-flash", contents="hi")
    assert answer.text == "Hi you"
    assert answer.response_id


def test_rate_limit_in_googles_shape(server):
    client = _client(server, {"fault": {"kind": "http_error", "status": 429}})
    with pytest.raises(genai.errors.ClientError) as caught:
        client.models.generate_content(model="gemini-2.5-flash", contents="hi")
    assert caught.value.code == 429
    assert caught.value.status == "RESOURCE_EXHAUSTED"
    assert caught.value.details["error"]["details"][0]["@type"] == "type.googleapis.com/google.rpc.RetryInfo"


def test_bad_request_is_400_in_googles_shape(server):
    answer = httpx.post(server.url + "/v1beta/models/gemini-2.5-flash:generateContent", json={"contents": []})
    assert answer.status_code == 400
    assert answer.json()["error"]["status"] == "INVALID_ARGUMENT"


def test_json_array_framing(server):
    url = server.url + "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
    answer = httpx.post(url, json={"contents": [{"parts": [{"text": "hi"}]}], "mockstream": {"content": "a b"}})
    assert answer.headers["content-type"].startswith("application/json")
    objects = json.loads(answer.text)
    assert "".join(p["text"] for o in objects for p in o["candidates"][0]["content"]["parts"]) == "a b"
    assert objects[-1]["candidates"][0]["finishReason"] == "STOP"


def test_models_list(server):
    names = [m["name"] for m in httpx.get(server.url + "/v1beta/models").json()["models"]]
    assert "models/gemini-2.5-flash" in names


def test_embed_single_and_batch(server):
    client = _client(server)
    one = client.models.embed_content(model="text-embedding-004", contents="hello")
    values = one.embeddings[0].values
    assert len(values) == 768
    assert math.isclose(sum(v * v for v in values), 1.0, rel_tol=1e-4)
    two = client.models.embed_content(model="text-embedding-004", contents=["hello", "world"])
    assert len(two.embeddings) == 2
    assert two.embeddings[0].values == pytest.approx(values)


def test_mid_stream_disconnect_raises(server):
    client = _client(server, {"fault": {"kind": "disconnect", "at_token": 2}})
    with pytest.raises(Exception) as caught:  # the transport's error (httpx or httpx2)
        list(client.models.generate_content_stream(model="gemini-2.5-flash", contents="hi"))
    assert "Protocol" in type(caught.value).__name__ or "Read" in type(caught.value).__name__


def _contents(text="hi"):
    return [{"role": "user", "parts": [{"text": text}]}]


@pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning")  # google-genai's own
async def test_async_stream(server):
    client = _client(server, {"content": "One two three"})
    stream = await client.aio.models.generate_content_stream(model="gemini-2.5-flash", contents="hi")
    chunks = [chunk async for chunk in stream]
    assert "".join(c.text or "" for c in chunks) == "One two three"
    assert len(chunks) >= 3  # token by token, not one object


def test_function_call_round_trip(server):
    turns = yaml.safe_load((SCENARIOS / "gemini-function-call.yaml").read_text())["turns"]
    client = _client(server, {"turns": turns})
    weather = types.FunctionDeclaration(
        name="get_weather",
        description="The weather",
        parameters=types.Schema(type="OBJECT", properties={"city": types.Schema(type="STRING")}),
    )
    config = types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[weather])],
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
    )
    history = [types.Content(role="user", parts=[types.Part(text="Weather in Paris?")])]
    first = client.models.generate_content(model="gemini-2.5-flash", contents=history, config=config)
    [call] = first.function_calls
    assert call.name == "get_weather" and call.args == {"city": "Paris"}
    history.append(first.candidates[0].content)
    history.append(
        types.Content(
            role="user", parts=[types.Part.from_function_response(name="get_weather", response={"sky": "sunny"})]
        )
    )
    chunks = list(client.models.generate_content_stream(model="gemini-2.5-flash", contents=history, config=config))
    assert "".join(c.text or "" for c in chunks) == "It is sunny in Paris, 21 degrees."


def test_streamed_function_call_is_one_whole_part(server):
    knobs = {"content": "", "tool_calls": [{"name": "lookup", "arguments": {"q": "x", "n": 2}}]}
    client = _client(server, knobs)
    chunks = list(client.models.generate_content_stream(model="gemini-2.5-flash", contents="hi"))
    calls = [fc for c in chunks for fc in (c.function_calls or [])]
    assert [(fc.name, fc.args) for fc in calls] == [("lookup", {"q": "x", "n": 2})]
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP


def test_reasoning_as_thought_parts(server):
    knobs = {"reasoning": "Think it over first", "content": "Done"}
    client = _client(server, knobs)
    chunks = list(client.models.generate_content_stream(model="gemini-2.5-pro", contents="hi"))
    parts = [p for c in chunks for p in c.candidates[0].content.parts or []]
    thoughts = [p.text for p in parts if p.thought]
    answer = [p.text for p in parts if not p.thought and p.text]
    assert "".join(thoughts) == "Think it over first"
    assert "".join(answer) == "Done"
    assert parts.index(next(p for p in parts if not p.thought)) == len(thoughts)  # thoughts come first
    meta = chunks[-1].usage_metadata
    assert meta.thoughts_token_count == len(thoughts)
    assert meta.total_token_count == meta.prompt_token_count + meta.candidates_token_count + meta.thoughts_token_count


@pytest.mark.parametrize(
    ("knobs", "reason"),
    [
        ({"content": "a b"}, types.FinishReason.STOP),
        ({"content": "one two three four five six", "config": {"max_output_tokens": 2}}, types.FinishReason.MAX_TOKENS),
        ({"content": "a b", "finish_reason": "content_filter"}, types.FinishReason.SAFETY),
        ({"content": "", "tool_calls": [{"name": "f", "arguments": {}}]}, types.FinishReason.STOP),
    ],
)
def test_finish_reasons(server, knobs, reason):
    config = types.GenerateContentConfig(**knobs.pop("config", {}))
    client = _client(server, knobs)
    chunks = list(client.models.generate_content_stream(model="gemini-2.5-flash", contents="hi", config=config))
    assert chunks[-1].candidates[0].finish_reason == reason
    whole = client.models.generate_content(model="gemini-2.5-flash", contents="hi", config=config)
    assert whole.candidates[0].finish_reason == reason


def test_max_output_tokens_cuts(server):
    client = _client(server, {"content": "one two three four five six"})
    config = types.GenerateContentConfig(max_output_tokens=2)
    answer = client.models.generate_content(model="gemini-2.5-flash", contents="hi", config=config)
    assert answer.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS
    assert answer.usage_metadata.candidates_token_count == 2


def test_candidate_count(server):
    config = types.GenerateContentConfig(candidate_count=2)
    client = _client(server)
    answer = client.models.generate_content(model="gemini-2.5-flash", contents="hi", config=config)
    assert [c.index for c in answer.candidates] == [0, 1]


def test_error_event_raises(server):
    client = _client(server, {"content": "a b c d", "fault": {"kind": "error_event", "at_token": 2}})
    seen = []
    with pytest.raises(genai.errors.ServerError) as caught:
        for chunk in client.models.generate_content_stream(model="gemini-2.5-flash", contents="hi"):
            seen.append(chunk.text)
    assert caught.value.code == 500
    assert "".join(seen) == "a b"


def test_error_event_rate_limit_code(server):
    fault = {"kind": "error_event", "at_token": 0, "code": "rate_limit_exceeded"}
    with pytest.raises(genai.errors.ClientError) as caught:
        client = _client(server, {"fault": fault})
        list(client.models.generate_content_stream(model="gemini-2.5-flash", contents="hi"))
    assert caught.value.code == 429


def test_one_byte_writes_still_parse(server):
    client = _client(server, {"content": "Hello there friend", "chunk_bytes": 1, "chunk_gap_ms": 0})
    chunks = list(client.models.generate_content_stream(model="gemini-2.5-flash", contents="hi"))
    assert "".join(c.text or "" for c in chunks) == "Hello there friend"


@pytest.mark.parametrize("status", [400, 401, 403, 404, 500, 503])
def test_http_error_statuses(server, status):
    url = server.url + "/v1beta/models/gemini-2.5-flash:generateContent"
    body = {"contents": _contents(), "mockstream": {"fault": {"kind": "http_error", "status": status}}}
    answer = httpx.post(url, json=body)
    assert answer.status_code == status
    error = answer.json()["error"]
    assert error["code"] == status
    names = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND"}
    assert error["status"] == {**names, 500: "INTERNAL", 503: "UNAVAILABLE"}[status]


def test_bad_body_through_the_sdk(server):
    client = _client(server)
    with pytest.raises(genai.errors.ClientError) as caught:
        client.models.generate_content(
            model="gemini-2.5-flash", contents="hi", config=types.GenerateContentConfig(candidate_count=99)
        )
    assert caught.value.code == 400 and caught.value.status == "INVALID_ARGUMENT"


def test_unknown_gemini_path_in_googles_shape(server):
    answer = httpx.post(server.url + "/v1beta/models/gemini-2.5-flash:nope", json={})
    assert answer.status_code in (404, 405)
    assert answer.json()["error"]["status"] in ("NOT_FOUND", "METHOD_NOT_ALLOWED")
    missing = httpx.get(server.url + "/v1beta/models/no-such-model")
    assert missing.status_code == 404 and missing.json()["error"]["status"] == "NOT_FOUND"


def test_models_list_through_the_sdk(server):
    client = _client(server)
    names = [m.name for m in client.models.list()]
    assert "models/gemini-2.5-flash" in names
    one = client.models.get(model="gemini-2.5-flash")
    assert one.name == "models/gemini-2.5-flash"


def test_embeddings_deterministic_and_dimensions(server):
    client = _client(server)
    a = client.models.embed_content(model="gemini-embedding-001", contents="x").embeddings[0].values
    b = client.models.embed_content(model="gemini-embedding-001", contents="x").embeddings[0].values
    assert a == b and len(a) == 3072
    small = client.models.embed_content(
        model="gemini-embedding-001", contents="x", config=types.EmbedContentConfig(output_dimensionality=64)
    )
    assert len(small.embeddings[0].values) == 64
    batch = client.models.embed_content(model="gemini-embedding-001", contents=["y", "x"])
    assert batch.embeddings[1].values == pytest.approx(a)
    assert batch.embeddings[0].values != batch.embeddings[1].values


def _raw_stream(server, knobs, sse=True):
    url = server.url + "/v1beta/models/gemini-2.5-flash:streamGenerateContent" + ("?alt=sse" if sse else "")
    with httpx.stream("POST", url, json={"contents": _contents(), "mockstream": knobs}) as answer:
        body = b""
        try:
            for piece in answer.iter_raw():
                body += piece
        except (httpx.RemoteProtocolError, httpx.ReadError):
            return answer.status_code, body, False
        return answer.status_code, body, True


def _sse_objects(body):
    return [json.loads(line[6:]) for line in body.decode().split("\n") if line.startswith("data: ")]


@pytest.mark.parametrize(
    "delivery", [{}, {"chunk_bytes": 3, "chunk_gap_ms": 0}, {"events_per_write": 3}, {"line_ending": "crlf"}]
)
@pytest.mark.parametrize("sse", [True, False])
def test_delivery_knobs_keep_the_bytes(server, delivery, sse):
    base = {"content": "alpha beta gamma delta", "seed": 7}
    plain = _raw_stream(server, base, sse)[1]
    status, body, whole = _raw_stream(server, {**base, **delivery}, sse)
    assert status == 200 and whole
    if delivery.get("line_ending") == "crlf" and sse:
        body = body.replace(b"\r\n", b"\n")
    assert body == plain
    objects = _sse_objects(body) if sse else json.loads(body)
    assert "".join(o["candidates"][0]["content"]["parts"][0]["text"] for o in objects) == "alpha beta gamma delta"


@pytest.mark.parametrize("sse", [True, False])
@pytest.mark.parametrize("kind", ["disconnect", "reset", "truncate", "error_event", "malformed", "stall"])
def test_faults_on_the_gemini_route(server, kind, sse):
    fault = {"kind": kind, "at_token": 2, **({"ms": 300} if kind == "stall" else {})}
    knobs = {"content": "alpha beta gamma delta", "fault": fault}
    status, body, whole = _raw_stream(server, knobs, sse)
    assert status == 200
    text = body.decode(errors="replace")
    if kind in ("disconnect", "reset"):
        assert not whole or "STOP" not in text
    if kind == "truncate":
        assert "finishReason" not in text
    if kind == "error_event":
        assert '{"error":' in text and "finishReason" not in text
        if not sse:
            assert json.loads(body)[-1]["error"]["code"] == 500
    if kind == "malformed":
        assert "STOP" in text
        if sse:
            with pytest.raises(ValueError):
                _sse_objects(body)
        else:
            with pytest.raises(ValueError):
                json.loads(body)
    if kind == "stall":
        assert "STOP" in text


def test_slow_headers_and_http_error_on_stream(server):
    status, body, _ = _raw_stream(server, {"fault": {"kind": "http_error", "status": 503}})
    assert status == 503 and json.loads(body)["error"]["status"] == "UNAVAILABLE"
    status, body, whole = _raw_stream(server, {"content": "a b", "fault": {"kind": "slow_headers", "ms": 100}})
    assert status == 200 and whole and _sse_objects(body)[-1]["candidates"][0]["finishReason"] == "STOP"


def test_unknown_model_through_the_sdk(server):
    client = _client(server)
    with pytest.raises(genai.errors.ClientError) as caught:
        client.models.get(model="no-such-model")
    assert caught.value.code == 404 and caught.value.status == "NOT_FOUND"


def test_openai_model_list_unchanged(server):
    assert httpx.get(server.url + "/v1/models").json()["object"] == "list"


def test_rate_limit_retry_delay_follows_retry_after(server):
    url = server.url + "/v1beta/models/gemini-2.5-flash:generateContent"
    body = {"contents": _contents(), "mockstream": {"fault": {"kind": "http_error", "status": 429, "retry_after": 3}}}
    answer = httpx.post(url, json=body)
    assert answer.status_code == 429
    assert answer.json()["error"]["details"][0]["retryDelay"] == "3s"
