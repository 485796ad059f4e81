"""What an embeddings request asks for, and its vectors: seeded, unit length, one per input.

A vector depends on the text, the model, the dimensions and a seed alone: the same input gets the same vector
in a batch of one or of a thousand, and different inputs get (almost surely) different ones. Its components
are float32 values (what the APIs send, and what a base64 answer carries), drawn from SHAKE-256 of those four.
"""

from __future__ import annotations

import hashlib
import math
from array import array
from dataclasses import dataclass

FLOAT = "float"
BASE64 = "base64"


@dataclass(frozen=True, slots=True)
class Embed:
    """The inputs to embed, in order (a token-id array as its ids joined by spaces), and how."""

    inputs: tuple[str, ...]
    dimensions: int
    encoding: str = FLOAT  # float: a JSON array of numbers; base64: little-endian float32 bytes


_SCALE = 1 / 2**31


def vector(text: str, model: str, seed: int, dimensions: int) -> array:
    """The unit vector of `text`: `dimensions` float32 components, each in (-1, 1) before normalising."""
    key = f"{seed}\0{model}\0{dimensions}\0{text}".encode("utf-8", "surrogatepass")
    raw = array("i")
    raw.frombytes(hashlib.shake_256(key).digest(4 * dimensions))
    components = [value * _SCALE for value in raw]
    norm = math.sqrt(math.fsum(c * c for c in components)) or 1.0
    return array("f", [c / norm for c in components])
