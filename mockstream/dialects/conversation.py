"""The conversation a request carries, read the same way for every dialect: how many assistant turns it holds,
who spoke last, the newest tool result, the system prompt and the tools offered (`Talk`).

Each reader walks its messages once, oldest first, and tells a `Talk` what each one is; the texts of the newest
user message and tool result are only worked out once the walk is done.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .openai import message_text

# What a Chat Completions role counts as: `developer` is o1's `system`, `function` the legacy `tool`.
CHAT_ROLES = {
    "user": "user",
    "assistant": "assistant",
    "system": "system",
    "developer": "system",
    "tool": "tool",
    "function": "tool",
}


class Talk:
    """The conversation as a reader walks it; consecutive assistant-side messages make one turn."""

    __slots__ = ("_system", "_tool", "_user", "last_role", "turn")

    def __init__(self) -> None:
        self.turn = 0
        self.last_role = "user"
        self._user: Any = None  # the content of the newest user message, as sent
        self._tool: Any = None  # the newest tool result, as sent
        self._system: list[str] = []

    def assistant(self) -> None:
        if self.last_role != "assistant":
            self.turn += 1
            self.last_role = "assistant"

    def user(self, content: Any) -> None:
        self.last_role = "user"
        self._user = content

    def tool(self, result: Any) -> None:
        self.last_role = "tool"
        self._tool = result

    def system_says(self, content: Any) -> None:
        """A system (or developer) message: it is the newest message, and its text joins the system prompt."""
        self.last_role = "system"
        self.instruct(content)

    def instruct(self, content: Any) -> None:
        """System text that is not a message of the conversation (Responses' `instructions`, Anthropic's `system`)."""
        text = message_text(content)
        if text:
            self._system.append(text)

    @property
    def last_user(self) -> str:
        return message_text(self._user)

    @property
    def tool_result(self) -> str:
        return message_text(self._tool)

    @property
    def system(self) -> str:
        """The system texts, oldest first, one per line."""
        return "\n".join(self._system)

    def fields(self, tools: Iterable[Any] = ()) -> dict[str, Any]:
        """What an `Ask` says of the conversation, with the names of the `tools` offered: `Ask(..., **fields)`."""
        return {
            "last_user": self.last_user,
            "turn": self.turn,
            "last_role": self.last_role,
            "tool_result": self.tool_result,
            "system": self.system,
            "tools": tool_names(tools),
        }


def tool_names(names: Iterable[Any]) -> tuple[str, ...]:
    """The names of the tools offered, sorted, each once (anything not a string is not a name)."""
    return tuple(sorted({name for name in names if isinstance(name, str)}))


def entries(value: Any) -> list[dict[str, Any]]:
    """The objects of a list field such as `tools` (an absent or malformed field offers nothing)."""
    return [entry for entry in value if isinstance(entry, dict)] if isinstance(value, list) else []


def keeps(dialect: str, body: Any) -> bool:
    """Does the API keep this exchange for a later request to continue? Responses stores a response unless
    `store` is false (`previous_response_id` names it later); Anthropic keeps a message thread's reply when the
    request creates or continues one (`thread: {"type": "create" | "continue"}`, `previous_message_id` later)."""
    if not isinstance(body, dict):
        return False
    if dialect == "responses":
        return body.get("store") is not False
    if dialect == "messages":
        thread = body.get("thread")
        return isinstance(thread, dict) and thread.get("type") in ("create", "continue")
    return False
