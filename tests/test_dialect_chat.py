"""Chat Completions on the wire: what httpx reads from a real socket, byte for byte and frame by frame.

The shapes asserted here are the ones `wire-format.md` §0, §1 and §5 say real clients depend on.
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest
from helpers import plain_http

from mockstream.plan.content import tokenize
from mockstream.plan.schema import DEFAULT_TEXT, Scenario

USER = [{"role": "user", "content": "Say something."}]
REQUEST_ID = re.compile(r"req_[0-9a-f]{32}")


def chat_body(knobs: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "gpt-4o-mini", "messages": USER, "stream": True, **fields}
    if knobs is not None:
        body["mockstream"] = knobs
    return body


def stream_raw(server, body: dict[str, Any], headers: dict[str, str] | None = None) -> tuple[httpx.Response, bytes]:
    """POST and read the body as the raw bytes that came off the socket."""
    with plain_http() as client, client.stream(
        "POST", f"{server.base_url}/chat/completions", json=body, headers=headers
    ) as response:
        raw = b"".join(response.iter_raw())
    return response, raw


def frames(raw: bytes) -> list[str]:
    """Split an SSE body into the payloads of its frames, insisting every frame is exactly `data: <x>\\n\\n`."""
    text = raw.decode("utf-8")
    assert not text.startswith("\ufeff"), "a BOM makes clients lose the first event"
    assert "\r" not in text
    assert text.endswith("\n\n"), f"the last frame must end with its blank line: {text[-40:]!r}"
    payloads = []
    for block in text[:-2].split("\n\n"):
        lines = block.split("\n")
        assert len(lines) == 1, f"a frame is one data line, no event:/id:/retry: lines: {block!r}"
        assert lines[0].startswith("data: "), f"not a data line: {lines[0]!r}"
        payloads.append(lines[0][len("data: "):])
    return payloads


def chunks_of(raw: bytes) -> list[dict[str, Any]]:
    """The JSON chunks of a finished stream; checks it ends with exactly one `[DONE]` and nothing after."""
    payloads = frames(raw)
    assert payloads[-1] == "[DONE]"
    assert "[DONE]" not in payloads[:-1]
    assert raw.endswith(b"\n\ndata: [DONE]\n\n")
    return [json.loads(p) for p in payloads[:-1]]


def stream_chunks(server, knobs: dict[str, Any] | None = None, headers: dict[str, str] | None = None,
                  **fields: Any) -> list[dict[str, Any]]:
    response, raw = stream_raw(server, chat_body(knobs, **fields), headers)
    assert response.status_code == 200, raw
    return chunks_of(raw)


def contents(chunks: list[dict[str, Any]], index: int = 0) -> list[str]:
    """The content deltas of one choice, in order (the role chunk's empty string is not a delta)."""
    return [c["choices"][0]["delta"]["content"] for c in chunks
            if c["choices"] and c["choices"][0]["index"] == index
            and "role" not in c["choices"][0]["delta"] and c["choices"][0]["delta"].get("content") is not None]


# ---------------------------------------------------------------- headers and framing ---
def test_stream_headers_are_the_apis(server):
    response, raw = stream_raw(server, chat_body({"content": "Hi."}))
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert response.headers["cache-control"] == "no-cache"
    assert REQUEST_ID.fullmatch(response.headers["x-request-id"]), response.headers["x-request-id"]
    assert "content-length" not in response.headers  # streamed, not buffered into one body
    assert chunks_of(raw)


def test_every_frame_is_one_data_line_and_done_ends_the_body(server):
    with plain_http() as client, client.stream(
        "POST", f"{server.base_url}/chat/completions", json=chat_body({"content": "One, two, three."})
    ) as response:
        lines = list(response.iter_lines())  # returns only once the body has ended
    non_blank = [line for line in lines if line]
    assert non_blank[-1] == "data: [DONE]"
    assert all(line == "" for line in lines[lines.index("data: [DONE]") + 1:])  # nothing after [DONE]
    assert all(line.startswith("data: ") for line in non_blank)
    assert not any(line.startswith(("event:", "id:", "retry:", ":")) for line in lines)
    # data line, blank line, data line, blank line, ...
    assert lines[0::2] == non_blank
    assert all(line == "" for line in lines[1::2])


def test_chunks_share_id_created_model_and_fingerprint(server):
    chunks = stream_chunks(server, {"content": "Shared fields on every chunk."}, model="my-test-model")
    assert len(chunks) > 3
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1
    assert len({c["created"] for c in chunks}) == 1
    assert len({c["system_fingerprint"] for c in chunks}) == 1
    assert {c["model"] for c in chunks} == {"my-test-model"}  # echoed from the request
    first = chunks[0]
    assert first["id"].startswith("chatcmpl-") and len(first["id"]) > len("chatcmpl-")
    assert isinstance(first["created"], int) and first["created"] > 1_600_000_000
    assert first["system_fingerprint"].startswith("fp_")
    assert all(len(c["choices"]) == 1 for c in chunks)


def test_text_answer_is_role_chunk_content_chunks_then_empty_finish_chunk(server):
    text = "Hello, streaming world!"
    chunks = stream_chunks(server, {"content": text})
    role, *middle, finish = chunks
    assert role["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    assert role["choices"][0]["finish_reason"] is None
    for chunk in middle:
        choice = chunk["choices"][0]
        assert set(choice["delta"]) == {"content"}, choice["delta"]  # changed keys only, no repeated role
        assert choice["finish_reason"] is None
    assert "".join(c["choices"][0]["delta"]["content"] for c in middle) == text
    assert len(middle) > 1
    assert finish["choices"][0]["delta"] == {}
    assert finish["choices"][0]["finish_reason"] == "stop"


def test_content_is_cut_by_the_documented_tokenizer(server):
    text = "The answer is 42, isn't it?"
    chunks = stream_chunks(server, {"content": text})
    assert contents(chunks) == tokenize(text)
    assert "".join(contents(chunks)) == text


def test_each_cjk_character_is_its_own_delta(server):
    chunks = stream_chunks(server, {"content": "你好!"})
    assert contents(chunks) == ["你", "好", "!"]


def test_tokens_arrive_as_exactly_those_deltas_with_raw_utf8(server):
    tokens = ["你", "好", "!", " 👋🏽", "  spaced ", "\n", 'quote"back\\slash']
    response, raw = stream_raw(server, chat_body({"tokens": tokens}))
    assert response.status_code == 200
    assert contents(chunks_of(raw)) == tokens
    assert "你".encode() in raw  # sent as UTF-8, like the API, not as \\u escapes


def test_empty_content_gives_role_and_finish_chunks_only(server):
    chunks = stream_chunks(server, {"content": ""})
    assert len(chunks) == 2
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[1]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}


# ---------------------------------------------------------------- tool calls ---
def tool_fragments(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [call for c in chunks if c["choices"] for call in c["choices"][0]["delta"].get("tool_calls") or []]


def test_role_chunk_content_is_null_when_the_answer_opens_with_a_tool_call(server):
    chunks = stream_chunks(server, {"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]})
    delta = chunks[0]["choices"][0]["delta"]
    assert delta["role"] == "assistant"
    assert delta["content"] is None
    assert contents(chunks) == []
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["choices"][0]["delta"] == {}


def test_tool_call_fragments_each_carry_their_index_and_the_head_only_once(server):
    calls = [
        {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}},
        {"name": "get_time", "arguments": '{"zone": "Europe/Paris", "format": [24, "h"]}'},
    ]
    chunks = stream_chunks(server, {"content": "Let me check.", "tool_calls": calls})
    assert chunks[0]["choices"][0]["delta"]["content"] == ""  # content comes first, so the role chunk has ""
    fragments = tool_fragments(chunks)
    assert all("index" in f for f in fragments), "clients key fragments on index"
    indices = [f["index"] for f in fragments]
    assert indices == sorted(indices) and set(indices) == {0, 1}  # parallel calls are sequential
    for i, call in enumerate(calls):
        mine = [f for f in fragments if f["index"] == i]
        head, *rest = mine
        assert head["id"].startswith("call_")
        assert head["type"] == "function"
        assert head["function"] == {"name": call["name"], "arguments": ""}
        assert len(rest) > 1, "arguments should arrive in several fragments"
        for fragment in rest:
            # a repeated id/type/name would be concatenated by openai-python's helper
            assert set(fragment) == {"index", "function"}, fragment
            assert set(fragment["function"]) == {"arguments"}
        arguments = "".join(f["function"]["arguments"] for f in rest)
        expected = call["arguments"] if isinstance(call["arguments"], dict) else json.loads(call["arguments"])
        assert json.loads(arguments) == expected
    heads = [f for f in fragments if "id" in f]
    assert len({h["id"] for h in heads}) == 2
    # every content delta comes before the first tool-call fragment
    kinds = ["tool" if c["choices"][0]["delta"].get("tool_calls") else "content"
             for c in chunks[1:-1]]
    assert kinds == sorted(kinds, key=lambda k: k == "tool") and "content" in kinds
    assert "".join(contents(chunks)) == "Let me check."
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_a_scripted_tool_call_id_is_used(server):
    chunks = stream_chunks(server, {"tool_calls": [{"id": "call_mine", "name": "f", "arguments": {}}]})
    assert [f["id"] for f in tool_fragments(chunks) if "id" in f] == ["call_mine"]


# ---------------------------------------------------------------- n > 1 ---
def test_n_choices_interleave_by_index_each_with_role_and_finish(server):
    text = "Two choices, one stream."
    chunks = stream_chunks(server, {"content": text}, n=2)
    indices = [c["choices"][0]["index"] for c in chunks]
    assert set(indices) == {0, 1}
    for i in (0, 1):
        mine = [c["choices"][0] for c in chunks if c["choices"][0]["index"] == i]
        assert mine[0]["delta"]["role"] == "assistant"
        assert sum("role" in m["delta"] for m in mine) == 1
        assert mine[-1]["delta"] == {} and mine[-1]["finish_reason"] == "stop"
        assert sum(m["finish_reason"] is not None for m in mine) == 1
        assert "".join(contents(chunks, i)) == text
    # interleaved, not one choice after the other
    assert indices.index(1) < len(indices) - 1 - indices[::-1].index(0)


# ---------------------------------------------------------------- usage ---
def test_include_usage_puts_null_usage_on_every_chunk_and_a_usage_chunk_last(server):
    tokens = ["a", "b", "c", "d", "e"]
    chunks = stream_chunks(server, {"tokens": tokens}, stream_options={"include_usage": True})
    *answer, last = chunks
    assert all("usage" in c and c["usage"] is None for c in answer)
    assert last["choices"] == []
    usage = last["usage"]
    assert all(isinstance(usage[k], int) for k in ("prompt_tokens", "completion_tokens", "total_tokens"))
    assert usage["completion_tokens"] == len(contents(chunks)) == len(tokens)
    assert usage["prompt_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert last["id"] == answer[0]["id"] and last["model"] == answer[0]["model"]


def test_prompt_tokens_are_counted_from_the_messages(server):
    def prompt_tokens(messages):
        chunks = stream_chunks(server, {"content": "ok"}, messages=messages, stream_options={"include_usage": True})
        return chunks[-1]["usage"]["prompt_tokens"]

    short = prompt_tokens([{"role": "user", "content": "Hi"}])
    long = prompt_tokens([{"role": "user", "content": "Hi there, how are you doing on this fine day?"}])
    two = prompt_tokens([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}])
    assert short < long
    assert short < two


def test_without_include_usage_there_is_no_usage_chunk(server):
    chunks = stream_chunks(server, {"content": "No usage here."})
    assert all(c["choices"] for c in chunks)
    assert all(c.get("usage") is None for c in chunks)


# ---------------------------------------------------------------- non-streaming ---
def test_non_streaming_answer_is_one_chat_completion(server):
    text = "Just one object."
    with plain_http() as client:
        response = client.post(f"{server.base_url}/chat/completions",
                               json=chat_body({"content": text}, stream=False))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert REQUEST_ID.fullmatch(response.headers["x-request-id"])
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-")
    assert body["model"] == "gpt-4o-mini"
    [choice] = body["choices"]
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"] == text
    assert choice["finish_reason"] == "stop"
    assert body["usage"]["completion_tokens"] == len(tokenize(text))


# ---------------------------------------------------------------- scenario selection ---
SCENARIOS = [
    Scenario.from_dict({"name": "alpha", "content": "Alpha speaking."}),
    Scenario.from_dict({"name": "beta", "tokens": ["Beta", " here", "."]}),
    Scenario.from_dict({"name": "mini", "match": {"model": "gpt-4o-mini.*"}, "content": "Matched the model."}),
    Scenario.from_dict({"name": "weather", "match": {"user": r"(?i)\bweather\b"}, "content": "Sunny."}),
    Scenario.from_dict({"name": "tenant", "match": {"headers": {"X-Tenant": "acme"}}, "content": "Hello, Acme."}),
]


@pytest.fixture(scope="module")
def scripted():
    from mockstream.testing import MockServer

    with MockServer(SCENARIOS, speed=0) as srv:
        yield srv


def answer(server, model: str = "gpt-4o", knobs=None, headers=None, user: str = "Say something.",
           messages=None) -> str:
    chunks = stream_chunks(server, knobs, headers, model=model,
                           messages=messages or [{"role": "user", "content": user}])
    return "".join(contents(chunks))


def test_default_scenario_streams_the_built_in_text(server):
    response, raw = stream_raw(server, {"model": "gpt-4o", "messages": USER, "stream": True})
    assert response.status_code == 200
    assert "".join(contents(chunks_of(raw))) == DEFAULT_TEXT


def test_scenario_chosen_by_header(scripted):
    assert answer(scripted, headers={"X-Mockstream-Scenario": "alpha"}) == "Alpha speaking."
    assert answer(scripted, headers={"x-mockstream-scenario": "beta"}) == "Beta here."


def test_scenario_chosen_by_knob(scripted):
    assert answer(scripted, knobs={"scenario": "beta"}) == "Beta here."


def test_scenario_chosen_by_model_name(scripted):
    assert answer(scripted, model="alpha") == "Alpha speaking."


def test_header_wins_over_knob_and_knob_over_model(scripted):
    assert answer(scripted, model="alpha", knobs={"scenario": "beta"},
                  headers={"X-Mockstream-Scenario": "alpha"}) == "Alpha speaking."
    assert answer(scripted, model="alpha", knobs={"scenario": "beta"}) == "Beta here."


def test_request_answer_replaces_the_scenarios(scripted):
    assert answer(scripted, knobs={"scenario": "alpha", "content": "Mine."}) == "Mine."


def test_match_rule_on_model_regex(scripted):
    assert answer(scripted, model="gpt-4o-mini-2024-07-18") == "Matched the model."
    assert answer(scripted, model="gpt-4o") == DEFAULT_TEXT  # the regex must match the whole model


def test_match_rule_on_last_user_message(scripted):
    assert answer(scripted, user="What's the Weather in Paris?") == "Sunny."
    earlier = [{"role": "user", "content": "weather?"}, {"role": "assistant", "content": "Where?"},
               {"role": "user", "content": "Never mind."}]
    assert answer(scripted, messages=earlier) == DEFAULT_TEXT


def test_match_rule_on_header(scripted):
    assert answer(scripted, headers={"X-Tenant": "acme"}) == "Hello, Acme."
    assert answer(scripted, headers={"X-Tenant": "other"}) == DEFAULT_TEXT


@pytest.mark.parametrize("how", ["header", "knob"])
def test_unknown_scenario_is_404_listing_the_loaded_names(scripted, how):
    headers = {"X-Mockstream-Scenario": "alpah"} if how == "header" else None
    knobs = {"scenario": "alpah"} if how == "knob" else None
    with plain_http() as client:
        response = client.post(f"{scripted.base_url}/chat/completions", json=chat_body(knobs), headers=headers)
    assert response.status_code == 404
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    for name in ("alpha", "beta", "mini", "weather", "tenant", "default"):
        assert name in error["message"]
    assert "'alpha'" in error["message"].split("Loaded")[0]  # the closest name is suggested
    assert error["param"] == ("mockstream.scenario" if how == "knob" else "X-Mockstream-Scenario")
    # and the server keeps serving
    assert answer(scripted, knobs={"scenario": "alpha"}) == "Alpha speaking."
