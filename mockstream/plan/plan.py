"""Scenario knobs + the request + a seed -> a concrete, deterministic Plan of what will be said (`make_plan`).

The Plan is dialect-neutral: dialects spell it, the transport delivers it. Everything random in it
(ids, Faker text, jitter) comes from the seed, itself derived from the server seed and the request: ids,
`created` and the Faker seeds are cut from BLAKE2b digests of the seed (one digest per answer, one per
choice and tool call: no `random.Random` to seed, no draw per character), jitter from a `random.Random`.
"""

from __future__ import annotations

import hashlib
import json
import random
import string
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import content
from .embedding import Embed, vector
from .recording import Recording, Replay, replay
from .timing import Pacing

if TYPE_CHECKING:
    from ..faults import Fault

_ALNUM = string.ascii_letters + string.digits
DEFAULT_LOCALE = "en_US"
DEFAULT_CHUNK_GAP_MS = 1.0


@dataclass(frozen=True, slots=True)
class Ask:
    """What a request asks for, in the same words for every dialect."""

    model: str
    stream: bool
    prompt_tokens: int = 0
    last_user: str = ""
    n: int = 1
    max_tokens: int | None = None
    include_usage: bool = False
    # The conversation so far, for match rules and `turns` (derived from the request alone):
    turn: int = 0  # assistant turns already in the conversation (consecutive assistant items count once)
    last_role: str = "user"  # role of the newest message: user, tool (a tool's result), assistant or system
    tool_result: str = ""  # text of the newest tool result
    system: str = ""  # the system prompt / instructions
    tools: tuple[str, ...] = ()  # names of the tools offered, sorted
    previous: str | None = None  # a reference to earlier turns kept by the server (previous_response_id)
    embed: Embed | None = None  # an embeddings request: what to embed (the answer is vectors, not text)
    framing: str = "sse"  # how a stream is framed: "sse" events, or "json_array" (Gemini without alt=sse)


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # the JSON text as sent (cut short if max_tokens cut it)
    fragments: tuple[str, ...]  # `arguments` in the pieces it streams in


@dataclass(frozen=True, slots=True)
class Choice:
    index: int
    tokens: Sequence[str]
    tool_calls: tuple[ToolCall, ...]
    finish_reason: str
    reasoning: Sequence[str] = ()  # the reasoning tokens, streamed before the answer's

    @property
    def text(self) -> str:
        return "".join(self.tokens)

    @property
    def reasoning_text(self) -> str:
        return "".join(self.reasoning)

    @property
    def completion_tokens(self) -> int:
        """Every token generated: reasoning counts, as every API counts it in its output tokens."""
        return len(self.reasoning) + len(self.tokens) + sum(len(call.fragments) for call in self.tool_calls)


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int  # reasoning included
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class Delivery:
    """How bytes reach the socket: write sizes and grouping (the transport's knobs)."""

    chunk_bytes: int | None = None
    chunk_gap: float = DEFAULT_CHUNK_GAP_MS / 1000
    events_per_write: int = 1
    line_ending: str = "lf"  # lf, crlf or cr: how SSE lines end


@dataclass(frozen=True, slots=True)
class Plan:
    uid: str  # dialects prefix it: chatcmpl-<uid>, resp_<uid>, msg_<uid>
    request_id: str
    created: int
    model: str
    system_fingerprint: str
    scenario: str
    choices: tuple[Choice, ...]
    usage: Usage
    ask: Ask
    pacing: Pacing
    delivery: Delivery
    seed: int
    fault: Fault | None = None  # the fault that strikes this answer (its probability already rolled)
    done: bool = True  # Chat and Completions end with `data: [DONE]`
    replay: Replay | None = None  # a recorded exchange answers, byte for byte (see plan/recording.py)
    reasoning_field: str = "reasoning_content"  # Chat's delta field for reasoning (`reasoning` on OpenRouter)
    redacted_thinking: bool = False  # Anthropic: the reasoning is one redacted_thinking block
    vectors: tuple[Sequence[float], ...] = ()  # an embeddings answer: one unit vector per input, in order

    def due_times(self) -> Iterator[float]:
        """Offsets (s) at which successive tokens are due; the same for every run of this plan."""
        # Only jitter draws from the generator: without it a stream keeps no Random (2.5 KiB of state).
        return self.pacing.due_times(random.Random(self.seed ^ 0x9E3779B97F4A7C15) if self.pacing.jitter else None)

    @property
    def duration(self) -> float:
        """How long generating the longest choice takes (what a non-streamed answer waits); an embeddings
        answer takes the time to the first token."""
        if self.ask.embed is not None:
            return self.pacing.ttft
        slots = max((c.completion_tokens + len(c.tool_calls) for c in self.choices), default=0)
        return self.pacing.duration(slots)


# Knobs that change how an answer is delivered, not what it says: they stay out of the seed, so the same
# answer paced, cut or faulted differently keeps its ids and its text.
DELIVERY_KNOBS = (
    "ttft_ms",
    "itl_ms",
    "jitter_ms",
    "chunk_bytes",
    "chunk_gap_ms",
    "events_per_write",
    "line_ending",
    "fault",
    "replay_speed",
)


def request_seed(seed: int, body: Any, scenario: str = "") -> int:
    """Same seed + same scenario + same request body -> same 64-bit seed for everything random in the answer."""
    knobs = body.get("mockstream") if isinstance(body, dict) else None
    if isinstance(knobs, dict):
        body = {**body, "mockstream": {k: v for k, v in knobs.items() if k not in DELIVERY_KNOBS}}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    # surrogatepass: a lone surrogate ("\ud800", valid JSON) hashes too; every valid text hashes as before
    digest = hashlib.blake2b(f"{seed}\0{scenario}\0{canonical}".encode("utf-8", "surrogatepass"), digest_size=8)
    return int.from_bytes(digest.digest(), "big")


