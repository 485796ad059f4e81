"""Google Gemini (`generativelanguage` v1beta and v1): `GenerateContentResponse` objects, streamed as SSE
`data:` frames (`?alt=sse`, what google-genai asks for) or as one JSON array, and Google's error shape.

The model and the method come from the path (`/v1beta/models/{model}:streamGenerateContent`). Each text token
is one `text` part (thoughts carry `"thought": true`); a function call is one whole `functionCall` part, as
Gemini sends it (no argument fragments). `usageMetadata` counts thoughts apart from the candidates' tokens.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from ..deliver.frames import TOKEN, Frame
from ..deliver.json_array import CLOSE, FIRST, NEXT, array
from ..deliver.sse import framing
from ..errors import CODE_STATUS, Failure, RequestError
from ..plan import Ask, Choice, Plan
from ..plan.content import count_tokens
from ..plan.embedding import Embed
from . import KNOBS, Asked, RequestView, misplaced_knobs
from .clock import interleave
from .conversation import Talk, entries
from .openai import dumps

FINISH = {"stop": "STOP", "length": "MAX_TOKENS", "content_filter": "SAFETY", "tool_calls": "STOP"}
STATUSES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    408: "DEADLINE_EXCEEDED",
    409: "ABORTED",
    413: "INVALID_ARGUMENT",
    415: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
MESSAGES = {  # Google's words for a scripted error that gives none
    401: "API key not valid. Please pass a valid API key.",
    403: "The caller does not have permission",
    429: "Resource has been exhausted (e.g. check quota).",
    500: "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
    503: "The model is overloaded. Please try again later.",
}
EMBED_DIMENSIONS = {"text-embedding-004": 768, "embedding-001": 768, "gemini-embedding-001": 3072}
MAX_CANDIDATES = 8
PREFIXES = ("/v1beta/models/", "/v1/models/")


def target(path: str) -> tuple[str, str]:
    """The model and the method a Gemini path names: `/v1beta/models/gemini-2.0-flash:generateContent`."""
    for prefix in PREFIXES:
        if path.startswith(prefix):
            model, _, method = path[len(prefix) :].rpartition(":")
            return model, method
    return "", ""


def _bad(message: str) -> RequestError:
    return RequestError(400, message, type="INVALID_ARGUMENT")


def _body(request: RequestView) -> dict[str, Any]:
    body = request.body
    if not isinstance(body, dict):
        raise _bad("Invalid JSON payload received. Expected an object.")
    for key in body:
        if key != KNOBS and misplaced_knobs(key):
            raise _bad(f'Invalid JSON payload received. Unknown name "{key}": Cannot find field.')
    return body


class Gemini:
    name = "gemini"
    routes = tuple(
        ("POST", f"{prefix}{{model}}:{method}")
        for prefix in PREFIXES
        for method in ("streamGenerateContent", "generateContent")
    )

    def parse(self, request: RequestView) -> Asked:
        body = _body(request)
        model, method = target(request.path)
        stream = method == "streamGenerateContent"
        contents = body.get("contents")
        if not isinstance(contents, list) or not contents:
            raise _bad("* GenerateContentRequest.contents: contents is not specified")
        talk = Talk()
        system = body.get("systemInstruction")
        if isinstance(system, dict):
            talk.instruct(_text(system))
        prompt = count_tokens(_text(system) if isinstance(system, dict) else "")
        for i, content in enumerate(contents):
            if not isinstance(content, dict) or not isinstance(content.get("parts"), list):
                raise _bad(f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty.")
            role = content.get("role", "user")
            if role not in ("user", "model", "function", "tool"):
                raise _bad(f'Please use a valid role: user, model. (contents[{i}].role: "{role}")')
            parts = entries(content["parts"])
            prompt += count_tokens(_text(content))
            responses = [p["functionResponse"] for p in parts if isinstance(p.get("functionResponse"), dict)]
            if role == "model":
                talk.assistant()
            elif responses:
                talk.tool(json.dumps(responses[-1].get("response", {})))
            else:
                talk.user(_text(content))
        config = body.get("generationConfig") or {}
        if not isinstance(config, dict):
            raise _bad("Invalid JSON payload received. generationConfig must be an object.")
        n = config.get("candidateCount", 1)
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_CANDIDATES:
            raise _bad(f"* GenerateContentRequest.generation_config.candidate_count: must be 1 to {MAX_CANDIDATES}.")
        limit = config.get("maxOutputTokens")
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
            raise _bad("* GenerateContentRequest.generation_config.max_output_tokens: must be positive.")
        names = [
            d.get("name") for tool in entries(body.get("tools")) for d in entries(tool.get("functionDeclarations"))
        ]
        alt = request.query.get("alt", "json")
        ask = Ask(
            model=model,
            stream=stream,
            prompt_tokens=prompt,
            n=n,
            max_tokens=limit,
            include_usage=True,
            framing="sse" if alt == "sse" else "json_array",
            **talk.fields(names),
        )
        return Asked(ask, body.get(KNOBS, {}), body)

    def encode(self, plan: Plan) -> Iterator[Frame]:
        frames = self._objects(plan)
        if plan.ask.framing == "sse":
            sse = framing(plan.delivery.line_ending)
            return (Frame(f.due, sse.data(f.data), f.kind) if isinstance(f.data, bytes) else f for f in frames)
        return array(frames)

    def _objects(self, plan: Plan) -> Iterator[Frame]:
        """The stream's objects, one JSON object per frame (the framing wraps them)."""
        tail = b'],"role":"model"},"index":'
        end = b'}],"modelVersion":' + dumps(plan.model) + b',"responseId":"' + plan.uid.encode() + b'"}'
        heads = [b'{"candidates":[{"content":{"parts":[' for _ in plan.choices]
        slots = [_slots(c, heads[i], tail + str(c.index).encode() + end) for i, c in enumerate(plan.choices)]

        def finish(i: int) -> bytes:
            choice = plan.choices[i]
            return (
                heads[i]
                + b'{"text":""}'
                + tail
                + str(choice.index).encode()
                + b',"finishReason":"'
                + FINISH.get(choice.finish_reason, "OTHER").encode()
                + b'"}],"usageMetadata":'
                + dumps(usage(plan))
                + end[2:]  # the object's other fields, after the candidate list
            )

        yield from interleave(plan, slots, finish)

    def complete(self, plan: Plan) -> dict[str, Any]:
        return {
            "candidates": [_candidate(c) for c in plan.choices],
            "usageMetadata": usage(plan),
            "modelVersion": plan.model,
            "responseId": plan.uid,
        }

    def headers(self, plan: Plan) -> dict[str, str]:
        headers = _google_headers(plan)
        if plan.ask.stream:
            sse = plan.ask.framing == "sse"
            headers["Content-Type"] = "text/event-stream" if sse else "application/json; charset=UTF-8"
        return headers

    def error_event(self, plan: Plan, failure: Failure, index: int) -> bytes:
        """Google ends a failing stream with an `{"error": ...}` object: google-genai raises its APIError."""
        status = CODE_STATUS.get(failure.code or "", 500)
        body = dumps(error_object(status, failure.message or MESSAGES[status], failure.type))
        if plan.ask.framing == "sse":
            return framing(plan.delivery.line_ending).data(body)
        return (FIRST if index == 0 else NEXT) + body + CLOSE  # the array ends with it

    def error_body(self, error: RequestError) -> dict[str, Any]:
        own = error.type.isupper()  # our own refusals name Google's status; the rest are OpenAI-worded
        message = error.message if own or error.status not in MESSAGES else MESSAGES[error.status]
        if error.code is not None and not own and error.status not in MESSAGES:
            message = error.message
        body = error_object(error.status, message, error.type if own else None)
        if error.status == 429:
            body["error"]["details"] = [
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": _retry_delay(error.message)},
            ]
        return body

    def error_headers(self, error: RequestError, plan: Plan, retry_in: float) -> dict[str, str]:
        headers = _google_headers(plan)
        if error.status == 429:
            headers["x-mockstream-retry-delay"] = f"{retry_in:g}s"
        return headers


