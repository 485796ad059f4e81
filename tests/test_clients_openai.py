"""openai-python, sync and async, against a real mockstream server: what an application actually sees."""

from __future__ import annotations

import json
import re
from typing import Any

import openai
import pytest
from helpers import openai_sdk
from openai import OpenAI

from mockstream.plan.content import tokenize
from mockstream.plan.schema import Scenario

MESSAGES = [{"role": "user", "content": "Tell me something."}]
REQUEST_ID = re.compile(r"req_[0-9a-f]{32}")
TEXT = "Streams arrive in pieces; clients put them back together."


def create(client: OpenAI, knobs: dict[str, Any] | None = None, **kwargs: Any):
    kwargs.setdefault("model", "gpt-4o-mini")
    kwargs.setdefault("messages", MESSAGES)
    if knobs is not None:
        kwargs["extra_body"] = {"mockstream": knobs}
    return client.chat.completions.create(**kwargs)


def stream_chunks(client: OpenAI, knobs: dict[str, Any] | None = None, **kwargs: Any) -> list:
    return list(create(client, knobs, stream=True, **kwargs))


def content_deltas(chunks, index: int = 0) -> list[str]:
    return [c.choices[0].delta.content for c in chunks
            if c.choices and c.choices[0].index == index and c.choices[0].delta.content]


def finish_reasons(chunks, index: int = 0) -> list[str]:
    return [c.choices[0].finish_reason for c in chunks
            if c.choices and c.choices[0].index == index and c.choices[0].finish_reason]


# ---------------------------------------------------------------- plain streaming ---
def test_sync_stream_reassembles_the_content(client):
    chunks = stream_chunks(client, {"content": TEXT})
    assert "".join(content_deltas(chunks)) == TEXT
    assert len(content_deltas(chunks)) > 5
    assert chunks[0].choices[0].delta.role == "assistant"
    assert finish_reasons(chunks) == ["stop"]


async def test_async_stream_reassembles_the_content(aclient):
    stream = await aclient.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True,
                                                   extra_body={"mockstream": {"content": TEXT}})
    pieces = [chunk.choices[0].delta.content or "" async for chunk in stream]
    assert "".join(pieces) == TEXT


def test_tokens_arrive_as_exactly_those_deltas(client):
    tokens = ["你", "好", "!", " 👋", "  two  spaces", "\n\n", "}{\"json-ish"]
    assert content_deltas(stream_chunks(client, {"tokens": tokens})) == tokens


async def test_async_tokens_arrive_as_exactly_those_deltas(aclient):
    tokens = ["Ein", "s", ",", " zwei"]
    stream = await aclient.chat.completions.create(model="m", messages=MESSAGES, stream=True,
                                                   extra_body={"mockstream": {"tokens": tokens}})
    assert [c.choices[0].delta.content async for c in stream if c.choices[0].delta.content] == tokens


@pytest.mark.parametrize("count", [1, 7, 60])
def test_random_tokens_gives_exactly_n_deltas(client, count):
    deltas = content_deltas(stream_chunks(client, {"random_tokens": count}))
    assert len(deltas) == count
    assert all(deltas)


def test_random_tokens_in_a_locale(client):
    deltas = content_deltas(stream_chunks(client, {"random_tokens": 30, "locale": "zh_CN"}))
    assert len(deltas) == 30
    assert any("\u4e00" <= ch <= "\u9fff" for d in deltas for ch in d)  # Chinese text, not English


# ---------------------------------------------------------------- the .stream() helper ---
def test_stream_helper_events_and_final_completion(client):
    with client.chat.completions.stream(model="gpt-4o-mini", messages=MESSAGES,
                                        extra_body={"mockstream": {"content": TEXT}}) as stream:
        events = list(stream)
        final = stream.get_final_completion()
    deltas = [e.delta for e in events if e.type == "content.delta"]
    assert "".join(deltas) == TEXT
    assert [e.content for e in events if e.type == "content.done"] == [TEXT]
    [choice] = final.choices
    assert choice.message.role == "assistant"  # a repeated role would read "assistantassistant"
    assert choice.message.content == TEXT
    assert choice.finish_reason == "stop"
    assert final.id.startswith("chatcmpl-")


