"""Legacy Completions (`POST /v1/completions`) with openai-python, sync and async, and on the wire.

wire-format.md §2: Chat framing (`data:` lines, `data: [DONE]`), every chunk a `text_completion` with
`choices[].text`, `logprobs: null` and `finish_reason` on the last choice chunk; `include_usage` adds a
`choices: []` chunk with usage.

Every fault on this endpoint, raw and through the SDK, is in test_dialect_matrix.py.
"""

from __future__ import annotations

import re
from typing import Any

import openai
import pytest
from openai import OpenAI
from wire import check_framing, read, request_body

from mockstream.plan.content import tokenize

TEXT = "Once upon a time, completions streamed plain text."
TOKENS = ["Once", " upon", " a", " time", ","]
REQUEST_ID = re.compile(r"req_[0-9a-f]{32}")
K = 3


def create(client: OpenAI, knobs: dict[str, Any] | None = None, **kwargs: Any):
    kwargs.setdefault("model", "gpt-3.5-turbo-instruct")
    kwargs.setdefault("prompt", "Once")
    return client.completions.create(extra_body={"mockstream": knobs or {}}, **kwargs)


def collect(client: OpenAI, knobs: dict[str, Any], **kwargs: Any) -> tuple[list[Any], BaseException | None]:
    chunks: list[Any] = []
    try:
        for chunk in create(client, knobs, stream=True, **kwargs):
            chunks.append(chunk)
    except Exception as exc:
        return chunks, exc
    return chunks, None


def texts(chunks: list[Any], index: int = 0) -> list[str]:
    """The text deltas of one choice (the finish chunk's empty text is not a delta)."""
    return [c.choices[0].text for c in chunks
            if c.choices and c.choices[0].index == index and c.choices[0].finish_reason is None]


def finishes(chunks: list[Any], index: int = 0) -> list[str]:
    return [c.choices[0].finish_reason for c in chunks
            if c.choices and c.choices[0].index == index and c.choices[0].finish_reason]


# ---------------------------------------------------------------- streaming through the SDK ---
def test_sync_stream_of_text_completion_chunks(client):
    chunks, exc = collect(client, {"content": TEXT})
    assert exc is None
    assert "".join(texts(chunks)) == TEXT
    assert len(texts(chunks)) == len(tokenize(TEXT))
    assert finishes(chunks) == ["stop"]
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert {c.object for c in chunks} == {"text_completion"}
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("cmpl-")
    assert {c.model for c in chunks} == {"gpt-3.5-turbo-instruct"}
    assert all(c.choices[0].logprobs is None for c in chunks)
    assert all(c.usage is None for c in chunks)


async def test_async_stream(aclient):
    stream = await aclient.completions.create(model="gpt-3.5-turbo-instruct", prompt="Once", stream=True,
                                              extra_body={"mockstream": {"tokens": TOKENS}})
    chunks = [c async for c in stream]
    assert texts(chunks) == TOKENS
    assert finishes(chunks) == ["stop"]


def test_tokens_arrive_as_exactly_those_deltas(client):
    tokens = ["你", "好", "!", " 👋", "  two  spaces", "\n\n", '}{"json-ish']
    chunks, _ = collect(client, {"tokens": tokens})
    assert texts(chunks) == tokens


def test_raw_chunks_on_the_wire(server):
    reply = read(server.url, "completions", request_body("completions", {"tokens": TOKENS}))
    assert reply.status == 200
    assert reply.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert REQUEST_ID.fullmatch(reply.headers["x-request-id"])
    check_framing("completions", reply)
    assert reply.events[-1].data == "[DONE]"
    assert reply.raw.endswith(b"\n\ndata: [DONE]\n\n")
    chunks = [e.json for e in reply.events[:-1]]
    assert [c["choices"][0]["text"] for c in chunks] == [*TOKENS, ""]
    for chunk in chunks:
        assert set(chunk) == {"id", "object", "created", "model", "system_fingerprint", "choices"}
        assert chunk["object"] == "text_completion"
        [choice] = chunk["choices"]
        assert set(choice) == {"text", "index", "logprobs", "finish_reason"}
        assert choice["logprobs"] is None and choice["index"] == 0
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None] * len(TOKENS) + ["stop"]
    assert len({(c["id"], c["created"], c["system_fingerprint"]) for c in chunks}) == 1


# ---------------------------------------------------------------- usage, n, non-streaming, length ---
def test_include_usage_adds_a_last_chunk_with_usage(client):
    chunks, _ = collect(client, {"tokens": TOKENS}, stream_options={"include_usage": True})
    *answer, last = chunks
    assert last.choices == []
    assert last.usage.completion_tokens == len(TOKENS)
    assert last.usage.prompt_tokens > 0
    assert last.usage.total_tokens == last.usage.prompt_tokens + len(TOKENS)
    assert all(c.usage is None for c in answer)
    assert texts(answer) == TOKENS


