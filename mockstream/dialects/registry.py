"""Every dialect by name: adding one is its module and one line here."""

from __future__ import annotations

from . import Dialect
from .chat import CHAT
from .completions import COMPLETIONS
from .embeddings import EMBEDDINGS
from .eventsource import EVENTSOURCE
from .gemini import GEMINI, GEMINI_BATCH_EMBED, GEMINI_EMBED
from .messages import MESSAGES
from .responses import RESPONSES

DIALECTS: dict[str, Dialect] = {
    dialect.name: dialect
    for dialect in (
        CHAT,
        COMPLETIONS,
        RESPONSES,
        MESSAGES,
        EVENTSOURCE,
        EMBEDDINGS,
        GEMINI,
        GEMINI_EMBED,
        GEMINI_BATCH_EMBED,
    )
}
# The dialects that answer with a stream (the embeddings routes answer whole, always).
STREAMED = tuple(name for name in DIALECTS if name not in ("embeddings", "gemini_embed", "gemini_batch_embed"))
# What `--route PATH=DIALECT` may name: a POST dialect (chat also answers GET there, for EventSource).
ROUTABLE = ("chat", "completions", "responses", "messages", "embeddings")
