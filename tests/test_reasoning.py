"""Reasoning streamed before the answer, in each API's own words, read by the real SDKs and off the wire.

Chat Completions: `reasoning_content` (or `reasoning`) deltas, as vLLM, DeepSeek and OpenRouter send them.
Responses: a `reasoning` output item with its summary events. Anthropic Messages: a `thinking` block with a
`signature_delta`, or one `redacted_thinking` block. Usage counts the reasoning in every API.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
from helpers import anthropic_sdk, async_anthropic_sdk, openai_sdk
from wire import PATHS, events_of, read, request_body

from mockstream.deliver.frames import TOKEN
from mockstream.dialects.recorded import kind_of
from mockstream.plan.content import tokenize

THOUGHT = "The user greets me. I should greet back, briefly."
ANSWER = "Hello there!"
KNOBS = {"reasoning": THOUGHT, "content": ANSWER}
USER = [{"role": "user", "content": "Hi"}]


def datas(raw: bytes) -> list[Any]:
    """The JSON of every `data:` line of an SSE body (LF framing), `[DONE]` and empty ones left out."""
    lines = [line[len("data: "):] for line in raw.decode().split("\n") if line.startswith("data: ")]
    return [json.loads(line) for line in lines if line not in ("[DONE]", "")]


def chat_stream(server, knobs: dict[str, Any], **fields: Any) -> list[dict[str, Any]]:
    return [e.json for e in events_of(server.url, "chat", knobs, **fields) if e.data != "[DONE]"]


# ---------------------------------------------------------------- Chat Completions ---
def test_chat_streams_reasoning_content_before_the_content_and_counts_it(server):
    with openai_sdk(server) as client:
        stream = client.chat.completions.create(model="deepseek-reasoner", messages=USER, stream=True,
                                                stream_options={"include_usage": True},
                                                extra_body={"mockstream": KNOBS})
        order, reasoning, content, usage = [], [], [], None
        for chunk in stream:
            if chunk.usage is not None:
                usage = chunk.usage
            for choice in chunk.choices:
                extra = choice.delta.model_extra or {}
                if extra.get("reasoning_content"):
                    reasoning.append(extra["reasoning_content"])
                    order.append("reasoning")
                if choice.delta.content:
                    content.append(choice.delta.content)
                    order.append("content")
    assert reasoning == tokenize(THOUGHT)
    assert "".join(content) == ANSWER
    assert order == ["reasoning"] * len(reasoning) + ["content"] * len(content)
    assert usage is not None
    assert usage.completion_tokens_details.reasoning_tokens == len(tokenize(THOUGHT))
    assert usage.completion_tokens == len(tokenize(THOUGHT)) + len(tokenize(ANSWER))


def test_chat_reasoning_field_spells_it_as_openrouter_does(server):
    chunks = chat_stream(server, {**KNOBS, "reasoning_field": "reasoning"})
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert "".join(d.get("reasoning", "") for d in deltas) == THOUGHT
    assert not any("reasoning_content" in d for d in deltas)
    # a reasoning chunk carries the reasoning alone, as vLLM sends it
    assert {"reasoning"} in [set(d) for d in deltas]


def test_a_non_streamed_chat_message_carries_its_reasoning(server):
    with openai_sdk(server) as client:
        answer = client.chat.completions.create(model="m", messages=USER, extra_body={"mockstream": KNOBS})
    message = answer.choices[0].message
    assert message.content == ANSWER
    assert (message.model_extra or {})["reasoning_content"] == THOUGHT
    assert answer.usage is not None and answer.usage.completion_tokens_details is not None
    assert answer.usage.completion_tokens_details.reasoning_tokens == len(tokenize(THOUGHT))


def test_each_chat_choice_reasons_on_its_own(server):
    chunks = chat_stream(server, {"reasoning_tokens": 5, "content": ANSWER}, n=2)
    by_choice: dict[int, list[str]] = {0: [], 1: []}
    for chunk in chunks:
        for choice in chunk["choices"]:
            if "reasoning_content" in choice["delta"]:
                by_choice[choice["index"]].append(choice["delta"]["reasoning_content"])
    assert len(by_choice[0]) == len(by_choice[1]) == 5
    assert by_choice[0] != by_choice[1]  # each choice draws its own seeded reasoning


def test_max_tokens_cuts_the_reasoning_first(server):
    chunks = chat_stream(server, KNOBS, max_completion_tokens=3)
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert [d["reasoning_content"] for d in deltas if "reasoning_content" in d] == tokenize(THOUGHT)[:3]
    assert not any(d.get("content") for d in deltas)
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


def test_random_reasoning_is_seeded(server):
    def body(seed: int) -> bytes:
        knobs = {"reasoning_tokens": 20, "content": ANSWER, "seed": seed}
        payload = {"model": "m", "messages": USER, "stream": True, "mockstream": knobs}
        return httpx.post(f"{server.base_url}/chat/completions", json=payload, timeout=10).content

    assert body(1) == body(1)
    assert body(1) != body(2)
    reasoning = [e["choices"][0]["delta"].get("reasoning_content", "") for e in datas(body(1))]
    assert len([r for r in reasoning if r]) == 20


def test_the_eventsource_route_streams_reasoning_too(server):
    reply = httpx.get(f"{server.base_url}/chat/completions",
                      params={"reasoning": THOUGHT, "content": ANSWER}, timeout=10)
    data = datas(reply.content)
    assert "".join(c["choices"][0]["delta"].get("reasoning_content", "") for c in data if c["choices"]) == THOUGHT


def test_legacy_completions_neither_spell_nor_count_reasoning(server):
    events = events_of(server.url, "completions", KNOBS, stream_options={"include_usage": True})
    assert not any("reasoning" in e.data for e in events)
    usage = [e.json for e in events if e.data != "[DONE]"][-1]["usage"]
    assert usage["completion_tokens"] == len(tokenize(ANSWER))


def test_reasoning_and_reasoning_tokens_together_are_refused(server):
    body = {"model": "m", "messages": USER, "mockstream": {"reasoning": "a", "reasoning_tokens": 3}}
    reply = httpx.post(f"{server.base_url}/chat/completions", json=body, timeout=10)
    assert reply.status_code == 400
    assert reply.json()["error"]["param"] == "mockstream.reasoning_tokens"


# ---------------------------------------------------------------- Responses ---
def test_responses_stream_helper_shows_the_reasoning_item_and_its_summary(server):
    with openai_sdk(server) as client, client.responses.stream(
            model="o4-mini", input="Hi", reasoning={"summary": "auto"}, extra_body={"mockstream": KNOBS}) as stream:
        events = list(stream)
        final = stream.get_final_response()
    types = [e.type for e in events]
    thinking = [e.delta for e in events if e.type == "response.reasoning_summary_text.delta"]
    assert thinking == tokenize(THOUGHT)
    assert types.index("response.reasoning_summary_part.added") < types.index("response.output_text.delta")
    assert types.index("response.reasoning_summary_part.done") < types.index("response.output_text.delta")
    reasoning, message = final.output
    assert reasoning.type == "reasoning" and reasoning.summary[0].text == THOUGHT
    assert message.type == "message" and final.output_text == ANSWER
    assert final.usage is not None and final.usage.output_tokens_details.reasoning_tokens == len(thinking)


def test_responses_items_after_the_reasoning_take_the_next_output_index(server):
    knobs = {"reasoning": THOUGHT, "content": ANSWER, "tool_calls": [{"name": "lookup", "arguments": {"q": 1}}]}
    events = [e.json for e in events_of(server.url, "responses", knobs)]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    added = [(e["output_index"], e["item"]["type"]) for e in events if e["type"] == "response.output_item.added"]
    assert added == [(0, "reasoning"), (1, "message"), (2, "function_call")]
    text = [e for e in events if e["type"] == "response.output_text.delta"]
    assert {e["output_index"] for e in text} == {1}
    done = [e for e in events if e["type"] == "response.reasoning_summary_text.done"]
    assert [(e["text"], e["summary_index"], e["output_index"]) for e in done] == [(THOUGHT, 0, 0)]
    final = events[-1]["response"]
    assert [item["type"] for item in final["output"]] == ["reasoning", "message", "function_call"]


def test_a_non_streamed_response_has_the_reasoning_item_first(server):
    with openai_sdk(server) as client:
        response = client.responses.create(model="o4-mini", input="Hi", extra_body={"mockstream": KNOBS})
    assert response.output[0].type == "reasoning"
    assert response.output[0].summary[0].text == THOUGHT
    assert response.output_text == ANSWER


# ---------------------------------------------------------------- Anthropic Messages ---
def test_anthropic_stream_helper_shows_thinking_and_its_signature(server):
    with anthropic_sdk(server) as client, client.messages.stream(
            model="claude-test-model", max_tokens=2048, messages=USER,
            extra_body={"mockstream": KNOBS}) as stream:
        events = list(stream)
        final = stream.get_final_message()
    thinking = [e.thinking for e in events if e.type == "thinking"]
    assert thinking == tokenize(THOUGHT)
    signatures = [e.signature for e in events if e.type == "signature"]
    assert len(signatures) == 1 and signatures[0]
    block, text = final.content
    assert block.type == "thinking" and block.thinking == THOUGHT and block.signature == signatures[0]
    assert text.type == "text" and text.text == ANSWER
    assert final.usage.output_tokens == len(tokenize(THOUGHT)) + len(tokenize(ANSWER))


def test_anthropic_blocks_are_numbered_after_the_thinking_block(server):
    knobs = {**KNOBS, "tool_calls": [{"name": "lookup"}]}
    starts = [e.json for e in events_of(server.url, "messages", knobs) if e.name == "content_block_start"]
    assert [(s["index"], s["content_block"]["type"]) for s in starts] == [(0, "thinking"), (1, "text"),
                                                                          (2, "tool_use")]


def test_redacted_thinking_arrives_as_one_opaque_block(server):
    with anthropic_sdk(server) as client, client.messages.stream(
            model="claude-test-model", max_tokens=2048, messages=USER,
            extra_body={"mockstream": {**KNOBS, "redacted_thinking": True}}) as stream:
        events = list(stream)
        final = stream.get_final_message()
    assert not [e for e in events if e.type == "thinking"]
    block = final.content[0]
    assert block.type == "redacted_thinking" and len(block.data) > 40
    assert THOUGHT not in block.data


async def test_async_anthropic_non_streamed_message_has_the_thinking_block(server):
    async with async_anthropic_sdk(server) as client:
        message = await client.messages.create(model="claude-test-model", max_tokens=2048, messages=USER,
                                               extra_body={"mockstream": KNOBS})
    assert [b.type for b in message.content] == ["thinking", "text"]
    assert message.content[0].thinking == THOUGHT and message.content[0].signature


# ---------------------------------------------------------------- timing and faults ---
@pytest.mark.parametrize("dialect", ["chat", "responses", "messages"])
def test_the_first_reasoning_token_is_the_first_token(make_server, dialect):
    srv = make_server(speed=1)
    knobs = {"reasoning": "Alpha bravo charlie", "content": "Zulu", "ttft_ms": 300, "itl_ms": 100}
    arrivals: list[tuple[float, bytes]] = []
    start = time.monotonic()
    with httpx.stream("POST", srv.url + PATHS[dialect], json=request_body(dialect, knobs), timeout=10) as reply:
        for piece in reply.iter_raw():
            arrivals.append((time.monotonic() - start, piece))
    body = b""
    first_reasoning = first_answer = None
    for at, piece in arrivals:
        body += piece
        if first_reasoning is None and b"Alpha" in body:
            first_reasoning = at
        if first_answer is None and b"Zulu" in body:
            first_answer = at
    assert first_reasoning is not None and first_answer is not None
    assert 0.25 <= first_reasoning < 0.6  # at ttft
    # three reasoning tokens, then the answer: the fourth token, at ttft + 3 * itl
    assert 0.55 <= first_answer < 1.0


@pytest.mark.parametrize("dialect", ["chat", "responses", "messages"])
def test_a_fault_at_token_k_strikes_inside_the_reasoning(server, dialect):
    knobs = {"reasoning": THOUGHT, "content": ANSWER, "fault": {"kind": "disconnect", "at_token": 2}}
    reply = read(server.url, dialect, request_body(dialect, knobs))
    text = reply.raw.decode()
    thought = tokenize(THOUGHT)
    assert json.dumps(thought[1])[1:-1] in text
    assert json.dumps(thought[2])[1:-1] not in text.split(json.dumps(thought[1])[1:-1], 1)[1]
    assert "Hello" not in text


def test_recorded_reasoning_events_count_as_tokens():
    chat = b'data: {"choices":[{"index":0,"delta":{"reasoning_content":"Hm"},"finish_reason":null}]}\n\n'
    summary = "response.reasoning_summary_text.delta"
    responses = f'event: {summary}\ndata: {{"type":"{summary}","delta":"Hm"}}\n\n'.encode()
    thinking = '{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Hm"}}'
    messages = f"event: content_block_delta\ndata: {thinking}\n\n".encode()
    assert [kind_of(e) for e in (chat, responses, messages)] == [TOKEN, TOKEN, TOKEN]
