"""The cheap paths of ``parsing`` and ``ontology`` decide exactly as the plain definitions they replace."""

from __future__ import annotations

import random

import pytest

from charmeta.ontology import get_ontology
from charmeta.parsing import _PROSE_HINT_RE, _SPLIT_RE, _hint_count, _item_shape, looks_like_prose


def _reference_looks_like_prose(text: str) -> bool:
    """The heuristic as first written: regex split into items, regex findall for hints."""
    items = [t for t in _SPLIT_RE.split(text) if t]
    if not items:
        return False
    long_items = sum(1 for t in items if t.count(" ") >= 3)
    hints = len(_PROSE_HINT_RE.findall(text))
    return hints >= 2 and (long_items * 3 >= len(items) or hints >= len(items))


_CASES = [
    "",
    " ",
    "   ",
    ",",
    " , ,\n",
    "a",
    "a the",
    "A girl with long hair, smiling, in a park",
    "1girl, solo, long hair",
    "   a b c d, e",
    "a, b c d e  ",
    "x \n , y",
    "a,\n\n b",
    "the\tof, in\r\n and",
    "ſhe wıth İn her",
    "ın the park, wearing a hat",
    "café éthe thé the",
    "the_ _the the1 a-the",
    "’the’ —with—",
    "\x1cthe\x1d of \x1e, a\x1f",
    "THE WITH HIS",
    "portrait of okumura yukio, elbow gloves, soft light, by jayi",
    "\u3000the\u3000of\u3000,\xa0a\xa0b\xa0c\xa0d",
]
_WORDS = [
    "a",
    "an",
    "the",
    "with",
    "her",
    "She",
    "IS",
    "in",
    "ın",
    "ſhe",
    "İs",
    "ONE",
    "girl",
    "1girl",
    "the_x",
    "éthe",
    "tHe",
    "while",
    "wearing",
    "x",
]
_CHARS = list(" ,\n\t\r\x0b\x1c\xa0\u2003.;:()-_’é0ß")


def _fuzz(seed: int, n: int) -> list[str]:
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        parts = [rnd.choice(_WORDS) if rnd.random() < 0.6 else rnd.choice(_CHARS) for _ in range(rnd.randint(0, 12))]
        out.append(rnd.choice([" ", "", ", ", "\n", " , "]).join(parts))
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_looks_like_prose_matches_its_definition(seed: int) -> None:
    for text in _CASES + _fuzz(seed, 5000):
        assert _hint_count(text) == len(_PROSE_HINT_RE.findall(text)), text
        items = [t for t in _SPLIT_RE.split(text) if t]
        assert _item_shape(text) == (len(items), sum(1 for t in items if t.count(" ") >= 3)), text
        assert looks_like_prose(text) == _reference_looks_like_prose(text), text


def test_is_meta_matches_its_definition() -> None:
    ont = get_ontology()
    tags = [
        "2011",
        "year 1999",
        "1999 ",
        "highly detailed",
        "commentary request",
        "(medium)",
        "translated",
        "",
        "long hair",
        "soft light",
        "by artist",
        "username",
        "detailed background",
        "2011 year",
    ]
    for tag in tags:
        expected = bool(ont.year_re.match(tag)) or any(s in tag for s in ont.meta_substrings)
        assert ont.is_meta(tag) == expected, tag


_AGE_WORDS = ["twenty", "Twenty", "twenty-one", "ninety nine", "eleven", "one", "nine", "fifteen5", "_ten", "tenth"]
_AGE_WORDS += ["years", "year", "yrs", "yr", "yo", "y.o.", "y/o", "age", "aged", "AGE", "Years", "young", "yonder"]


@pytest.mark.parametrize("seed", [0, 1])
def test_age_prefilters_never_hide_a_match(seed: int) -> None:
    """The substring / letter-run tests before the age regexes of the prose reader and the safety
    scanner answer no only where the regex finds nothing (they may answer yes more often)."""
    from charmeta.prose.people import _NUM_WORD_RE, _may_hold_number_word
    from charmeta.safety import _AGE_ANCHOR_RE, _may_state_age

    rnd = random.Random(seed)
    texts = _CASES + _fuzz(seed, 3000)
    texts += [" ".join(rnd.choice(_AGE_WORDS + _WORDS) for _ in range(rnd.randint(1, 6))) for _ in range(3000)]
    texts += [f"{a}{c}{b}" for a in _AGE_WORDS for b in _AGE_WORDS for c in ("-", " ", "", "é", "_", "5")]
    matched = 0
    for text in texts:
        for t in (text, text.lower()):
            if _NUM_WORD_RE.search(t) is not None:
                matched += 1
                assert _may_hold_number_word(t), t
            assert _may_state_age(t) == (_AGE_ANCHOR_RE.search(t) is not None), t
    assert matched > 100  # the regexes did match: the test saw both answers
