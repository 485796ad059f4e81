"""Where text comes from: the tokenizer rule, and seeded Faker text."""

from __future__ import annotations

import random
import re
import unicodedata

import pytest

from mockstream.plan.content import count_tokens, random_tokens, tokenize


def _is_cjk(char: str) -> bool:
    name = unicodedata.name(char, "")
    return name.startswith(("CJK UNIFIED IDEOGRAPH", "CJK COMPATIBILITY IDEOGRAPH", "HIRAGANA LETTER",
                            "KATAKANA LETTER", "HANGUL SYLLABLE"))


def _is_punctuation(char: str) -> bool:
    return unicodedata.category(char)[0] in "PS" and not _is_cjk(char)


# ---------------------------------------------------------------- the rule ---
@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("Hello world", ["Hello", " world"]),
        (" The cat sat", [" The", " cat", " sat"]),
        ("café naïve Ünïcode", ["café", " naïve", " Ünïcode"]),
        ("Привет мир", ["Привет", " мир"]),
    ],
)
def test_words_keep_their_leading_space(text, tokens):
    assert tokenize(text) == tokens


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("I'm sure it's fine", ["I", "'m", " sure", " it", "'s", " fine"]),
        ("we'll they've you'd don't they're", [
            "we", "'ll", " they", "'ve", " you", "'d", " don", "'t", " they", "'re"]),
        ("rock 'n' roll", ["rock", " '", "n", "'", " roll"]),
    ],
)
def test_contractions_are_their_own_tokens(text, tokens):
    assert tokenize(text) == tokens


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("7", ["7"]),
        ("In 2026", ["In", " 202", "6"]),
        ("1234567", ["123", "456", "7"]),
        ("v12.345", ["v", "12", ".", "345"]),
        ("abc123def", ["abc", "123", "def"]),
    ],
)
def test_digits_come_in_groups_of_at_most_three(text, tokens):
    assert tokenize(text) == tokens


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("Wait... what?!", ["Wait", ".", ".", ".", " what", "?", "!"]),
        ("f(x) = {a_b}", ["f", "(", "x", ")", " =", " {", "a", "_", "b", "}"]),
        ('"quoted", he said.', ['"', "quoted", '"', ",", " he", " said", "."]),
        ("a→b €5 ©", ["a", "→", "b", " €", "5", " ©"]),
    ],
)
def test_each_punctuation_character_is_its_own_token(text, tokens):
    assert tokenize(text) == tokens


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("你好!", ["你", "好", "!"]),
        ("你好，世界。", ["你", "好", "，", "世", "界", "。"]),
        ("こんにちは", ["こ", "ん", "に", "ち", "は"]),
        ("カタカナ", ["カ", "タ", "カ", "ナ"]),
        ("안녕 하세요", ["안", "녕", " 하", "세", "요"]),
        ("I love 北京", ["I", " love", " 北", "京"]),
        ("𠀀𠮶好", ["𠀀", "𠮶", "好"]),  # CJK Extension B lies outside the BMP
    ],
)
def test_each_cjk_character_is_its_own_token(text, tokens):
    assert tokenize(text) == tokens


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("a  b", ["a", " ", " b"]),
        ("end  ", ["end", "  "]),
        ("x\n\ny", ["x", "\n", "\n", "y"]),
        ("\tindented", ["\t", "indented"]),
        ("", []),
    ],
)
def test_whitespace_runs_give_their_last_space_to_the_word(text, tokens):
    assert tokenize(text) == tokens


# ---------------------------------------------------------------- properties over random text ---
_POOLS = [
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "0123456789",
    " " * 8 + "\t\n\r\u00a0\u2003\u3000",
    ".,;:!?'\"()[]{}<>-_/\\@#$%^&*+=~`|",
    "你好世界中文字符测试汉語",
    "ひらがなカタカナ",
    "한국어문자",
    "éüñçøßÆŒ",
    "ПриветмирΑλφα",
    "مرحبا",
    "नमस्ते",
    "😀🎉👍🏽\u200d\ufe0f",
    "\u0301\u0308",  # combining marks
    "１２３ＡＢＣ",  # fullwidth forms
    "½²³٣",  # numerics that are not ASCII digits
    "𠀀𠮶𪚥",  # CJK Extension B
    "'s 't 're 've 'm 'll 'd",
]


