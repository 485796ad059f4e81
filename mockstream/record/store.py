"""Where a recorded exchange goes: its secrets taken out, its match rules, its file name, the file itself.

A recording is a scenario file of the ordinary schema (`version`, `name`, `description`, `match`,
`recording`), so `load_scenarios` reads it back and replay answers with it. Secrets never reach the file:
the auth headers are not written, and their values, a Bearer token's token and whatever a `--redact` regex
matches are replaced by `[REDACTED]` in the recorded request body, the match rules and every write.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ..plan.checks import clean_surrogates
from ..plan.recording import RecordedWrite, Recording
from ..plan.recording import parse as parse_recording
from ..plan.schema import SCENARIO_VERSION, Scenario, load_file, read_yaml

if TYPE_CHECKING:
    from ..plan import Ask

REDACTED = "[REDACTED]"
# Never written; and their values are taken out of whatever is (bodies, writes, match rules).
SECRET_HEADERS = ("authorization", "proxy-authorization", "api-key", "x-api-key", "cookie", "set-cookie")
# A header value shorter than this is not looked for inside bodies: real keys are far longer (OpenAI's 51+,
# Anthropic's 100+, Azure's 32), and a placeholder key (`x`, `sk-test`, `mockstream`) would otherwise
# blank every occurrence of a common word in the recorded answer.
MIN_SECRET = 16
_ANY = r"[\s\S]+?"  # what a redacted part of a match rule's text stands for
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


# ---------------------------------------------------------------- redaction ---
class Redactor:
    """The `--redact` patterns of a recorder; `for_request` adds the secrets of one request's headers."""

    def __init__(self, patterns: Iterable[str | re.Pattern[str]] = ()) -> None:
        self.patterns = tuple(re.compile(p) if isinstance(p, str) else p for p in patterns)

    def for_request(self, headers: Mapping[str, str]) -> Redaction:
        secrets: set[str] = set()
        for name, value in headers.items():
            if name.lower() in SECRET_HEADERS:
                secrets.update(_secrets(name.lower(), value))
        literal = sorted((s for s in secrets if len(s) >= MIN_SECRET), key=len, reverse=True)
        patterns = ([re.compile("|".join(map(re.escape, literal)))] if literal else []) + list(self.patterns)
        return Redaction(tuple(patterns))


def _secrets(name: str, value: str) -> list[str]:
    """A header's value, and the parts of it that are secrets by themselves (a Bearer token, a cookie's value)."""
    value = value.strip()
    found = [value]
    scheme, _, token = value.partition(" ")
    if token and scheme.lower() in ("bearer", "basic", "token"):
        found.append(token.strip())
    if name in ("cookie", "set-cookie"):
        for part in value.split(";"):
            found.append(part.partition("=")[2].strip())
    return found


