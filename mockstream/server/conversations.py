"""The conversations the server answered, by response id, for requests that send only their newest turn.

A Responses request naming `previous_response_id`, or an Anthropic message thread's `previous_message_id`,
carries only what is new; the rest is what this server answered before. `Conversations` keeps, per answer, the
conversation as it stands after it (a bounded LRU, so a load test cannot grow it without end), and `resolve`
gives a continuing request the whole of it: its turn number counts the earlier turns, and what it leaves out (the
last user message, the system prompt, the tools) is the earlier request's.

It is this process's memory: a reference answered by another worker or replica is unknown here, and a request
naming an unknown reference is read as it stands.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, replace

from ..plan import Ask

DEFAULT_SIZE = 10_000


@dataclass(frozen=True, slots=True)
class Kept:
    """A conversation as it stood after one answer."""

    turn: int  # assistant turns, the answer included
    last_user: str
    system: str
    tools: tuple[str, ...]
    called_tools: bool  # the answer called tools (the next request should bring their results)


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

    def remember(self, response_id: str, ask: Ask, answered_tool_calls: bool) -> None:
        """Keep the conversation as it stands after the answer `response_id` gave to `ask` (give the resolved
        ask, so a long conversation keeps counting its turns)."""
        kept = self._kept
        kept[response_id] = Kept(ask.turn + 1, ask.last_user, ask.system, ask.tools, answered_tool_calls)
        kept.move_to_end(response_id)
        if len(kept) > self.size:
            kept.popitem(last=False)

    def resolve(self, ask: Ask) -> Ask:
        """The ask seen with the conversation it continues: unchanged when it names none, or one unknown here."""
        if ask.previous is None:
            return ask
        kept = self._kept.get(ask.previous)
        if kept is None:
            return ask
        self._kept.move_to_end(ask.previous)
        return replace(
            ask,
            turn=kept.turn + ask.turn,
            last_user=ask.last_user or kept.last_user,
            system=ask.system or kept.system,
            tools=ask.tools or kept.tools,
        )