def _random_strings(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    strings = []
    for i in range(count):
        length = rng.randrange(0, 60)
        if i % 4 == 3:  # any code point at all, lone surrogates included
            strings.append("".join(chr(rng.randrange(0x110000)) for _ in range(length)))
        else:
            pools = rng.sample(_POOLS, rng.randrange(1, 5))
            strings.append("".join(rng.choice(rng.choice(pools)) for _ in range(length)))
    return strings


RANDOM_STRINGS = _random_strings(800, seed=20260101)
_CONTRACTION = re.compile(r"'(?:s|t|re|ve|m|ll|d)")


def test_joining_the_tokens_gives_back_the_text():
    for text in RANDOM_STRINGS:
        tokens = tokenize(text)
        assert "".join(tokens) == text, (text, tokens)
        assert all(tokens), (text, tokens)
        assert count_tokens(text) == len(tokens)


def test_rule_holds_on_random_text():
    for text in RANDOM_STRINGS:
        for token in tokenize(text):
            body = token[1:] if token.startswith(" ") and len(token) > 1 else token
            if any(_is_cjk(c) for c in body):
                assert len(body) == 1, (text, token)
            if any(_is_punctuation(c) for c in body) and not _CONTRACTION.fullmatch(token):
                assert len(body) == 1, (text, token)
            if re.fullmatch(r"[0-9]+", body):
                assert len(body) <= 3, (text, token)
            if body.strip() and not body.isspace():
                assert not any(c.isspace() for c in body), (text, token)


def test_tokenize_is_deterministic():
    text = RANDOM_STRINGS[17] + " Hello, 世界 12345"
    assert tokenize(text) == tokenize(text)


# ---------------------------------------------------------------- seeded Faker text ---
@pytest.mark.parametrize("count", [0, 1, 7, 64, 333])
def test_random_tokens_give_exactly_the_count(count):
    assert len(random_tokens(count, "en_US", 3)) == count


def test_random_tokens_are_deterministic_per_seed():
    first = random_tokens(80, "en_US", 11)
    random_tokens.cache_clear()  # a fresh computation, not the cached tuple
    again = random_tokens(80, "en_US", 11)
    assert again == first
    assert random_tokens(80, "en_US", 12) != first
    assert random_tokens(80, "de_DE", 11) != first


def test_random_tokens_are_valid_tokens():
    for locale in ("en_US", "zh_CN", "ja_JP", "ru_RU"):
        tokens = random_tokens(120, locale, 5)
        assert all(tokens)
        assert tokenize("".join(tokens)) == list(tokens), locale


def test_zh_cn_gives_cjk_characters_one_per_token():
    tokens = random_tokens(100, "zh_CN", 1)
    cjk = [t for t in tokens if _is_cjk(t.lstrip())]
    assert len(cjk) >= 80, tokens
    assert all(len(t.lstrip()) == 1 for t in cjk)
    assert not any(t.startswith(" ") for t in tokens), "Chinese text has no spaces between words"


def test_en_us_gives_spaced_latin_words():
    tokens = random_tokens(100, "en_US", 1)
    words = [t for t in tokens if t.strip().isalpha()]
    assert len(words) >= 70
    assert all(t.isascii() for t in tokens)
    assert sum(t.startswith(" ") for t in tokens) >= 60


@pytest.mark.parametrize("locale", ["en_US", "de_DE", "ru_RU", "ko_KR"])
def test_sentences_are_separated_by_a_space(locale):
    # Korean, like English, puts spaces between words and sentences; only Chinese and Japanese run on.
    text = "".join(random_tokens(300, locale, 9))
    assert "." in text
    assert not re.search(r"\.\w", text), text