def test_n_choices_interleave_each_with_its_finish(client):
    chunks, _ = collect(client, {"tokens": TOKENS}, n=3, stream_options={"include_usage": True})
    assert all(len(c.choices) <= 1 for c in chunks)
    for index in range(3):
        assert texts(chunks, index) == TOKENS
        assert finishes(chunks, index) == ["stop"]
    order = [c.choices[0].index for c in chunks if c.choices]
    assert order[:3] == [0, 1, 2]  # slot by slot, not choice after choice
    assert chunks[-1].usage.completion_tokens == 3 * len(TOKENS)


def test_non_streaming_text_completion(client):
    completion = create(client, {"content": TEXT})
    assert completion.object == "text_completion"
    assert completion.id.startswith("cmpl-")
    [choice] = completion.choices
    assert choice.text == TEXT
    assert choice.finish_reason == "stop"
    assert choice.logprobs is None
    assert completion.usage.completion_tokens == len(tokenize(TEXT))
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
    assert REQUEST_ID.fullmatch(completion._request_id)
    several = create(client, {"content": TEXT}, n=2)
    assert [(c.index, c.text) for c in several.choices] == [(0, TEXT), (1, TEXT)]


async def test_async_non_streaming(aclient):
    completion = await aclient.completions.create(model="m", prompt="x", extra_body={"mockstream": {"tokens": TOKENS}})
    assert completion.choices[0].text == "".join(TOKENS)


def test_max_tokens_cuts_with_length(client):
    chunks, _ = collect(client, {"tokens": TOKENS}, max_tokens=2)
    assert texts(chunks) == TOKENS[:2]
    assert finishes(chunks) == ["length"]
    completion = create(client, {"tokens": TOKENS}, max_tokens=2)
    assert completion.choices[0].text == "".join(TOKENS[:2])
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage.completion_tokens == 2


@pytest.mark.parametrize(("reason", "expected"), [
    ("stop", "stop"), ("length", "length"), ("content_filter", "content_filter"), ("tool_calls", "stop"),
])
def test_finish_reasons(client, reason, expected):
    chunks, _ = collect(client, {"tokens": TOKENS, "finish_reason": reason})
    assert finishes(chunks) == [expected]  # the legacy API has no tool_calls ending
    assert create(client, {"tokens": TOKENS, "finish_reason": reason}).choices[0].finish_reason == expected


def test_tool_calls_are_not_spelled(client):
    chunks, _ = collect(client, {"content": "Only text.", "tool_calls": [{"name": "f", "arguments": {"a": 1}}]})
    assert "".join(texts(chunks)) == "Only text."
    assert finishes(chunks) == ["stop"]


def test_a_list_of_prompts_gets_a_choice_each(client):
    completion = create(client, {"tokens": TOKENS}, prompt=["One", "Two"])
    assert [c.index for c in completion.choices] == [0, 1]


@pytest.mark.parametrize(("prompt", "prompt_tokens", "choices"), [([7, 8, 9], 3, 1), ([[1, 2], [3]], 3, 2)])
def test_token_array_prompts_are_accepted(client, prompt, prompt_tokens, choices):
    completion = create(client, {"tokens": TOKENS}, prompt=prompt)
    assert completion.usage.prompt_tokens == prompt_tokens
    assert len(completion.choices) == choices


# ---------------------------------------------------------------- one-byte writes ---
def test_chunk_bytes_one_still_reassembles(client):
    text = "Héllo wörld — 你好，世界！ 😀"
    chunks, exc = collect(client, {"content": text, "chunk_bytes": 1, "chunk_gap_ms": 0},
                          stream_options={"include_usage": True})
    assert exc is None
    assert "".join(texts(chunks)) == text
    assert finishes(chunks) == ["stop"]
    assert chunks[-1].usage.completion_tokens == len(tokenize(text))


async def test_async_chunk_bytes_one(aclient):
    stream = await aclient.completions.create(model="m", prompt="x", stream=True, extra_body={"mockstream": {
        "tokens": TOKENS, "chunk_bytes": 1, "chunk_gap_ms": 0}})
    assert texts([c async for c in stream]) == TOKENS


# ---------------------------------------------------------------- validation ---
def test_prompt_of_the_wrong_type_is_rejected(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model="m", prompt={"text": "x"})  # type: ignore[arg-type]
    assert info.value.param == "prompt"


def test_stream_options_without_stream_is_rejected(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model="m", prompt="x", stream_options={"include_usage": True})
    assert info.value.param == "stream_options"
