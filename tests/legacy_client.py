"""An application written against the pre-1.0 openai client (openai==0.28.1), as the old tutorials wrote it.

test_clients_legacy.py runs this file with the Python of a separate virtualenv (openai 0.28 cannot share one
with openai >= 1). It reads one JSON request per line on stdin and answers each with one line
`RESULT <json>` on stdout; or it takes a single request as its argument and prints its result. A request:

    {"api_base": "http://127.0.0.1:PORT/v1", "call": "chat" | "chat_async" | "completion", "kwargs": {...}}

`kwargs` go to `openai.ChatCompletion.create` / `.acreate` / `openai.Completion.create` unchanged, so the
mockstream knobs travel as a `mockstream=` keyword (0.28 puts unknown keywords in the request body) or
through `headers={"X-Mockstream-Scenario": ...}`.
"""

from __future__ import annotations

import asyncio
import json
import sys
import traceback
from typing import Any

import openai


def _error(exc: BaseException) -> dict[str, Any]:
    return {
        "class": type(exc).__name__,
        "mro": [f"{cls.__module__}.{cls.__name__}" for cls in type(exc).__mro__],
        "message": str(exc),
        "http_status": getattr(exc, "http_status", None),
    }


def _chat_stream(answer: Any, result: dict[str, Any]) -> None:
    for chunk in answer:
        result["objects"].append(chunk["object"])
        result["pieces"].append(chunk.choices[0].delta.get("content"))  # the tutorial's line
        result["finish_reasons"].append(chunk.choices[0].finish_reason)


async def _chat_async(kwargs: dict[str, Any], result: dict[str, Any]) -> None:
    answer = await openai.ChatCompletion.acreate(**kwargs)
    if not kwargs.get("stream"):
        result["content"] = answer.choices[0].message.content
        return
    async for chunk in answer:
        result["objects"].append(chunk["object"])
        result["pieces"].append(chunk.choices[0].delta.get("content"))
        result["finish_reasons"].append(chunk.choices[0].finish_reason)


def run(request: dict[str, Any]) -> dict[str, Any]:
    openai.api_base = request["api_base"]
    openai.api_key = "sk-legacy"
    call = request["call"]
    kwargs = request.get("kwargs", {})
    result: dict[str, Any] = {"version": openai.version.VERSION, "pieces": [], "finish_reasons": [], "objects": [],
                              "content": None, "usage": None, "error": None}
    try:
        if call == "chat":
            answer = openai.ChatCompletion.create(**kwargs)
            if kwargs.get("stream"):
                _chat_stream(answer, result)
            else:
                result["objects"].append(answer["object"])
                result["content"] = answer.choices[0].message.content
                result["finish_reasons"].append(answer.choices[0].finish_reason)
                result["usage"] = answer.usage.to_dict_recursive()
        elif call == "chat_async":
            asyncio.run(_chat_async(kwargs, result))
        elif call == "completion":
            answer = openai.Completion.create(**kwargs)
            if kwargs.get("stream"):
                for chunk in answer:
                    result["objects"].append(chunk["object"])
                    result["pieces"].append(chunk.choices[0].text)
                    result["finish_reasons"].append(chunk.choices[0].finish_reason)
            else:
                result["objects"].append(answer["object"])
                result["content"] = answer.choices[0].text
                result["finish_reasons"].append(answer.choices[0].finish_reason)
                result["usage"] = answer.usage.to_dict_recursive()
        else:
            raise ValueError(f"unknown call {call!r}")
    except Exception as exc:
        result["error"] = _error(exc)
        traceback.print_exc(file=sys.stderr)
    return result


def main() -> None:
    if len(sys.argv) > 1:
        print(json.dumps(run(json.loads(sys.argv[1])), indent=2))
        return
    for line in sys.stdin:
        if line.strip():
            print("RESULT " + json.dumps(run(json.loads(line))), flush=True)


if __name__ == "__main__":
    main()