@dataclass(frozen=True)
class Redaction:
    """What is taken out of one exchange: every match of these patterns."""

    patterns: tuple[re.Pattern[str], ...]

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Where the patterns match (non-empty matches, overlapping ones merged), in order."""
        found = sorted(m.span() for p in self.patterns for m in p.finditer(text) if m.end() > m.start())
        merged: list[tuple[int, int]] = []
        for start, end in found:
            if merged and start < merged[-1][1]:
                merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
            else:
                merged.append((start, end))
        return merged

    def text(self, text: str) -> str:
        if not self.patterns:
            return text
        out, last = [], 0
        for start, end in self.spans(text):
            out += [text[last:start], REDACTED]
            last = end
        return "".join(out) + text[last:] if out else text

    def value(self, value: Any) -> Any:
        """A JSON value with every string (keys too) redacted."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.text(str(k)): self.value(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(v) for v in value]
        return value

    def pattern(self, text: str) -> str:
        """A regex that `fullmatch`es exactly `text`, its secrets left open (each as `[\\s\\S]+?`)."""
        parts, last = [], 0
        for start, end in self.spans(text):
            parts += [re.escape(text[last:start]), _ANY]
            last = end
        return "".join(parts) + re.escape(text[last:])

    def anchored(self, text: str) -> str:
        """A regex that holds for exactly `text` when `search`ed (anchored at both ends), its secrets left open."""
        return r"\A" + self.pattern(text) + r"\Z"

    def writes(self, writes: Sequence[RecordedWrite]) -> tuple[RecordedWrite, ...]:
        """The writes with their secrets replaced, looked for across write boundaries (a key can be split over
        two writes). Boundaries outside a secret stay where they were; one inside a secret moves past it (the
        replacement travels with the write the secret began in); a write left empty is dropped."""
        data = b"".join(write.data for write in writes)
        text = data.decode("utf-8", "surrogateescape")
        spans = self.spans(text) if self.patterns else []
        if not spans:
            return tuple(writes)
        byte_spans, at, last = [], 0, 0  # the char spans as byte offsets
        for start, end in spans:
            at += len(text[last:start].encode("utf-8", "surrogateescape"))
            length = len(text[start:end].encode("utf-8", "surrogateescape"))
            byte_spans.append((at, at + length))
            at, last = at + length, end
        replacement = REDACTED.encode()
        pieces, edges, last, shift = [], [], 0, 0  # edges: (old start, old end, new start) of each secret
        for start, end in byte_spans:
            pieces += [data[last:start], replacement]
            edges.append((start, end, start + shift))
            shift += len(replacement) - (end - start)
            last = end
        pieces.append(data[last:])
        redacted = b"".join(pieces)

        def moved(offset: int) -> int:
            delta = 0
            for start, end, new_start in edges:
                if offset <= start:
                    break
                if offset < end:
                    return new_start + len(replacement)
                delta = new_start + len(replacement) - end
            return offset + delta

        out, old_end, begin = [], 0, 0
        for write in writes:
            old_end += len(write.data)
            end = moved(old_end) if old_end < len(data) else len(redacted)
            if end > begin:
                out.append(RecordedWrite(write.at, redacted[begin:end]))
            begin = max(begin, end)
        return tuple(out)


# ---------------------------------------------------------------- what a request says ---
def match_rules(dialect: str, ask: Ask, redaction: Redaction, body: Any = None) -> dict[str, Any]:
    """The `match` of a recording of a request that parsed: its dialect, its model, its place in the
    conversation, its newest text, its system prompt, the tools it offers and whether it streams, so a recorded
    directory answers a conversation turn by turn and two requests that differ in any of these never cross.
    `body` is the request's JSON object (its `stream` field, when it has one, is pinned: a body rule cannot
    say "absent", so a request without the field is not told from one that streams)."""
    rules: dict[str, Any] = {"dialect": dialect}
    rules["model"] = redaction.pattern(clean_surrogates(ask.model))
    rules["turn"] = ask.turn
    rules["last_role"] = ask.last_role
    if ask.last_user:
        rules["user"] = redaction.anchored(clean_surrogates(ask.last_user))
    if ask.last_role == "tool":
        rules["tool_result"] = redaction.anchored(clean_surrogates(ask.tool_result))
    rules["system"] = redaction.anchored(clean_surrogates(ask.system))
    rules["tools"] = sorted({redaction.text(clean_surrogates(name)) for name in ask.tools})
    stream = body.get("stream") if isinstance(body, dict) else None
    if isinstance(stream, bool):
        rules["body"] = {"stream": stream}
    return rules


UNPARSED = "mockstream_unparsed"  # the body rule that pins a request with no object body (no request has it)


def pinned_rules(dialect: str, body: Any, redacted: Any, redaction: Redaction) -> dict[str, Any]:
    """The `match` of a recording of a request its dialect could not read (a 400, bad JSON): a `body` rule per
    top-level field with its exact value (a string as its escaped text, secrets left open), so it answers no
    other request. A body that is no object, or none of whose fields can be a rule, gets a rule no request holds."""
    rules: dict[str, Any] = {"dialect": dialect}
    pinned: dict[str, Any] = {}
    if isinstance(body, dict) and isinstance(redacted, dict):
        for (key, value), (redacted_key, redacted_value) in zip(body.items(), redacted.items()):
            if not key or "." in key or redacted_key != key:
                continue  # not a dotted path of one step (or a secret): the other fields pin it
            pinned[key] = redaction.pattern(value) if isinstance(value, str) else redacted_value
    if not pinned:
        pinned[UNPARSED] = digest(redacted)
    rules["body"] = pinned
    return rules


