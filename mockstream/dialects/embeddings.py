"""OpenAI Embeddings: `POST /v1/embeddings`, one whole `list` of vectors (never streamed).

The vectors come computed in the plan (plan/embedding.py); this module reads the request in the API's
words and spells the answer: a JSON array of numbers per input, or (what openai-python asks for by
default) base64 of the little-endian float32 bytes, which the SDK decodes itself.
"""

from __future__ import annotations

import base64
import sys
from array import array
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import RequestError
from ..plan import Ask, Plan
from ..plan.content import count_tokens
from ..plan.embedding import BASE64, FLOAT, Embed
from .openai import OpenAIDialect, at_least, require

if TYPE_CHECKING:
    from ..deliver.frames import Frame

MAX_INPUTS = 2048  # the API's limit on an array input
DEFAULT_DIMENSIONS = 1536  # text-embedding-3-small, text-embedding-ada-002, and any model we do not know
MODEL_DIMENSIONS = {"text-embedding-3-large": 3072}
FIXED_SIZE = frozenset({"text-embedding-ada-002"})  # older than `dimensions`: the API refuses the field
ENCODINGS = (FLOAT, BASE64)
# The API's one answer to any input that fails its schema (empty, too many, wrong element types)
BAD_INPUT = "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference."


def _invalid_input() -> RequestError:
    return RequestError(400, BAD_INPUT)


def _is_tokens(value: Any) -> bool:
    """A token-id array: a non-empty list of non-negative integers (booleans are not ids)."""
    return isinstance(value, list) and bool(value) and all(type(item) is int and item >= 0 for item in value)


def read_inputs(raw: Any) -> tuple[tuple[str, ...], int]:
    """The texts to embed (a token array as its ids joined by spaces) and their prompt tokens: the tokenizer's
    count for a string, the array's length for token ids."""
    if isinstance(raw, str):
        raw = [raw]
    elif not isinstance(raw, list):
        raise _invalid_input()
    elif raw and all(type(item) is int for item in raw):
        raw = [raw]  # one token-id array
    if not raw or len(raw) > MAX_INPUTS:
        raise _invalid_input()
    texts: list[str] = []
    tokens = 0
    for item in raw:
        if isinstance(item, str) and item:
            texts.append(item)
            tokens += count_tokens(item)
        elif _is_tokens(item):
            texts.append(" ".join(map(str, item)))
            tokens += len(item)
        else:
            raise _invalid_input()
    return tuple(texts), tokens


def read_dimensions(body: dict[str, Any], model: str) -> int:
    """`dimensions`: at least 1 and no more than the model's own size, which is the default."""
    size = MODEL_DIMENSIONS.get(model, DEFAULT_DIMENSIONS)
    asked = at_least(body, "dimensions", 1)
    if asked is None:
        return size
    if model in FIXED_SIZE:
        raise RequestError(400, "This model does not support specifying dimensions.", "dimensions")
    if asked > size:
        raise RequestError(
            400,
            f"Invalid value for 'dimensions' = {asked}. Must be less than or equal to {size} for model {model}.",
            "dimensions",
            "invalid_value",
        )
    return asked


def read_encoding(body: dict[str, Any]) -> str:
    encoding = require(body, "encoding_format", str, default=FLOAT)
    if encoding not in ENCODINGS:
        raise RequestError(
            400,
            f"Invalid value: '{encoding}'. Supported values are: 'float' and 'base64'.",
            "encoding_format",
            "invalid_value",
        )
    return encoding


def little_endian(vector: Sequence[float]) -> bytes:
    """The float32 bytes of a vector, little-endian as the API sends them whatever this machine's order."""
    floats = vector if isinstance(vector, array) else array("f", vector)
    if sys.byteorder == "big":
        floats = array("f", floats)
        floats.byteswap()
    return floats.tobytes()


def _spelled(vector: Sequence[float], encoding: str) -> Any:
    if encoding == BASE64:
        return base64.b64encode(little_endian(vector)).decode("ascii")
    return vector.tolist() if isinstance(vector, array) else list(vector)  # each float32 as its exact double


class Embeddings(OpenAIDialect):
    name = "embeddings"
    routes = (("POST", "/v1/embeddings"),)

    def read(self, body: dict[str, Any]) -> Ask:
        model = require(body, "model", str, missing="you must provide a model parameter")
        if "input" not in body or body["input"] is None:
            raise RequestError(400, "Missing required parameter: 'input'.", "input", "missing_required_parameter")
        if "stream" in body:  # the answer is one whole list: the API knows no such field here
            raise RequestError(400, "Unrecognized request argument supplied: stream", "stream", "unknown_parameter")
        inputs, tokens = read_inputs(body["input"])
        require(body, "user", str, default=None)
        embed = Embed(inputs, read_dimensions(body, model), read_encoding(body))
        return Ask(model=model, stream=False, prompt_tokens=tokens, last_user=inputs[0], embed=embed)

    def encode(self, plan: Plan) -> Iterator[Frame]:
        """Never streamed: the request always asks for a whole answer."""
        raise NotImplementedError("an embeddings answer is never streamed")

    def complete(self, plan: Plan) -> dict[str, Any]:
        embed = plan.ask.embed
        encoding = embed.encoding if embed is not None else FLOAT
        tokens = plan.usage.prompt_tokens
        return {
            "object": "list",
            "data": [
                {"object": "embedding", "index": i, "embedding": _spelled(vector, encoding)}
                for i, vector in enumerate(plan.vectors)
            ],
            "model": plan.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }


EMBEDDINGS = Embeddings()
