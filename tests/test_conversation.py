"""The conversation each dialect reads from a request (`Ask.turn`, `last_role`, `tool_result`, `system`, `tools`,
`previous`), and the store that lets a request naming an earlier answer see the whole conversation.

The agent-loop bodies are the ones the SDKs really send: each loop runs against a real server (scripted by
per-request knobs) and every request body is taken off the wire by an httpx hook, then read by the dialect.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import anthropic
import openai
import pytest

from mockstream.dialects import RequestView
from mockstream.dialects.conversation import keeps
from mockstream.dialects.registry import DIALECTS
from mockstream.errors import RequestError
from mockstream.plan import Ask
from mockstream.plan.schema import Scenario
from mockstream.server.conversations import Conversations
from mockstream.testing import MockServer

ROUTES = {
    "chat": "/v1/chat/completions",
    "completions": "/v1/completions",
    "responses": "/v1/responses",
    "messages": "/v1/messages",
}
WEATHER = {"name": "get_weather", "arguments": {"city": "Paris"}}
TIME = {"name": "get_time", "arguments": {"zone": "Europe/Paris"}}
UV = {"name": "get_uv", "arguments": {"city": "Paris"}}
RESULTS = {"get_weather": {"temp": 21}, "get_time": {"time": "12:00"}, "get_uv": {"uv": 6}}
# One agent loop: a tool call, then two parallel ones, then the answer.
SCRIPT = [{"tool_calls": [WEATHER]}, {"tool_calls": [TIME, UV]}, {"content": "Sunny, 21 degrees, at noon."}]
QUESTION = "What is the weather in Paris at noon?"
SYSTEM = "You are a terse weather bot."


def ask_of(dialect: str, body: Any = None, query: str = "") -> Ask:
    method, path = ("GET", ROUTES["chat"]) if dialect == "eventsource" else ("POST", ROUTES[dialect])
    return DIALECTS[dialect].parse(RequestView(method, path, query, {}, body)).ask


def result_of(name: str) -> str:
    return json.dumps(RESULTS[name])


@contextmanager
def capturing(sdk: Any, client: Callable[..., Any], base_url: str) -> Iterator[tuple[Any, list[dict[str, Any]]]]:
    """An SDK client on the server whose every request body lands in the list it yields with it."""
    bodies: list[dict[str, Any]] = []
    hooks = {"request": [lambda request: bodies.append(json.loads(request.content))]}
    http = sdk.DefaultHttpxClient(verify=False, event_hooks=hooks)
    with client(base_url=base_url, api_key="sk-test", max_retries=0, timeout=10, http_client=http) as made:
        yield made, bodies


def openai_client(server: MockServer):
    return capturing(openai, openai.OpenAI, server.base_url)


def anthropic_client(server: MockServer):
    return capturing(anthropic, anthropic.Anthropic, server.url)


# ---------------------------------------------------------------- Chat Completions ---
CHAT_TOOLS = [
    {"type": "function", "function": {"name": name, "parameters": {"type": "object", "properties": {}}}}
    for name in ("get_weather", "get_uv", "get_time")
]


def test_openai_python_chat_tool_loop(server):
    with openai_client(server) as (client, bodies):
        messages: list[Any] = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}]
        for knobs in SCRIPT:
            completion = client.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=CHAT_TOOLS,
                                                        extra_body={"mockstream": knobs})
            message = completion.choices[0].message
            messages.append(message)  # the SDK's own message object, as the cookbook's loop appends it
            for call in message.tool_calls or []:
                messages.append({"role": "tool", "tool_call_id": call.id, "content": result_of(call.function.name)})
    assert completion.choices[0].message.content == SCRIPT[-1]["content"]
    asks = [ask_of("chat", body) for body in bodies]
    assert [a.turn for a in asks] == [0, 1, 2]
    assert [a.last_role for a in asks] == ["user", "tool", "tool"]
    assert [a.tool_result for a in asks] == ["", result_of("get_weather"), result_of("get_uv")]  # the newest
    assert {a.last_user for a in asks} == {QUESTION}  # a tool's result is not what the user said
    assert {a.system for a in asks} == {SYSTEM}
    assert {a.tools for a in asks} == {("get_time", "get_uv", "get_weather")}
    assert {a.previous for a in asks} == {None}


def test_chat_roles_and_their_kinds():
    def ask(*messages: dict[str, Any], **body: Any) -> Ask:
        return ask_of("chat", {"model": "m", "messages": list(messages), **body})

    user = {"role": "user", "content": "Hi"}
    said = {"role": "assistant", "content": "Hello"}
    assert ask(user, said, said, user).turn == 1  # consecutive assistant messages make one turn
    assert ask(user, said, user, said, user).turn == 2
    assert ask(user, said).last_role == "assistant"
    assert ask(user, {"role": "developer", "content": "Be kind."}).last_role == "system"
    legacy = ask(user, {"role": "assistant", "content": None, "function_call": {"name": "f", "arguments": "{}"}},
                 {"role": "function", "name": "f", "content": "42"}, functions=[{"name": "f"}, {"name": "e"}])
    assert (legacy.turn, legacy.last_role, legacy.tool_result, legacy.tools) == (1, "tool", "42", ("e", "f"))
    parts = ask(user, said, {"role": "tool", "tool_call_id": "c", "content": [
        {"type": "text", "text": '{"temp":'}, {"type": "text", "text": " 21}"}]})
    assert parts.tool_result == '{"temp": 21}'
    # the system prompt: system and developer messages, strings or text parts, oldest first
    system = ask({"role": "system", "content": [{"type": "text", "text": "One."}, {"type": "text", "text": " Two."}]},
                 {"role": "developer", "content": "Three."}, user)
    assert (system.system, system.last_role) == ("One. Two.\nThree.", "user")
    # an unknown role is passed over, as the reader always did for the last user message
    odd = ask(user, {"role": "critic", "content": "Meh"})
    assert (odd.last_role, odd.last_user, odd.turn) == ("user", "Hi", 0)
    custom = ask(user, tools=[{"type": "custom", "custom": {"name": "grammar"}}, *CHAT_TOOLS[:1], "junk"])
    assert custom.tools == ("get_weather", "grammar")
    assert ask(user, tools="not a list").tools == ()


def test_chat_validation_is_unchanged():
    with pytest.raises(RequestError) as info:
        ask_of("chat", {"model": "m", "messages": [{"role": "user", "content": "Hi"}, {"content": "no role"}]})
    assert (info.value.status, info.value.param) == (400, "messages[1].role")
    with pytest.raises(RequestError) as info:
        ask_of("chat", {"model": "m", "messages": []})
    assert info.value.code == "empty_array"


def test_eventsource_reads_as_a_first_chat_turn():
    ask = ask_of("eventsource", query="prompt=Hello%20there&content=Hi")
    assert (ask.turn, ask.last_role, ask.last_user, ask.system, ask.tools) == (0, "user", "Hello there", "", ())


def test_completions_are_a_first_turn_from_the_user():
    ask = ask_of("completions", {"model": "m", "prompt": ["One", "Two"]})
    assert (ask.turn, ask.last_role, ask.tool_result, ask.previous, ask.last_user) == (0, "user", "", None, "Two")


# ---------------------------------------------------------------- Responses ---
RESPONSES_TOOLS = [
    {"type": "function", "name": name, "parameters": {"type": "object", "properties": {}}, "strict": False}
    for name in ("get_weather", "get_uv", "get_time")
]


def test_openai_python_responses_tool_loop(server):
    with openai_client(server) as (client, bodies):
        items: list[Any] = [{"role": "user", "content": QUESTION}]
        for knobs in SCRIPT:
            response = client.responses.create(model="gpt-4o-mini", instructions=SYSTEM, input=items,
                                               tools=RESPONSES_TOOLS, extra_body={"mockstream": knobs})
            items += response.output  # the SDK's own output items, as openai-python's function-calling guide does
            for item in response.output:
                if item.type == "function_call":
                    items.append({"type": "function_call_output", "call_id": item.call_id,
                                  "output": result_of(item.name)})
    assert response.output_text == SCRIPT[-1]["content"]
    assert [item["type"] for item in bodies[2]["input"][1:]] == [  # what was sent
        "function_call", "function_call_output", "function_call", "function_call", "function_call_output",
        "function_call_output"]
    asks = [ask_of("responses", body) for body in bodies]
    assert [a.turn for a in asks] == [0, 1, 2]  # the two parallel calls are one turn
    assert [a.last_role for a in asks] == ["user", "tool", "tool"]
    assert [a.tool_result for a in asks] == ["", result_of("get_weather"), result_of("get_uv")]
    assert {a.last_user for a in asks} == {QUESTION}
    assert {a.system for a in asks} == {SYSTEM}
    assert {a.tools for a in asks} == {("get_time", "get_uv", "get_weather")}
    assert {a.previous for a in asks} == {None}


def test_openai_python_responses_loop_on_previous_response_id(server):
    """Each request sends only the tool results and names the response before; the store makes it whole."""
    conversations = Conversations()
    with openai_client(server) as (client, bodies):
        response = client.responses.create(model="gpt-4o-mini", input=QUESTION, instructions=SYSTEM,
                                           tools=RESPONSES_TOOLS, extra_body={"mockstream": SCRIPT[0]})
        ids = [response.id]
        for knobs in SCRIPT[1:]:
            outputs = [{"type": "function_call_output", "call_id": item.call_id, "output": result_of(item.name)}
                       for item in response.output if item.type == "function_call"]
            response = client.responses.create(model="gpt-4o-mini", previous_response_id=response.id,
                                               input=outputs, tools=RESPONSES_TOOLS, extra_body={"mockstream": knobs})
            assert response.previous_response_id == ids[-1]  # the answer names the response it continues
            ids.append(response.id)
    asks = [ask_of("responses", body) for body in bodies]
    assert [a.previous for a in asks] == [None, *ids[:-1]]
    assert [(a.turn, a.last_role) for a in asks] == [(0, "user"), (0, "tool"), (0, "tool")]  # the request alone
    assert [a.last_user for a in asks] == [QUESTION, "", ""]
    assert all(keeps("responses", body) for body in bodies)
    whole = []
    for ask, response_id in zip(asks, ids):
        whole.append(conversations.resolve(ask, "responses"))
        conversations.remember(response_id, whole[-1])
    assert [a.turn for a in whole] == [0, 1, 2]
    assert {a.last_user for a in whole} == {QUESTION}
    # The API does not carry instructions over to a response naming previous_response_id: nor does the store.
    assert [a.system for a in whole] == [SYSTEM, "", ""]
    assert {a.tools for a in whole} == {asks[0].tools}  # each request offers its own
    assert [a.tool_result for a in whole] == ["", result_of("get_weather"), result_of("get_uv")]  # the request's own
    assert conversations.get(ids[-1]) is not None and conversations.get(ids[-1]).turn == 3


def test_responses_items_and_their_kinds():
    def ask(*items: Any, **body: Any) -> Ask:
        return ask_of("responses", {"model": "m", "input": list(items), **body})

    user = {"role": "user", "content": [{"type": "input_text", "text": "Hi"}]}
    reasoning = {"type": "reasoning", "id": "rs_1", "summary": []}
    call = {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"}
    output = {"type": "function_call_output", "call_id": "c1", "output": "42"}
    said = {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hello"}]}
    assert ask(user, reasoning, call, output).turn == 1  # reasoning and its call are one turn
    assert ask(user, reasoning, call, output, reasoning, said, user).turn == 2
    assert ask(user, said).last_role == "assistant"
    assert ask(user, {"type": "web_search_call", "id": "ws", "status": "completed"}, said).turn == 1
    assert ask(user, {"role": "developer", "content": "Be kind."}).last_role == "system"
    listed = ask(user, call, {"type": "function_call_output", "call_id": "c1", "output": [
        {"type": "input_text", "text": "4"}, {"type": "input_image", "image_url": "data:,"},
        {"type": "input_text", "text": "2"}]})
    assert (listed.last_role, listed.tool_result) == ("tool", "42")
    custom = ask(user, {"type": "custom_tool_call", "call_id": "c2", "name": "g", "input": "x"},
                 {"type": "custom_tool_call_output", "call_id": "c2", "output": "done"})
    assert (custom.turn, custom.last_role, custom.tool_result) == (1, "tool", "done")
    # unknown and referenced items are tolerated and counted as nothing
    odd = ask(user, {"type": "item_reference", "id": "msg_1"}, {"type": "future_thing"}, {"type": 3})
    assert (odd.turn, odd.last_role, odd.last_user) == (0, "user", "Hi")
    bare = ask({"content": "no role, no type"})
    assert (bare.last_user, bare.last_role) == ("no role, no type", "user")
    system = ask({"role": "system", "content": "Two."}, user, instructions="One.")
    assert system.system == "One.\nTwo."
    tools = ask(user, {"type": "additional_tools", "role": "developer", "tools": [
        {"type": "function", "name": "late"}]}, tools=[*RESPONSES_TOOLS[:1], {"type": "web_search"},
                                                      {"type": "custom", "name": "grammar"}])
    assert tools.tools == ("get_weather", "grammar", "late")  # hosted tools have no name
    assert tools.last_role == "user"  # offering tools is not a message
    text = ask_of("responses", {"model": "m", "input": "Just text", "previous_response_id": "resp_1"})
    assert (text.turn, text.last_role, text.last_user, text.previous) == (0, "user", "Just text", "resp_1")


def test_responses_validation_is_unchanged_and_covers_the_reference():
    with pytest.raises(RequestError) as info:
        ask_of("responses", {"model": "m", "input": {"role": "user"}})
    assert (info.value.status, info.value.param, info.value.code) == (400, "input", "invalid_type")
    with pytest.raises(RequestError) as info:
        ask_of("responses", {"model": "m", "input": "Hi", "previous_response_id": 7})
    assert (info.value.status, info.value.param, info.value.code) == (400, "previous_response_id", "invalid_type")
    assert ask_of("responses", {"model": "m", "input": "Hi", "previous_response_id": None}).previous is None


# ---------------------------------------------------------------- Anthropic Messages ---
ANTHROPIC_TOOLS = [
    {"name": name, "description": name, "input_schema": {"type": "object", "properties": {}}}
    for name in ("get_weather", "get_uv", "get_time")
]


def test_anthropic_sdk_tool_loop(server):
    with anthropic_client(server) as (client, bodies):
        messages: list[Any] = [{"role": "user", "content": QUESTION}]
        for knobs in SCRIPT:
            message = client.messages.create(model="claude-sonnet-4-5", max_tokens=512, messages=messages,
                                             system=[{"type": "text", "text": SYSTEM}], tools=ANTHROPIC_TOOLS,
                                             extra_body={"mockstream": knobs})
            messages.append({"role": "assistant", "content": message.content})
            results = [{"type": "tool_result", "tool_use_id": block.id, "content": result_of(block.name)}
                       for block in message.content if block.type == "tool_use"]
            if results:
                messages.append({"role": "user", "content": results})
    assert message.content[0].text == SCRIPT[-1]["content"]
    asks = [ask_of("messages", body) for body in bodies]
    assert [a.turn for a in asks] == [0, 1, 2]
    assert [a.last_role for a in asks] == ["user", "tool", "tool"]
    assert [a.tool_result for a in asks] == ["", result_of("get_weather"), result_of("get_uv")]
    assert {a.last_user for a in asks} == {QUESTION}  # a message of tool results is not what the user said
    assert {a.system for a in asks} == {SYSTEM}
    assert {a.tools for a in asks} == {("get_time", "get_uv", "get_weather")}
    assert not any(keeps("messages", body) for body in bodies)


def test_anthropic_sdk_message_thread(server):
    """The SDK's message thread sends the whole conversation once, then only the new messages and the id of the
    reply they continue, leaving system and tools out: the store gives them back."""
    conversations = Conversations()
    with anthropic_client(server) as (client, bodies):
        thread = client.beta.messages.thread(model="claude-sonnet-4-5", max_tokens=512, system=SYSTEM,
                                             tools=ANTHROPIC_TOOLS)
        reply = thread.send({"role": "user", "content": QUESTION}, extra_body={"mockstream": SCRIPT[0]})
        ids = [reply.id]
        for knobs in SCRIPT[1:]:
            results = [{"type": "tool_result", "tool_use_id": block.id, "content": result_of(block.name)}
                       for block in reply.content if block.type == "tool_use"]
            reply = thread.send({"role": "user", "content": results}, extra_body={"mockstream": knobs})
            ids.append(reply.id)
    assert [body["thread"] for body in bodies] == [
        {"type": "create"}, *({"type": "continue", "previous_message_id": i} for i in ids[:-1])]
    assert all(keeps("messages", body) for body in bodies)
    asks = [ask_of("messages", body) for body in bodies]
    assert [a.previous for a in asks] == [None, *ids[:-1]]
    assert [(a.turn, a.last_role, a.system, a.tools) for a in asks[1:]] == [(0, "tool", "", ())] * 2
    whole = []
    for ask, reply_id in zip(asks, ids):
        whole.append(conversations.resolve(ask, "messages"))
        conversations.remember(reply_id, whole[-1])
    assert [a.turn for a in whole] == [0, 1, 2]
    assert {(a.last_user, a.system, a.tools) for a in whole} == {(QUESTION, SYSTEM, asks[0].tools)}
    assert [a.tool_result for a in whole] == ["", result_of("get_weather"), result_of("get_uv")]


def test_anthropic_blocks_and_their_kinds():
    def ask(*messages: dict[str, Any], **body: Any) -> Ask:
        return ask_of("messages", {"model": "claude", "max_tokens": 10, "messages": list(messages), **body})

    user = {"role": "user", "content": [{"type": "text", "text": "Hi"}]}
    use = {"role": "assistant", "content": [{"type": "text", "text": "Let me look."},
                                            {"type": "tool_use", "id": "t1", "name": "f", "input": {}}]}
    blocks = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [
        {"type": "text", "text": "4"}, {"type": "text", "text": "2"}]}]}
    assert (ask(user, use, blocks).tool_result, ask(user, use, blocks).last_role) == ("42", "tool")
    both = ask(user, use, {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "42"},
                                                       {"type": "text", "text": "And tomorrow?"}]})
    assert (both.last_role, both.tool_result, both.last_user) == ("tool", "42", "And tomorrow?")
    assert ask(user, use, use, blocks).turn == 1  # consecutive assistant messages make one turn
    prefill = ask(user, {"role": "assistant", "content": "The answer is"})
    assert (prefill.turn, prefill.last_role) == (1, "assistant")
    system = ask(user, system=[{"type": "text", "text": "One."},
                               {"type": "text", "text": "Two.", "cache_control": {"type": "ephemeral"}}])
    assert system.system == "One.\nTwo."
    assert ask(user, system="Plain.").system == "Plain."
    tools = ask(user, tools=[*ANTHROPIC_TOOLS[:1], {"type": "web_search_20250305", "name": "web_search"}])
    assert tools.tools == ("get_weather", "web_search")
    assert ask(user, thread={"type": "create"}).previous is None
    assert ask(user, thread={"type": "continue", "previous_message_id": "msg_1"}).previous == "msg_1"
    assert ask(user, thread={"type": "continue"}).previous is None


def test_anthropic_validation_is_unchanged():
    with pytest.raises(RequestError) as info:
        ask_of("messages", {"model": "claude", "max_tokens": 10, "messages": [{"role": "system", "content": "x"}]})
    assert (info.value.status, info.value.param) == (400, "messages")


# ---------------------------------------------------------------- the store ---
def test_resolve_leaves_an_ask_alone_without_a_known_reference():
    conversations = Conversations()
    first = Ask("m", False, last_user="Hi")
    conversations.remember("resp_1", first, answered_tool_calls=False)
    assert conversations.resolve(first) is first
    stranger = Ask("m", False, turn=1, previous="resp_unknown")
    assert conversations.resolve(stranger) is stranger


def test_resolve_counts_earlier_turns_and_falls_back_field_by_field():
    conversations = Conversations()
    conversations.remember("resp_1", Ask("m", False, turn=2, last_user="Q", system="S", tools=("f",)), True)
    assert conversations.get("resp_1").turn == 3
    bare = conversations.resolve(Ask("m", False, last_role="tool", tool_result="42", previous="resp_1"), "messages")
    assert (bare.turn, bare.last_user, bare.system, bare.tools) == (3, "Q", "S", ("f",))
    assert (bare.last_role, bare.tool_result, bare.previous) == ("tool", "42", "resp_1")
    own = conversations.resolve(
        Ask("m", False, turn=1, last_user="Q2", system="S2", tools=("g",), previous="resp_1"), "messages")
    assert (own.turn, own.last_user, own.system, own.tools) == (4, "Q2", "S2", ("g",))


def test_a_responses_request_does_not_inherit_instructions_or_tools():
    conversations = Conversations()
    conversations.remember("resp_1", Ask("m", False, turn=0, last_user="Q", system="S", tools=("f",)))
    bare = conversations.resolve(Ask("m", False, last_role="tool", previous="resp_1"), "responses")
    assert (bare.turn, bare.last_user, bare.system, bare.tools) == (1, "Q", "", ())


def test_the_same_answer_again_keeps_its_conversation_and_a_new_ask_replaces_it():
    conversations = Conversations()
    ask = Ask("m", False, last_user="Q")
    conversations.remember("resp_1", ask)
    kept = conversations.get("resp_1")
    conversations.remember("resp_1", ask)
    assert conversations.get("resp_1") is kept  # the same request again: nothing rebuilt
    conversations.remember("resp_1", Ask("m", False, turn=4, last_user="Q"))
    assert conversations.get("resp_1").turn == 5


def test_the_store_is_bounded_and_keeps_the_most_recently_used():
    conversations = Conversations(size=2)
    for name in ("a", "b"):
        conversations.remember(name, Ask("m", False), False)
    conversations.resolve(Ask("m", False, previous="a"))  # using `a` keeps it
    conversations.remember("c", Ask("m", False), False)
    assert (len(conversations), "a" in conversations, "b" in conversations, "c" in conversations) == (
        2, True, False, True)
    many = Conversations()
    for i in range(many.size + 5):
        many.remember(f"resp_{i}", Ask("m", False), False)
    assert len(many) == many.size == 10_000
    assert "resp_4" not in many and "resp_5" in many
    with pytest.raises(ValueError, match="at least one"):
        Conversations(size=0)


def test_which_exchanges_are_kept():
    assert keeps("responses", {"model": "m", "input": "Hi"})
    assert not keeps("responses", {"model": "m", "input": "Hi", "store": False})
    assert keeps("messages", {"thread": {"type": "create"}})
    assert not keeps("messages", {"thread": None})
    assert not keeps("chat", {"messages": []})
    assert not keeps("responses", None)


# ---- the server keeps what it answered: a request that continues it sees the whole conversation
def test_a_responses_loop_on_previous_response_id_is_answered_turn_by_turn():
    scenario = {"name": "loop", "match": {"dialect": "responses"}, "turns": SCRIPT}
    with MockServer([Scenario.from_dict(scenario)], speed=0) as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key="k", max_retries=0)
        response = client.responses.create(model="m", input=QUESTION, tools=_RESPONSES_TOOLS)
        seen = []
        for _ in range(3):
            calls = [item for item in response.output if item.type == "function_call"]
            seen.append([call.name for call in calls] or response.output_text)
            if not calls:
                break
            outputs = [
                {"type": "function_call_output", "call_id": c.call_id, "output": json.dumps(RESULTS[c.name])}
                for c in calls
            ]  # only what is new: the server keeps the rest
            response = client.responses.create(model="m", previous_response_id=response.id, input=outputs)
        client.close()
        turns = [entry.extra.get("turn") for entry in srv.state.journal]
    assert seen == [["get_weather"], ["get_time", "get_uv"], "Sunny, 21 degrees, at noon."]
    assert turns == [0, 1, 2]


def test_a_response_not_stored_is_not_continued():
    scenario = {"name": "loop", "match": {"dialect": "responses"}, "turns": SCRIPT}
    with MockServer([Scenario.from_dict(scenario)], speed=0) as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key="k", max_retries=0)
        first = client.responses.create(model="m", input=QUESTION, tools=_RESPONSES_TOOLS, store=False)
        output = {"type": "function_call_output", "call_id": first.output[0].call_id, "output": "{}"}
        client.responses.create(model="m", previous_response_id=first.id, input=[output])
        client.close()
        assert [entry.extra.get("turn") for entry in srv.state.journal] == [0, 0]  # store=false: nothing to continue


_RESPONSES_TOOLS = [
    {"type": "function", "name": name, "parameters": {"type": "object", "properties": {}}} for name in RESULTS
]