def digest(request: Any) -> str:
    """8 hex digits of BLAKE2b over the request's canonical JSON (keys sorted, no spaces)."""
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.blake2b(canonical.encode("utf-8", "surrogatepass"), digest_size=4).hexdigest()


MODEL_CHARS = 80  # of a model's name in a file name: the name stays far below the 255 bytes a file system allows


def file_stem(dialect: str, model: str, turn: int, hashed: str) -> str:
    """`<dialect>-<model>-<turn>-<hash>`, the model's characters outside [A-Za-z0-9._-] as `_`, its first
    MODEL_CHARS kept."""
    safe = _UNSAFE.sub("_", model)[:MODEL_CHARS].strip(".")
    return f"{dialect}-{safe or 'unknown'}-{turn}-{hashed}"


# ---------------------------------------------------------------- the file ---
def document(name: str, description: str, match: Mapping[str, Any], recording: Recording) -> dict[str, Any]:
    return {
        "version": SCENARIO_VERSION,
        "name": name,
        "description": description,
        "match": dict(match),
        "recording": recording.to_dict(),
    }


class _Flow(dict):
    """A mapping dumped on one line (`{at_ms: 12.5, text: "..."}`): one write per line."""


class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    """libyaml's emitter when PyYAML has it (several times faster for thousands of writes), else PyYAML's."""


def _flow(dumper: Any, data: _Flow) -> Any:
    return dumper.represent_mapping("tag:yaml.org,2002:map", data, flow_style=True)


_Dumper.add_representer(_Flow, _flow)


def dump(doc: Mapping[str, Any]) -> str:
    """The YAML text of a scenario document; each write's text verified to load back as the same bytes (a
    write whose text YAML would not give back exactly is written as base64)."""
    recording = dict(doc["recording"])
    writes = [dict(write) for write in recording.get("writes", [])]
    expected = [RecordedWrite(0.0, _bytes(write)) for write in writes]
    for _ in range(2):
        recording["writes"] = [_Flow(write) for write in writes]
        text = yaml.dump(
            {**doc, "recording": recording}, Dumper=_Dumper, allow_unicode=True, sort_keys=False, width=1 << 30
        )
        loaded, _problems = parse_recording(read_yaml(text)["recording"], "recording")  # as replay reads it
        got = loaded.writes if loaded is not None else ()
        wrong = [i for i, write in enumerate(expected) if i >= len(got) or got[i].data != write.data]
        if not wrong and len(got) == len(expected):
            return text
        for i in wrong:
            writes[i] = {"at_ms": writes[i]["at_ms"], "base64": base64.b64encode(expected[i].data).decode("ascii")}
    raise ValueError("a recording's writes do not survive YAML even as base64")  # pragma: no cover


def _bytes(write: Mapping[str, Any]) -> bytes:
    return write["text"].encode("utf-8") if "text" in write else base64.b64decode(write["base64"])


def write_scenario(
    out: Path, stem: str, build: Callable[[str, int], Mapping[str, Any]], taken: Callable[[str], bool]
) -> tuple[Path, Scenario]:
    """Write `build(name, take)` as `out/<stem>.yaml` (take 1), else `<stem>-2.yaml` (take 2)... the first
    free one, atomically (a temporary file, then a hard link that fails if another process took the name);
    return the path and the scenario loaded back from it (exactly what replay reads). `taken(name)`: a
    scenario of that name is loaded already."""
    out.mkdir(parents=True, exist_ok=True)
    for take in itertools.count(1):
        name = stem if take == 1 else f"{stem}-{take}"
        path = out / f"{name}.yaml"
        if path.exists() or taken(name):
            continue
        tmp = out / f".{name}.{os.getpid()}.tmp"
        tmp.write_text(dump(build(name, take)), encoding="utf-8")
        try:
            try:
                os.link(tmp, path)
            except FileExistsError:
                continue
            except OSError:  # a file system without hard links: a rename (the name was free a moment ago)
                os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path, load_file(path)[0]
    raise AssertionError("unreachable")  # pragma: no cover
