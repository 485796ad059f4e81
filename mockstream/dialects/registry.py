"""Every dialect by name: adding one is its module and one line here."""

from __future__ import annotations

from . import Dialect
from .chat import CHAT
from .completions import COMPLETIONS
from .eventsource import EVENTSOURCE
from .messages import MESSAGES
from .responses import RESPONSES

DIALECTS: dict[str, Dialect] = {
    dialect.name: dialect for dialect in (CHAT, COMPLETIONS, RESPONSES, MESSAGES, EVENTSOURCE)
}
# What `--route PATH=DIALECT` may name: a POST dialect (chat also answers GET there, for EventSource).
ROUTABLE = ("chat", "completions", "responses", "messages")