async def test_async_stream_helper(aclient):
    async with aclient.chat.completions.stream(model="gpt-4o-mini", messages=MESSAGES,
                                               extra_body={"mockstream": {"content": TEXT}}) as stream:
        deltas = [e.delta async for e in stream if e.type == "content.delta"]
        final = await stream.get_final_completion()
    assert "".join(deltas) == TEXT
    assert final.choices[0].message.content == TEXT


# ---------------------------------------------------------------- tool calls ---
WEATHER = {"name": "get_weather", "arguments": {"city": "Zürich", "unit": "celsius", "days": [1, 2]}}
TIME = {"name": "get_time", "arguments": '{"zone": "Asia/Tokyo"}'}


def assembled_calls(client: OpenAI, knobs: dict[str, Any]):
    with client.chat.completions.stream(model="gpt-4o-mini", messages=MESSAGES,
                                        extra_body={"mockstream": knobs}) as stream:
        events = list(stream)
        final = stream.get_final_completion()
    return events, final.choices[0]


def test_one_tool_call_is_assembled_by_the_helper(client):
    events, choice = assembled_calls(client, {"tool_calls": [WEATHER]})
    [call] = choice.message.tool_calls
    assert call.type == "function"
    assert call.id.startswith("call_")
    assert call.function.name == "get_weather"  # a repeated name would be concatenated
    assert json.loads(call.function.arguments) == WEATHER["arguments"]
    assert choice.message.content is None
    assert choice.finish_reason == "tool_calls"
    done = [e for e in events if e.type == "tool_calls.function.arguments.done"]
    assert [(e.name, json.loads(e.arguments)) for e in done] == [("get_weather", WEATHER["arguments"])]
    assert len([e for e in events if e.type == "tool_calls.function.arguments.delta"]) > 1


def test_several_tool_calls_after_content_are_assembled(client):
    _, choice = assembled_calls(client, {"content": "Checking two things.", "tool_calls": [WEATHER, TIME]})
    assert choice.message.content == "Checking two things."
    calls = choice.message.tool_calls
    assert [c.function.name for c in calls] == ["get_weather", "get_time"]
    assert json.loads(calls[0].function.arguments) == WEATHER["arguments"]
    assert json.loads(calls[1].function.arguments) == json.loads(TIME["arguments"])
    assert len({c.id for c in calls}) == 2
    assert all(c.type == "function" for c in calls)
    assert choice.finish_reason == "tool_calls"


def test_helper_assembles_tool_calls_for_every_choice_with_usage(client):
    knobs = {"content": "Two ways.", "tool_calls": [WEATHER]}
    with client.chat.completions.stream(model="gpt-4o-mini", messages=MESSAGES, n=2,
                                        stream_options={"include_usage": True},
                                        extra_body={"mockstream": knobs}) as stream:
        events = list(stream)
        final = stream.get_final_completion()
    assert [c.index for c in final.choices] == [0, 1]
    for choice in final.choices:
        assert choice.message.content == "Two ways."
        [call] = choice.message.tool_calls
        assert call.function.name == "get_weather"
        assert json.loads(call.function.arguments) == WEATHER["arguments"]
        assert choice.finish_reason == "tool_calls"
    assert final.choices[0].message.tool_calls[0].id != final.choices[1].message.tool_calls[0].id
    # the role chunk's "" and a call head's "" arguments are not tokens
    deltas = [e for e in events if (e.type == "content.delta" and e.delta)
              or (e.type == "tool_calls.function.arguments.delta" and e.arguments_delta)]
    assert final.usage is not None
    assert final.usage.completion_tokens == len(deltas)


