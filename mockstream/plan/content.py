"""Where the assistant's text comes from: text cut into tokens, or seeded Faker text.

The tokenizer is deterministic and close to how GPT tokenizers cut text:
- a word keeps its leading space (" world"), English contractions are their own token ("'s", "'ll"),
- numbers come in groups of at most three digits (" 2026" -> " 202", "6"),
- every punctuation or symbol character is its own token (" (", "!"),
- every CJK / kana / hangul character is its own token ("你", "好"),
- runs of whitespace stay together; a run before a word gives its last space to the word.
Joining the tokens always gives back the text exactly.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

_CJK = (
    "\u2e80-\u2fdf\u3000-\u303f\u3040-\u30ff\u3100-\u312f\u3130-\u318f\u31a0-\u31ff\u3400-\u4dbf"
    "\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef"
    "\U00020000-\U0003134f"  # CJK Extensions B-H and the compatibility supplement, outside the BMP
)
_TOKEN = re.compile(
    rf"""'(?:s|t|re|ve|m|ll|d)\b      # contractions
      | \ ?[{_CJK}]                  # one CJK character (with an optional leading space)
      | \ ?(?:(?![{_CJK}])[^\W\d_])+ # a word
      | \ ?\d{{1,3}}                 # up to three digits
      | \ ?[^\s\w{_CJK}]             # one punctuation or symbol character
      | \ ?_                         # underscore counts as a symbol
      | \s+(?!\S)                    # trailing whitespace
      | \s+                          # whitespace before a non-space
    """,
    re.VERBOSE,
)


def tokenize(text: str) -> list[str]:
    """Cut text into tokens; `"".join(tokenize(t)) == t` for every string."""
    return _TOKEN.findall(text)


EXACT_COUNT_CHARS = 100_000


def count_tokens(text: str) -> int:
    """Tokens in `text`; past 100k characters the count is extrapolated, so a huge prompt never stalls the
    server's loop (4 MiB counted exactly would hold every stream for most of a second)."""
    if len(text) <= EXACT_COUNT_CHARS:
        return len(_TOKEN.findall(text))
    head = len(_TOKEN.findall(text, 0, EXACT_COUNT_CHARS))
    return round(head * len(text) / EXACT_COUNT_CHARS)


@lru_cache(maxsize=256)
def random_tokens(count: int, locale: str, seed: int) -> tuple[str, ...]:
    """`count` tokens of seeded Faker prose; the same arguments always give the same tokens.

    Faker is imported here, not at module import: only random text pays its import time.
    """
    fake = _faker(locale)
    fake.seed_instance(seed)
    tokens: list[str] = []
    while len(tokens) < count:
        sentence = fake.sentence(nb_words=12)
        tokens.extend(tokenize(sentence if not tokens or _is_cjk_locale(locale) else " " + sentence))
    return tuple(tokens[:count])


def available_locales() -> list[str]:
    from faker.config import AVAILABLE_LOCALES

    return sorted(AVAILABLE_LOCALES)


@lru_cache(maxsize=32)
def _faker(locale: str) -> Any:
    from faker import Faker

    return Faker(locale)


def _is_cjk_locale(locale: str) -> bool:
    """Chinese and Japanese run sentences together; Korean, like English, puts a space between them."""
    return locale.split("_")[0] in {"zh", "ja"}