_RETRY = re.compile(r"try again in (\d+(?:\.\d+)?)s\b")


def _retry_delay(message: str) -> str:
    """The wait a scripted 429 names (`retry_after`: the default message says it), as Google's Duration."""
    found = _RETRY.search(message)
    return f"{float(found.group(1)):g}s" if found else "20s"


def error_object(status: int, message: str, name: str | None = None) -> dict[str, Any]:
    return {"error": {"code": status, "message": message, "status": name or STATUSES.get(status, "UNKNOWN")}}


def _google_headers(plan: Plan) -> dict[str, str]:
    return {
        "Vary": "Origin, X-Origin, Referer",
        "Server": "scaffolding on HTTPServer2",
        "Server-Timing": "gfet4t7; dur=" + str(round(plan.pacing.ttft * 1000)),
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "SAMEORIGIN",
        "X-XSS-Protection": "0",
    }


def _text(content: dict[str, Any]) -> str:
    return "".join(p["text"] for p in entries(content.get("parts")) if isinstance(p.get("text"), str))


def usage(plan: Plan) -> dict[str, Any]:
    u = plan.usage
    meta: dict[str, Any] = {
        "promptTokenCount": u.prompt_tokens,
        "candidatesTokenCount": u.completion_tokens - u.reasoning_tokens,  # thoughts are counted apart
        "totalTokenCount": u.total_tokens,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": u.prompt_tokens}],
    }
    if u.reasoning_tokens:
        meta["thoughtsTokenCount"] = u.reasoning_tokens
    return meta