# byte -> alphanumeric character: ids are random bytes translated in one call (a 256-byte table, so 8 of
# the 62 characters are a little likelier: ids stay unique enough for a mock, and are cheap)
_ALNUM_TABLE = bytes(ord(_ALNUM[i % len(_ALNUM)]) for i in range(256))


def _draw(seed: int, *labels: int) -> bytes:
    """64 bytes that depend only on the seed and the labels: the source of every id in a plan."""
    key = ":".join(map(str, (seed, *labels))).encode()
    return hashlib.blake2b(key, digest_size=64).digest()


def _ids(data: bytes) -> str:
    """An alphanumeric id as long as `data`."""
    return data.translate(_ALNUM_TABLE).decode("ascii")


def make_plan(
    knobs: Mapping[str, Any],
    ask: Ask,
    *,
    seed: int,
    speed: float,
    scenario: str,
    fault: Fault | None = None,
    recording: Recording | None = None,
    source: str = "<inline>",
    vector_seed: int = 0,
) -> Plan:
    """Turn merged knobs and a request into the exact answer, ready to encode. An embedding depends on its
    input, model, dimensions and `vector_seed` (the server's or the request's `seed`) alone, so the same text
    gets the same vector in any request."""
    draw = _draw(seed)  # uid 29 bytes | request id 16 | created 4 | fingerprint 5 | jitter seed 8
    uid = _ids(draw[:29])
    request_id = "req_" + draw[29:45].hex()
    created = 1_700_000_000 + int.from_bytes(draw[45:49], "big") % 60_000_000
    fingerprint = "fp_" + draw[49:54].hex()
    embed = ask.embed
    choices = () if embed is not None else tuple(_choice(i, knobs, ask, seed) for i in range(ask.n))
    usage = Usage(
        ask.prompt_tokens, sum(c.completion_tokens for c in choices), sum(len(c.reasoning) for c in choices)
    )
    vectors = () if embed is None else tuple(vector(t, ask.model, vector_seed, embed.dimensions) for t in embed.inputs)
    chunk_gap = knobs.get("chunk_gap_ms", DEFAULT_CHUNK_GAP_MS) / 1000
    delivery = Delivery(
        knobs.get("chunk_bytes"), chunk_gap, knobs.get("events_per_write", 1), knobs.get("line_ending", "lf")
    )
    return Plan(
        uid,
        request_id,
        created,
        ask.model,
        fingerprint,
        scenario,
        choices,
        usage,
        ask,
        Pacing.from_knobs(dict(knobs), speed),
        delivery,
        int.from_bytes(draw[54:62], "big"),
        fault,
        knobs.get("done", True),
        None if recording is None else replay(recording, source, knobs, speed),
        knobs.get("reasoning_field", "reasoning_content"),
        knobs.get("redacted_thinking", False),
        vectors,
    )


REASONING_LABEL = 1 << 32  # a draw label no choice index reaches: the reasoning's Faker seed


def _choice(index: int, knobs: Mapping[str, Any], ask: Ask, seed: int) -> Choice:
    text_seed = int.from_bytes(_draw(seed, index)[:8], "big")
    locale = knobs.get("locale", DEFAULT_LOCALE)
    reasoning: Sequence[str] = ()
    if "reasoning_tokens" in knobs:
        reasoning_seed = int.from_bytes(_draw(seed, index, REASONING_LABEL)[:8], "big")
        reasoning = content.random_tokens(knobs["reasoning_tokens"], locale, reasoning_seed)
    elif "reasoning" in knobs:
        reasoning = content.tokenize(knobs["reasoning"])
    if "tokens" in knobs:
        tokens: Sequence[str] = knobs["tokens"]
    elif "random_tokens" in knobs:
        tokens = content.random_tokens(knobs["random_tokens"], locale, text_seed)
    else:
        tokens = content.tokenize(knobs.get("content", ""))
    calls = tuple(
        ToolCall(
            call.get("id") or "call_" + _ids(_draw(seed, index, number)[:24]),
            call["name"],
            call["arguments"],
            tuple(content.tokenize(call["arguments"])),
        )
        for number, call in enumerate(knobs.get("tool_calls", ()))
    )
    finish = knobs.get("finish_reason") or ("tool_calls" if calls else "stop")
    if ask.max_tokens is not None:
        reasoning, tokens, calls, cut = _cut(reasoning, tokens, calls, ask.max_tokens)
        if cut:
            finish = "length"
    return Choice(index, tokens, calls, finish, reasoning)


def _cut(
    reasoning: Sequence[str], tokens: Sequence[str], calls: tuple[ToolCall, ...], budget: int
) -> tuple[Sequence[str], Sequence[str], tuple[ToolCall, ...], bool]:
    """Keep the first `budget` tokens (reasoning first, then content, then tool-call arguments), as max_tokens
    does: a reasoning model's budget covers its reasoning too."""
    total = len(reasoning) + len(tokens) + sum(len(c.fragments) for c in calls)
    if total <= budget:
        return reasoning, tokens, calls, False
    reasoning = reasoning[:budget]
    budget -= len(reasoning)
    kept_tokens = tokens[:budget]
    budget -= len(kept_tokens)
    kept_calls = []
    for call in calls:
        if budget <= 0:
            break
        fragments = call.fragments[:budget]
        budget -= len(fragments)
        kept_calls.append(ToolCall(call.id, call.name, "".join(fragments), fragments))
    return reasoning, kept_tokens, tuple(kept_calls), True
