"""The conversations the server answered, by response id, for requests that send only their newest turn.

A Responses request naming `previous_response_id`, or an Anthropic message thread's `previous_message_id`,
carries only what is new; the rest is what this server answered before. `Conversations` keeps, per answer, the
conversation as it stands after it (a bounded LRU, so a load test cannot grow it without end), and `resolve`
gives a continuing request the whole of it: its turn number counts the earlier turns, and the last user message
it leaves out is the earlier request's. So are the system prompt and the tools of an Anthropic thread, whose
SDK sends them once; a Responses request does not inherit them (the API does not carry `instructions` or
`tools` over to a response that names `previous_response_id`), so its own are what it has.

It is this process's memory: a reference answered by another worker or replica is unknown here, and a request
naming an unknown reference is read as it stands.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import replace
from typing import NamedTuple

from ..plan import Ask

DEFAULT_SIZE = 10_000
# The dialects whose continuing requests leave out the system prompt and the tools (sent once, at the start).
SENT_ONCE = ("messages",)


class Kept(NamedTuple):
    """A conversation as it stood after one answer (a tuple: a kept answer is one per Responses request)."""

    turn: int  # assistant turns, the answer included
    last_user: str
    system: str
    tools: tuple[str, ...]
    ask: Ask  # the (resolved) request it answered: the same one again keeps it as it is


class Conversations:
    """What the server answered per response id, the `size` most recently used kept."""

    def __init__(self, size: int = DEFAULT_SIZE):
        if size < 1:
            raise ValueError(f"a conversation store keeps at least one conversation, not {size}")
        self.size = size
        self._kept: OrderedDict[str, Kept] = OrderedDict()

    def __len__(self) -> int:
        return len(self._kept)

    def __contains__(self, response_id: object) -> bool:
        return response_id in self._kept

    def get(self, response_id: str) -> Kept | None:
        return self._kept.get(response_id)

    def remember(self, response_id: str, ask: Ask, answered_tool_calls: bool = False) -> None:
        """Keep the conversation as it stands after the answer `response_id` gave to `ask` (give the resolved
        ask, so a long conversation keeps counting its turns). `answered_tool_calls` is not kept (nothing
        reads it; the parameter stays for callers that pass it)."""
        kept = self._kept
        known = kept.get(response_id)
        if known is None or known.ask is not ask:  # a load test repeating one request: the same answer again
            kept[response_id] = Kept(ask.turn + 1, ask.last_user, ask.system, ask.tools, ask)
        kept.move_to_end(response_id)
        if len(kept) > self.size:
            kept.popitem(last=False)

    def resolve(self, ask: Ask, dialect: str = "") -> Ask:
        """The ask seen with the conversation it continues: unchanged when it names none, or one unknown here.
        `dialect` is the continuing request's: only where it leaves them out (SENT_ONCE) do the system prompt
        and the tools come from the earlier request."""
        if ask.previous is None:
            return ask
        kept = self._kept.get(ask.previous)
        if kept is None:
            return ask
        self._kept.move_to_end(ask.previous)
        if dialect in SENT_ONCE:
            return replace(
                ask,
                turn=kept.turn + ask.turn,
                last_user=ask.last_user or kept.last_user,
                system=ask.system or kept.system,
                tools=ask.tools or kept.tools,
            )
        return replace(ask, turn=kept.turn + ask.turn, last_user=ask.last_user or kept.last_user)