def _call(call: Any) -> dict[str, Any]:
    try:
        args = json.loads(call.arguments) if call.arguments else {}
    except ValueError:  # cut short by max tokens: what was said, as a string
        args = {"_partial": call.arguments}
    return {"functionCall": {"name": call.name, "args": args if isinstance(args, dict) else {"value": args}}}


def _slots(choice: Choice, head: bytes, tail: bytes) -> Iterator[tuple[bytes, int]]:
    thought = head + b'{"text":'
    for token in choice.reasoning:
        yield thought + dumps(token) + b',"thought":true}' + tail, TOKEN
    for token in choice.tokens:
        yield thought + dumps(token) + b"}" + tail, TOKEN
    for call in choice.tool_calls:
        yield head + dumps(_call(call)) + tail, TOKEN


def _candidate(choice: Choice) -> dict[str, Any]:
    parts: list[dict[str, Any]] = []
    if choice.reasoning:
        parts.append({"text": choice.reasoning_text, "thought": True})
    if choice.tokens:
        parts.append({"text": choice.text})
    parts += [_call(call) for call in choice.tool_calls]
    return {
        "content": {"parts": parts, "role": "model"},
        "finishReason": FINISH.get(choice.finish_reason, "OTHER"),
        "index": choice.index,
    }


class GeminiEmbed(Gemini):
    """`:embedContent` and `:batchEmbedContents`: seeded unit vectors, answered whole."""

    name = "gemini_embed"
    method = "embedContent"

    def __init__(self, batch: bool = False):
        self.batch = batch
        if batch:
            self.name, self.method = "gemini_batch_embed", "batchEmbedContents"
        self.routes = tuple(("POST", f"{prefix}{{model}}:{self.method}") for prefix in PREFIXES)

    def parse(self, request: RequestView) -> Asked:
        body = _body(request)
        model, method = target(request.path)
        if method == "batchEmbedContents":
            requests = body.get("requests")
            if not isinstance(requests, list) or not requests:
                raise _bad("* BatchEmbedContentsRequest.requests: requests is not specified")
        else:
            requests = [body]
        inputs, dims = [], None
        for i, item in enumerate(requests):
            content = item.get("content") if isinstance(item, dict) else None
            if not isinstance(content, dict):
                raise _bad(f"* EmbedContentRequest.content: content is not specified (requests[{i}])")
            inputs.append(_text(content))
            want = item.get("outputDimensionality")
            if want is not None and (not isinstance(want, int) or isinstance(want, bool) or not 1 <= want <= 3072):
                raise _bad("* EmbedContentRequest.output_dimensionality: must be between 1 and 3072.")
            dims = want or dims
        dimensions = dims or EMBED_DIMENSIONS.get(model, 3072)
        ask = Ask(
            model=model,
            stream=False,
            prompt_tokens=sum(count_tokens(t) for t in inputs),
            last_user=inputs[-1],
            embed=Embed(tuple(inputs), dimensions),
        )
        return Asked(ask, body.get(KNOBS, {}), body)

    def complete(self, plan: Plan) -> dict[str, Any]:
        vectors = [{"values": list(v)} for v in plan.vectors]
        return {"embeddings": vectors} if self.batch else {"embedding": vectors[0]}


GEMINI = Gemini()
GEMINI_EMBED = GeminiEmbed()
GEMINI_BATCH_EMBED = GeminiEmbed(batch=True)