def test_scripted_finish_reason_overrides_the_tool_calls_default(client):
    _, choice = assembled_calls(client, {"tool_calls": [WEATHER], "finish_reason": "stop"})
    assert choice.finish_reason == "stop"
    assert choice.message.tool_calls[0].function.name == "get_weather"


def test_non_streaming_tool_calls(client):
    completion = create(client, {"content": "Sure.", "tool_calls": [WEATHER, TIME]})
    message = completion.choices[0].message
    assert message.content == "Sure."
    assert [json.loads(c.function.arguments) for c in message.tool_calls] == [
        WEATHER["arguments"], json.loads(TIME["arguments"])]
    assert completion.choices[0].finish_reason == "tool_calls"
    only_calls = create(client, {"tool_calls": [TIME]}).choices[0].message
    assert only_calls.content is None


# ---------------------------------------------------------------- finish reasons and max_tokens ---
@pytest.mark.parametrize("reason", ["stop", "length", "content_filter", "tool_calls"])
def test_every_finish_reason_can_be_scripted(client, reason):
    chunks = stream_chunks(client, {"content": "Short answer.", "finish_reason": reason})
    assert finish_reasons(chunks) == [reason]
    assert "".join(content_deltas(chunks)) == "Short answer."
    completion = create(client, {"content": "Short answer.", "finish_reason": reason})
    assert completion.choices[0].finish_reason == reason


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_max_tokens_cuts_the_answer_with_length(client, field):
    full = tokenize(TEXT)
    chunks = stream_chunks(client, {"content": TEXT}, **{field: 4})
    assert content_deltas(chunks) == full[:4]
    assert finish_reasons(chunks) == ["length"]
    completion = create(client, {"content": TEXT}, **{field: 4})
    assert completion.choices[0].message.content == "".join(full[:4])
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage.completion_tokens == 4


def test_max_tokens_large_enough_changes_nothing(client):
    chunks = stream_chunks(client, {"content": TEXT}, max_tokens=len(tokenize(TEXT)))
    assert "".join(content_deltas(chunks)) == TEXT
    assert finish_reasons(chunks) == ["stop"]


def test_max_tokens_cuts_tool_call_arguments_too(client):
    completion = create(client, {"tool_calls": [WEATHER]}, max_tokens=3)
    choice = completion.choices[0]
    assert choice.finish_reason == "length"
    cut = choice.message.tool_calls[0].function.arguments
    assert json.dumps(WEATHER["arguments"], ensure_ascii=False).startswith(cut)
    assert len(tokenize(cut)) == 3


# ---------------------------------------------------------------- n > 1 ---
def test_n_choices_each_with_role_content_and_finish(client):
    chunks = stream_chunks(client, {"content": TEXT}, n=2)
    assert {c.choices[0].index for c in chunks} == {0, 1}
    for i in (0, 1):
        mine = [c.choices[0] for c in chunks if c.choices[0].index == i]
        assert [m.delta.role for m in mine if m.delta.role] == ["assistant"]
        assert "".join(content_deltas(chunks, i)) == TEXT
        assert finish_reasons(chunks, i) == ["stop"]
    completion = create(client, {"content": TEXT}, n=3)
    assert [c.index for c in completion.choices] == [0, 1, 2]
    assert all(c.message.content == TEXT for c in completion.choices)


# ---------------------------------------------------------------- non-streaming and usage ---
def test_non_streaming_completion_with_usage(client):
    completion = create(client, {"content": TEXT})
    assert completion.object == "chat.completion"
    assert completion.model == "gpt-4o-mini"
    assert completion.choices[0].message.content == TEXT
    assert completion.choices[0].finish_reason == "stop"
    usage = completion.usage
    assert usage is not None
    assert usage.completion_tokens == len(tokenize(TEXT))
    assert usage.prompt_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_include_usage_reports_usage_on_the_last_chunk_only(client):
    chunks = stream_chunks(client, {"content": TEXT}, stream_options={"include_usage": True})
    *answer, last = chunks
    assert all(c.usage is None for c in answer)
    assert last.choices == []
    usage = last.usage
    assert usage is not None
    for value in (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens):
        assert isinstance(value, int)
    assert usage.completion_tokens == len(content_deltas(chunks))
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    # the same messages cost the same prompt tokens whether streamed or not
    assert usage.prompt_tokens == create(client, {"content": TEXT}).usage.prompt_tokens


