"""Prose vocabularies and shared word classes, compiled once from the ontology files."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache

from charmeta.ontology import Ontology

STATED = 3.0  # a stated age beats every word
NOUN_DEFAULT = 0.5  # "woman" -> Young Adult only when nothing else says
UNIFORM = 1.0

_WORD = r"[a-z0-9]+(?:[-'/][a-z0-9]+)*"
#: Clause separators: punctuation, a full stop (not a decimal point), a spaced dash.
_SEPARATOR = r"[,;:!?\n—–]|\.(?!\d)|\s-\s"
_TOKEN_RE = re.compile(r"\(|\)|" + _WORD)
#: Tokens and clause separators in one scan. No separator holds a token character, so
#: this finds the same tokens, cut into the same clauses, as splitting on the separators
#: first and tokenising each piece (at half the cost). A piece is a token when its
#: first character is in ``_TOKEN_START``. Written for the scan's speed (~10% less):
#: the parentheses share the punctuation's character class, and the spaced dash is
#: matched at its dash (``-`` then a look back at the space before it, a look ahead at
#: the one after), so the scan tries no branch at the many spaces. Only whitespace
#: that ``\s-\s`` would take with the dash is left, and no token starts with it; a
#: newline there becomes a separator of its own, next to the dash's: the same clauses.
_PIECE_RE = re.compile(rf"{_WORD}|[(),;:!?\n—–]|\.(?!\d)|-(?<=\s-)(?=\s)")
_TOKEN_START = frozenset("abcdefghijklmnopqrstuvwxyz0123456789()")
#: Stated-age patterns, each with the strings one of which any match contains and, where those are common
#: words, a regex any match contains that is quick to search (it starts with a literal): cheap tests before the scan.
_STATED_RES = (
    (("yr", "year"), None, re.compile(r"\b(\d{1,3})\s*(?:-|\s)?\s*(?:years?|yrs?|yr)(?:[\s-]*old)?\b")),
    (("yo", "y/o", "y.o."), None, re.compile(r"\b(\d{1,3})\s*(?:yo|y/o|y\.o\.)(?=\W|$)")),
    (("age",), None, re.compile(r"\bage[ds]?\s+(\d{1,3})\b")),
    (
        ("of",),
        re.compile(r"of\s+(?:[a-z]+\s+)?\d"),  # "of" is in most prose, a number after it is not
        re.compile(
            r"\b(?:girl|boy|child|kid|woman|man|lady|gentleman|person|teen|teenager)\s+of\s+"
            r"(?:about\s+|around\s+|roughly\s+|nearly\s+|almost\s+|maybe\s+|perhaps\s+)?(\d{1,3})\b"
        ),
    ),
)
#: The stated-age and bare-number patterns all need a ``\d`` (Unicode digits included): text without one skips them.
_DIGIT_RE = re.compile(r"\d")
#: ``has_digit``'s ASCII path: a ``bytes.translate`` table turning the digits 0-9 into 1, every other byte into 0.
_DIGIT_BYTES = bytes(1 if 48 <= b <= 57 else 0 for b in range(256))


def has_digit(text: str) -> bool:
    r"""``_DIGIT_RE.search(text) is not None`` (~0.5 us a prose entry): in ASCII text, where the only
    ``\d`` are 0-9, one C-level byte translation and one ``memchr`` (~0.1 us) say the same."""
    if text.isascii():
        return 1 in text.encode("ascii").translate(_DIGIT_BYTES)
    return _DIGIT_RE.search(text) is not None


_BARE_NUMBER_RE = re.compile(r"(?:^|,)\s*(\d{1,3})\s*(?=,|$)")
#: Where ``_BARE_NUMBER_RE`` can match: a digit after a comma or at the start (whitespace between). Both are
#: quick (a literal start, an anchored match), unlike the pattern's own scan of every position.
_BARE_NUMBER_AFTER_COMMA_RE = re.compile(r",\s*\d")
_BARE_NUMBER_AT_START_RE = re.compile(r"\s*\d")
_DECADE_RE = re.compile(
    r"\b(?:(in\s+(?:her|his|their)\s+(?:early\s+|mid\s+|mid-|late\s+)?)|(early|mid|late)[\s-]+)"
    r"(teens|twenties|thirties|forties|fifties|sixties|seventies|eighties|nineties|[2-9]0s)\b"
)
_ONE_RE = re.compile(r"\bone (?:in|with|wearing|of them|blonde|blond|brunette|redhead|has)\b")
_HE_RE = re.compile(r"\bhe(?:'s| is| was| wears| has)\b")
_SHE_RE = re.compile(r"\bshe(?:'s| is| was| wears| has)\b")
_POSSESSIVES = frozenset({"her", "his", "their", "my", "your", "our", "its"})
_DETERMINERS = frozenset({"a", "an", "the", "this", "that", "some", "another"})
_STOP = frozenset(
    {
        "a",
        "an",
        "the",
        "and",
        "with",
        "of",
        "to",
        "for",
        "in",
        "on",
        "at",
        "by",
        "is",
        "are",
        "was",
        "who",
        "that",
        "'s",
        "as",
        "while",
        "from",
        "into",
        "her",
        "his",
        "their",
        "(",
        ")",
    }
)
_HAIR_SKIP_PREV = frozenset({"facial", "pubic", "body", "chest", "arm", "leg", "nose", "ear", "armpit", "back"})
_HAIR_SKIP_NEXT = frozenset(
    {
        "clip",
        "clips",
        "ribbon",
        "ribbons",
        "bow",
        "bows",
        "band",
        "bands",
        "tie",
        "ties",
        "pin",
        "pins",
        "ornament",
        "ornaments",
        "accessory",
        "accessories",
        "dryer",
        "brush",
        "salon",
        "stylist",
        "between",
        "over",
        "covering",
        "flower",
        "flowers",
        "stick",
        "net",
    }
)
#: ``_SHOULDER_RE`` needs one of these as a whole token: a clause without one is not searched.
_SHOULDER_DETS = frozenset({"her", "his", "their", "the"})
_SHOULDER_RE = re.compile(
    r"\b(to|past|below|above|at)\s+(?:her|his|their|the)\s+(shoulders?|chin|jaw|waist|hips?|knees?|back|ears?|neck)\b"
)
_SHOULDER_LEN = {
    ("to", "shoulder"): "Medium",
    ("to", "shoulders"): "Medium",
    ("at", "shoulders"): "Medium",
    ("above", "shoulders"): "Medium",
    ("past", "shoulders"): "Long",
    ("below", "shoulders"): "Long",
    ("to", "chin"): "Short",
    ("to", "jaw"): "Short",
    ("to", "ears"): "Short",
    ("to", "neck"): "Short",
    ("to", "waist"): "Long",
    ("to", "hips"): "Long",
    ("to", "hip"): "Long",
    ("to", "knees"): "Long",
    ("to", "back"): "Long",
    ("past", "waist"): "Long",
}


def title_case(words: Iterable[str] | str) -> str:
    """Title Case that keeps hyphenated words readable (`one-piece` -> `One-Piece`)."""
    if isinstance(words, str):
        words = words.split()
    return " ".join(map(_title_word, words))


@lru_cache(maxsize=8192)
def _title_word(w: str) -> str:
    """One word of ``title_case``, memoised: garment displays repeat the same few hundred words."""
    return w[:1].upper() + w[1:] if "-" not in w else "-".join(p[:1].upper() + p[1:] for p in w.split("-"))


def substring_anchors(phrases: Iterable[str]) -> tuple[str, ...]:
    """Fewer strings, one of which every text holding one of ``phrases`` holds: a cheap necessary test.

    Every anchor is a word (or two) of the phrases it covers, so ``any(a in text for a in anchors)``
    is False whenever no phrase is in ``text``. Chosen greedily: words of five letters or
    more first (short ones are in most texts), then the one covering most phrases, then the
    longest; sorted candidates keep the choice independent of the hash seed.
    """
    anchors: list[str] = []
    uncovered = list(phrases)
    while uncovered:
        words = sorted({part for p in uncovered for part in _word_runs(p)})
        best = max(words, key=lambda w: (len(w) >= 5, sum(w in p for p in uncovered), len(w)))
        anchors.append(best)
        uncovered = [p for p in uncovered if best not in p]
    return tuple(anchors)


def _word_runs(phrase: str) -> list[str]:
    """The words of a phrase and its runs of two words (``of them``): the candidate anchors."""
    words = phrase.split(" ")
    return words + [f"{a} {b}" for a, b in zip(words, words[1:])]


class _TypoIndex(dict):
    """A symmetric-delete index (``dict``: key -> target word) and what rules a token out of it cheaply.

    ``_typo_uncached`` looks up every deletion / swap of a token (~4 us for a
    word of eight letters). Each of them is one letter shorter than the token or
    as long, and once the token has five letters or more keeps its first two
    letters or its last two (a change at position i < 2 leaves the end alone).
    So a token of a length no key has (or one more), or with neither a key's
    head nor a key's tail, has none in the index: ``_typo`` rejects most unseen
    words (names) so, before its cache.
    """

    __slots__ = ("heads", "tails", "lengths", "real_words")

    def __init__(self, entries: dict[str, str], real_words: frozenset[str] = frozenset()) -> None:
        super().__init__(entries)
        #: English words that are never typos of a target (``back`` is not ``black``).
        self.real_words = real_words
        self.heads = frozenset(k[:2] for k in entries)
        self.tails = frozenset(k[-2:] for k in entries)
        self.lengths = frozenset(map(len, entries))


@dataclass
class _Lexicon:
    """Prose vocabularies compiled from the ontology files."""

    hair_colors: dict[str, str]
    eye_colors: dict[str, str]
    clothes_colors: dict[str, str]
    shades: frozenset[str]
    multi_words: frozenset[str]
    lengths: dict[str, str]
    styles: dict[str, str]
    hair_nouns: frozenset[str]
    eye_nouns: frozenset[str]
    persons: dict[str, tuple[str | None, str | None]]
    plural_persons: frozenset[str]
    group_words: tuple[str, ...]
    numbers: dict[str, int]
    interaction: tuple[str, ...]
    absence: tuple[str, ...]
    pronouns: dict[str, str]
    nonbinary: frozenset[str]
    age_adj: dict[str, str]
    age_phrases: dict[str, str]
    decades: dict[str, int]
    age_bands: list[tuple[int, int, str]]
    phrases: dict[str, list[tuple[str, str]]]  # phrase -> [(attribute, value)]
    ethnicity: dict[str, str]
    body: dict[str, str]
    hair_color_nouns: dict[str, str]
    garment_phrases: dict[str, int]
    garment_stop: frozenset[str]
    negations: frozenset[str]
    #: Plurals made by ``_plural`` (not listed in the data): name-prone (``brave witches`` is a title).
    rule_plurals: frozenset[str] = frozenset()
    #: Words of ``garment_stop_words`` that describe fit or state (``baggy``, ``oversized``): skipped, not kept.
    garment_adjectives: frozenset[str] = frozenset()
    #: Garment heads that name a garment only with a word of kind before them (``ninja outfit``).
    qualified_only: frozenset[str] = frozenset()
    typo_targets_mod: _TypoIndex = field(default_factory=lambda: _TypoIndex({}))
    typo_targets_noun: _TypoIndex = field(default_factory=lambda: _TypoIndex({}))


def _deletes(word: str) -> set[str]:
    out = {word[:i] + word[i + 1 :] for i in range(len(word))}
    out |= {word[:i] + word[i + 1] + word[i] + word[i + 2 :] for i in range(len(word) - 1)}
    return out


def _build_typo_index(words: Iterable[str], min_len: int, real_words: frozenset[str] = frozenset()) -> _TypoIndex:
    """Symmetric-delete index: a word one edit (or one swap) away maps to its target.

    Built in sorted order, every vocabulary word first mapping to itself, so the
    result never depends on set iteration order (hash seed) and a real word is
    never "corrected" into another one (``braid`` stays ``braid``, not ``braids``).
    """
    vocab = sorted(w for w in words if len(w) >= min_len and " " not in w)
    index: dict[str, str] = {w: w for w in vocab}
    for w in vocab:
        for d in sorted(_deletes(w)):
            index.setdefault(d, w)
    return _TypoIndex(index, real_words)


_TYPO_CACHE: dict[tuple[int, str], str | None] = {}
_TYPO_CACHE_MAX = 100_000


def _typo(token: str, index: _TypoIndex) -> str | None:
    """The vocabulary word one typo away from ``token`` (memoised: prose repeats words)."""
    n = len(token)
    if n < 4 or not token.isalpha() or token in index.real_words:
        return None
    if token not in index and (
        (n >= 5 and token[:2] not in index.heads and token[-2:] not in index.tails)
        or (n not in index.lengths and n - 1 not in index.lengths)
    ):
        return None  # no deletion / swap of it is a key (``_TypoIndex``): not worth a cache entry
    key = (id(index), token)
    hit = _TYPO_CACHE.get(key, _MISS)
    if hit is not _MISS:
        return hit  # type: ignore[return-value]
    if len(_TYPO_CACHE) > _TYPO_CACHE_MAX:
        _TYPO_CACHE.clear()
    result = _TYPO_CACHE[key] = _typo_uncached(token, index)
    return result


_MISS = object()


def _typo_uncached(token: str, index: dict[str, str]) -> str | None:
    if token in index:  # a vocabulary word (maps to itself), or one edit away: "blak", "ponytial"
        target = index[token]
        return None if target == token else target
    for d in sorted(_deletes(token)):  # sorted: the same answer whatever the hash seed
        target = index.get(d)
        if target and target != token and abs(len(target) - len(token)) <= 1:
            return target
    return None


def build_lexicon(ont: Ontology) -> _Lexicon:
    p = ont.prose
    colors = ont.colors
    phrases: dict[str, list[tuple[str, str]]] = {}
    for key in ("Accessories", "Features", "Scars", "Tattoos", "Facial Expression", "Skin Tone"):
        for phrase, value in ont.prose_words.get(key, {}).items():
            phrases.setdefault(phrase, []).append((key, value))
    lengths = dict(ont.prose_words.get("Hair Length", {}))
    styles = dict(ont.prose_words.get("Hair Style", {}))
    garment_phrases: dict[str, int] = {}
    for g in ont.garments:
        for tag in g.tags + g.forms:
            garment_phrases.setdefault(tag, g.index)
    for alias, canonical in ont.aliases.items():
        if canonical in garment_phrases:
            garment_phrases.setdefault(alias, garment_phrases[canonical])
    heads = ont.dress["expand_heads"]
    head_owner = {}
    for head in heads:
        for g in ont.garments:
            if head in g.tags or head in g.forms:
                head_owner[head] = g.index
                break
    extra_heads = {
        "sundress": "sundress",
        "gown": "gown",
        "tux": "tuxedo",
        "dresses": "dress",
        "raincoat": "raincoat",
        "overalls": "overalls",
        "jeans": "jeans",
        "trousers": "trousers",
        "jersey": "jersey",
        "sweatshirt": "sweatshirt",
        "hoodie": "hoodie",
        "cardigan": "cardigan",
        "apron": None,
        "aprons": None,
        "outfit": "costume",
        "outfits": "costume",
        "uniforms": "uniform",
        "top": "top",
        "tee": "shirt",
        "blazer": "blazer",
        "vest": "vest",
        "skirts": "skirt",
        "kimonos": "kimono",
    }
    for word, target in extra_heads.items():
        if target is None:
            continue
        idx = garment_phrases.get(target, head_owner.get(target))
        if idx is not None:
            garment_phrases.setdefault(word, idx)
    for head, idx in head_owner.items():
        garment_phrases.setdefault(head, idx)
    mod_words = (
        set(colors["hair"])
        | set(colors["eyes"])
        | set(lengths)
        | set(styles)
        | {"ponytail", "twintails", "braids", "dreadlocks", "pigtails"}
    )
    lex = _Lexicon(
        hair_colors=colors["hair"],
        eye_colors=colors["eyes"],
        clothes_colors=colors["clothes"],
        shades=frozenset(colors["shades"]),
        multi_words=frozenset(colors["multicolor_words"]),
        lengths=lengths,
        styles=styles,
        hair_nouns=frozenset(p["hair_nouns"]),
        eye_nouns=frozenset(p["eye_nouns"]),
        persons={k: (v[0], v[1]) for k, v in p["person_nouns"].items()},
        plural_persons=frozenset(p["plural_person_nouns"]),
        group_words=tuple(p["group_words"]),
        numbers=p["number_words"],
        interaction=tuple(p["interaction_verbs"]),
        absence=tuple(p["absence_cues"]),
        pronouns=p["pronouns"],
        nonbinary=frozenset(p["nonbinary_words"]),
        age_adj={k: v for k, v in p["age_adjectives"].items() if v},
        age_phrases=p["age_phrases"],
        decades=p["decades"],
        age_bands=[tuple(b) for b in ont.rules["Age"].extra["stated_age_bands"]],  # type: ignore[misc]
        phrases=phrases,
        ethnicity=dict(ont.prose_words.get("Ethnicity", {})),
        body=dict(ont.prose_words.get("Body Type", {})),
        hair_color_nouns=p["hair_color_nouns"],
        garment_phrases=garment_phrases,
        garment_stop=frozenset(p["garment_stop_words"]),
        negations=frozenset(p["negations"]),
        qualified_only=frozenset({"outfit", "outfits", "habit"}),
    )
    _add_person_groups(ont, lex)
    _add_plurals(lex, frozenset(p.get("plural_blocklist", ())))
    lex.garment_adjectives = lex.garment_stop - _STOP - _GARMENT_FUNCTION_WORDS
    # A word of the tag vocabulary (``back``, ``slicked``) is a real word, never read as a typo
    # of a colour or style: only words that are in no tag get corrected (``blak``, ``ponytial``).
    real_words = frozenset(w for tag in ont.known_vocab for w in tag.split(" ") if w.isalpha())
    lex.typo_targets_mod = _build_typo_index(mod_words, 5, real_words)
    lex.typo_targets_noun = _build_typo_index(
        {"ponytail", "twintails", "pigtails", "dreadlocks", "braids"}, 6, real_words
    )
    return lex


#: Words of ``garment_stop_words`` that end the search for a garment's colour (not fit or state words).
_GARMENT_FUNCTION_WORDS = frozenset(
    {"or", "wearing", "wears", "dressed", "its", "my", "your", "over", "under", "one", "both"}
)


def _plural(word: str) -> str:
    """The regular English plural of a person noun (``clerk`` -> ``clerks``, ``fisherman`` -> ``fishermen``).

    Hand rules, not ``inflect``: that package takes ~5 s to import here and gets ``thief``
    wrong too; irregular plurals of the lexicon (``children``, ``women``) are listed in the data."""
    if word.endswith("man"):
        return word[:-3] + "men"
    if word.endswith(("s", "sh", "ch", "x", "z")):
        return word + "es"
    if word.endswith("y") and len(word) > 1 and word[-2] not in "aeiou":
        return word[:-1] + "ies"
    return word + "s"


def _add_plurals(lex: _Lexicon, blocked: frozenset[str]) -> None:
    """Every singular person noun's plural is a plural person noun (``two clerks arguing``), except
    those of ``blocked``, whose plurals are mostly objects (``paper fans``, ``action figures``)."""
    plurals = set(lex.plural_persons)
    added: set[str] = set()
    for word, info in list(lex.persons.items()):
        if word in plurals or word in blocked or not word.isalpha():
            continue
        plural = _plural(word)
        if plural not in lex.persons:
            lex.persons[plural] = info
            plurals.add(plural)
            added.add(plural)
    lex.plural_persons = frozenset(plurals)
    lex.rule_plurals = frozenset(added)


def _add_person_groups(ont: Ontology, lex: _Lexicon) -> None:
    """Occupations from the tag groups of ``person_noun_groups`` (``tag_tree.json``: barber, pilot...)
    as person nouns of no gender or age: a second one in the scene is a second character."""
    groups = ont.prose.get("person_noun_groups", ())
    if not groups:
        return
    import json
    from importlib import resources

    tree = json.loads(resources.files("charmeta").joinpath("data/reference/tag_tree.json").read_text("utf-8"))
    for group in groups:
        for raw in tree.get(group, ()):
            word = raw.lower()
            if "_" in word or "(" in word or not word.isalpha() or word in lex.persons:
                continue  # one-word occupations only ("flight_attendant" is read as a garment's kind)
            if word in lex.garment_phrases or word in ("police", "prostitution", "guard", "officer"):
                continue
            lex.persons[word] = (None, None)


@dataclass(slots=True)
class _Clause:
    tokens: list[str]
    other: bool = False  # about a mentioned, non-depicted person


@dataclass(slots=True)
class _Person:
    noun: str
    clause: int
    pos: int
    relation: bool  # "her brother": a relative of the character
    absent: bool  # "waiting for his brother": not in the picture
    plural: bool
    number: int
    present: bool = False  # a relative who is in the picture too ("and her daughter", "her sister standing")


#: Words ending in -man that are not people.
_NOT_PERSONS = frozenset(
    {
        "german",
        "germans",
        "roman",
        "romans",
        "shaman",
        "talisman",
        "caiman",
        "ottoman",
        "walkman",
        "layman",
        "yeoman",
        "doberman",
        "superman",
        "batman",
        "pokeman",
        "ramen",
        "omen",
        "semen",
        "amen",
        "stamen",
        "specimen",
        "abdomen",
        "regimen",
        "acumen",
        "women",
        "woman",
    }
)