async def test_async_include_usage(aclient):
    stream = await aclient.chat.completions.create(model="m", messages=MESSAGES, stream=True,
                                                   stream_options={"include_usage": True},
                                                   extra_body={"mockstream": {"random_tokens": 12}})
    chunks = [c async for c in stream]
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == 12 == len(content_deltas(chunks))


# ---------------------------------------------------------------- request id ---
def test_request_id_is_exposed(client):
    completion = create(client, {"content": "id?"})
    assert REQUEST_ID.fullmatch(completion._request_id)
    raw = client.chat.completions.with_raw_response.create(model="m", messages=MESSAGES, stream=True,
                                                          extra_body={"mockstream": {"content": "Hi"}})
    assert REQUEST_ID.fullmatch(raw.request_id)
    assert raw.request_id == raw.headers["x-request-id"]
    assert "".join(c.choices[0].delta.content or "" for c in raw.parse()) == "Hi"


# ---------------------------------------------------------------- models ---
def test_models_list_includes_loaded_scenarios(make_server):
    srv = make_server([Scenario.from_dict({"name": "slow-zh", "tokens": ["你"]}),
                       Scenario.from_dict({"name": "tool-weather", "tool_calls": [WEATHER]})], speed=0)
    with openai_sdk(srv) as c:
        models = list(c.models.list())
        ids = [m.id for m in models]
        assert {"slow-zh", "tool-weather", "default"} <= set(ids)
        assert len(ids) == len(set(ids))
        assert all(m.object == "model" for m in models)
        assert c.models.retrieve("tool-weather").id == "tool-weather"
        # a scenario name used as the model answers with that scenario
        text = "".join(ch.choices[0].delta.content or "" for ch in
                       c.chat.completions.create(model="slow-zh", messages=MESSAGES, stream=True))
        assert text == "你"


def test_models_retrieve_unknown_is_not_found(client):
    with pytest.raises(openai.NotFoundError) as info:
        client.models.retrieve("no-such-model")
    assert info.value.status_code == 404
    assert "no-such-model" in info.value.message
    assert client.models.retrieve("gpt-4o-mini").id == "gpt-4o-mini"


# ---------------------------------------------------------------- errors through the SDK ---
def test_bad_knob_raises_bad_request_naming_the_field(client):
    with pytest.raises(openai.BadRequestError) as info:
        create(client, {"chunk_bytes": 0}, stream=True)
    assert info.value.status_code == 400
    assert info.value.param == "mockstream.chunk_bytes"
    assert info.value.type == "invalid_request_error"


def test_typo_knob_suggests_the_right_name(client):
    with pytest.raises(openai.BadRequestError) as info:
        create(client, {"chunk_byte": 3})
    assert info.value.param == "mockstream.chunk_byte"
    assert "chunk_bytes" in info.value.message


async def test_async_bad_request(aclient):
    with pytest.raises(openai.BadRequestError) as info:
        await aclient.chat.completions.create(model="m", messages=MESSAGES, stream=True,
                                              extra_body={"mockstream": {"finish_reason": "done"}})
    assert info.value.param == "mockstream.finish_reason"
    # the next request on the same client still streams
    stream = await aclient.chat.completions.create(model="m", messages=MESSAGES, stream=True,
                                                   extra_body={"mockstream": {"content": "ok"}})
    assert "".join([c.choices[0].delta.content or "" async for c in stream]) == "ok"


def test_unknown_scenario_raises_not_found(client):
    with pytest.raises(openai.NotFoundError) as info:
        create(client, {"scenario": "nope"}, stream=True)
    assert "default" in info.value.message
