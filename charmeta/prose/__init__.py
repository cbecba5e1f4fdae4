"""Read prose descriptions (and prompt phrases) into ``Evidence``.

Rules (contract section 3), each implemented by attachment rather than by
bag-of-words matching, so the traps do not fire:

* color / length / style adjectives count only for the hair / eye / garment
  noun they modify (``gold earrings`` says nothing about eyes, ``cool jacket``
  nothing about mood);
* age, gender, ethnicity and body words count only for the character: the
  first person noun that is not a mentioned relative (``her brother``) or
  someone absent (``waiting for his brother``); what is said about a mentioned
  person (``(the one with the red hair)``) is not the character's;
* a second depicted person (``two girls``, ``a mother and her daughter``,
  ``a samurai dueling a ninja``, ``both``) makes the entry multi-character;
* negation (``no glasses``, ``without a hat``) removes the item;
* stated ages (``45-year-old``, ``in her forties``, ``Woman, 72``) map to
  bands; pronouns decide gender only when no gender noun does.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from charmeta.evidence import Evidence
from charmeta.ontology import EXPLICIT, Ontology
from charmeta.prose.appearance import _HALF_UP, _NUDE_WORDS, _STREAK_WORDS, AppearanceReader, phrase_spans
from charmeta.prose.lexicon import (
    _PIECE_RE,
    _TOKEN_RE,
    _TOKEN_START,
    _Clause,
    _Person,
    build_lexicon,
    substring_anchors,
    title_case,
)
from charmeta.prose.people import PeopleReader

__all__ = ["ProseReader", "build_lexicon", "title_case"]

#: A prompt weight inside an item (``:1.2``) and the brackets around weighted words: dropped from item clauses.
_INNER_WEIGHT_RE = re.compile(r":\s*-?\d+(?:\.\d+)?")
_BRACKETS = str.maketrans({c: " " for c in "()[]{}"})
_PROMPT_SYNTAX = frozenset("()[]{}:")
#: Person nouns of no gender or age that never end a name (``name_prone_occupations`` leaves them alone).
_PLAIN_PERSONS = frozenset(
    {
        "person",
        "people",
        "someone",
        "figure",
        "character",
        "individual",
        "adult",
        "persons",
        "blonde",
        "brunette",
        "redhead",
    }
)
#: Tokens left out of a clause read as a tag: ``(dark skin)`` -> ``dark skin``.
_PARENS = ("(", ")")


class ProseReader(PeopleReader, AppearanceReader):
    """Turns prose / phrase text into observations on an ``Evidence``."""

    def __init__(self, ontology: Ontology) -> None:
        self.ont = ontology
        self.lex = lex = build_lexicon(ontology)
        self.name_prone = (
            frozenset(ontology.prose.get("name_prone_nouns", ()))
            | (
                frozenset(w for w, info in lex.persons.items() if info == (None, None) and w not in _PLAIN_PERSONS)
                if ontology.prose.get("name_prone_occupations")
                else frozenset()
            )
            | lex.rule_plurals
        )
        self.color_ethnicity: dict[str, str] = ontology.prose.get("color_ethnicity", {})
        self.color_ethnicity_nouns = frozenset(ontology.prose.get("color_ethnicity_nouns", ()))
        # First words of multi-word phrases: most tokens start none, so n-grams are only built after one.
        self._garment_first = frozenset(p.split(" ", 1)[0] for p in lex.garment_phrases)
        self._phrase_first = frozenset(p.split(" ", 1)[0] for p in lex.phrases)
        self._garment_span = phrase_spans(lex.garment_phrases, 3)
        self._phrase_span = phrase_spans(lex.phrases, 4)
        # Words that make ``_read_hair_styles_after`` do anything: styles, first words of two-word ones, "half".
        self._hair_forward_words = (
            frozenset(lex.styles) | frozenset(s.split(" ", 1)[0] for s in lex.styles) | frozenset(_HALF_UP)
        )
        # Garment phrase -> (tag, garment, implied ages): bounded by the lexicon (``_garment_tag``).
        self._garment_tags: dict[tuple[str, int], tuple[str, int, tuple[str, ...]]] = {}
        self.known_adjectives = frozenset(ontology.prose.get("known_adjectives", ()))
        # Word sets for C-level ``isdisjoint`` checks: a reader skips a clause (or entry) holding none of its words.
        self._person_words = frozenset(lex.persons) | lex.plural_persons
        # The first two words of every two- / three-word character name (``_blank_names``), those a
        # token can be: a name word no token is (``(kancolle)``: parentheses are tokens of their own)
        # never matches, and leaving such pairs out keeps common words out of the first / second word sets.
        self._name_pairs = frozenset(
            pair
            for pair in (name[:2] for name in ontology.character_name_words)
            if _is_token(pair[0]) and _is_token(pair[1])
        )
        self._name_first = frozenset(a for a, _ in self._name_pairs)
        self._name_second = frozenset(b for _, b in self._name_pairs)
        self._eye_words = lex.eye_nouns
        self._body_words = frozenset(lex.body)
        # Any word that sets off the eye, garment, phrase or body reader: most clauses hold none.
        self._appearance_words = (
            self._eye_words | self._garment_first | _NUDE_WORDS | self._phrase_first | self._body_words | _STREAK_WORDS
        )
        self._age_phrase_anchors = substring_anchors(lex.age_phrases)
        self._age_time_words = frozenset(ontology.prose.get("age_time_words", ()))
        self._crowd_nouns = frozenset(ontology.prose.get("crowd_nouns", ()))
        self._crowd_verbs = frozenset(ontology.prose.get("crowd_verbs", ()))
        self._descent_words = frozenset(ontology.prose.get("descent_words", ()))
        self._depiction_cues = tuple(ontology.prose.get("depiction_cues", ()))
        self._not_person_before = frozenset(ontology.prose.get("not_person_before", ()))
        self._color_similes: dict[str, str] = ontology.prose.get("hair_color_similes", {})
        self._head_lengths = {
            t: h.value[0] for t in ("bald head", "shaved head") for h in ontology.lookup(t) if h.key == "Hair Length"
        }
        self._pronoun_words = frozenset(lex.pronouns)
        self._group_single = frozenset(g for g in lex.group_words if " " not in g)
        self._group_multi = tuple(f" {g} " for g in lex.group_words if " " in g)
        self._group_multi_anchors = substring_anchors(g for g in lex.group_words if " " in g)
        # Per-word memos of the hair readers (prose repeats its words; typo look-ups are the slow part).
        self._hair_noun_of: dict[str, str] = {}
        self._not_hair_nouns: set[str] = set()
        self._hair_mods: dict[str, tuple[tuple[str, str], ...] | None] = {}

    # -- entry points ------------------------------------------------------------------

    def read(
        self,
        text: str,
        ev: Evidence,
        clauses: list[str] | None = None,
        tag_reader=None,
        tag_shapes: frozenset[tuple[str, int]] | None = None,
    ) -> None:
        """Read free text (``clauses`` None) or the unknown items of a tag list.

        ``tag_reader(words, ev)`` may read a clause of free text as one tag (its
        words: the tokens without parentheses; not to be changed) and say so.
        ``tag_shapes``, when given, holds ``(first word, number of words)`` of every
        clause ``tag_reader`` may read: other clauses are not offered to it (most
        are not; a set test here saves a call per clause).
        """
        low = _normalise(text)
        if clauses is None:
            parsed = self._clauses(low)
        else:
            parsed = _item_clauses(clauses)
        self._blank_names(parsed)
        persons = self._find_persons(parsed, low)
        has_other = self._mark_other_context(parsed, persons)
        subject = _subject(persons, self._informative) if persons else None
        self._count_people(low, parsed, persons, subject, ev)
        parens = "(" in low or ")" in low  # without them in the text, no clause holds a parenthesis token
        not_hair = self._not_hair_nouns
        appearance_words = self._appearance_words
        for ci, clause in enumerate(parsed):
            if clause.other:
                continue
            toks = clause.tokens
            if tag_reader is not None:
                words = [t for t in toks if t not in _PARENS] if parens and ("(" in toks or ")" in toks) else toks
                if (tag_shapes is None or not words or (words[0], len(words)) in tag_shapes) and tag_reader(words, ev):
                    continue
            # The two tests ``_read_appearance`` starts with, without the call: most clauses set off no reader.
            if not_hair.issuperset(toks) and appearance_words.isdisjoint(toks):
                continue
            self._read_appearance(toks, ev, subject, ci)
        self._read_subject(low, parsed, persons, subject, ev, has_other)

    def _informative(self, noun: str) -> bool:
        """Whether a person noun says the character's gender or age (``girl``, ``grandpa``)."""
        info = self.person_info(noun)
        return info is not None and info != (None, None)

    def _read_appearance(self, toks: list[str], ev: Evidence, subject: _Person | None, ci: int) -> None:
        """Hair, eyes, garments, listed phrases and build in one clause of the character's.

        Each reader runs only on clauses holding one of its words (C-level set tests):
        most clauses set off one reader or none.
        """
        if not self._not_hair_nouns.issuperset(toks):
            self._read_hair(toks, ev)
        if not _STREAK_WORDS.isdisjoint(toks) and (len(toks) <= 3 or not self.lex.hair_nouns.isdisjoint(toks)):
            # "blonde highlights in brown hair", a prompt item "red streaks": a second hair colour
            for k in range(1, len(toks)):
                if toks[k] in _STREAK_WORDS and toks[k - 1] in self.lex.hair_colors:
                    ev.add_multi("Hair Color", f"{toks[k - 1]} {toks[k]}")
        if "head" in toks:  # "a bald head", "a shaved head": hair-length tags without the word hair
            for a, b in zip(toks, toks[1:]):
                if b == "head" and f"{a} head" in self._head_lengths:
                    ev.add("Hair Length", self._head_lengths[f"{a} head"], EXPLICIT, f"{a} head")
        if self._appearance_words.isdisjoint(toks):
            return
        if not self._eye_words.isdisjoint(toks):
            self._read_eyes(toks, ev)
        if not (self._garment_first.isdisjoint(toks) and _NUDE_WORDS.isdisjoint(toks)):
            self._read_garments(toks, ev)
        if not self._phrase_first.isdisjoint(toks):
            self._read_phrases(toks, ev)
        if not self._body_words.isdisjoint(toks):
            self._read_body(toks, ev, subject, ci)

    # -- tokenising --------------------------------------------------------------------

    def _clauses(self, low: str) -> list[_Clause]:
        """The clauses of free text with their tokens, empty ones dropped (one ``_PIECE_RE`` scan)."""
        # keep parentheses as their own clauses so "(the one with the red hair)" stays together
        text = low.replace("(", ", ( ").replace(")", " ) ,")
        possessive = "'s" in text
        out: list[_Clause] = []
        tokens: list[str] = []
        for piece in _PIECE_RE.findall(text):
            if piece[0] in _TOKEN_START:
                tokens.append(piece)
            elif tokens:  # a separator ends the clause
                out.append(_Clause(_split_possessives(tokens) if possessive else tokens))
                tokens = []
        if tokens:
            out.append(_Clause(_split_possessives(tokens) if possessive else tokens))
        return out


def _item_clauses(items: list[str]) -> list[_Clause]:
    """The items of a tag list as clauses, one each, items without tokens left out.

    Weights and brackets inside an item are prompt syntax, not words: ``(golden) wavy hair``
    reads as ``golden wavy hair``, ``(pink:1.1) hair`` as ``pink hair``.
    """
    find = _TOKEN_RE.findall
    out: list[_Clause] = []
    for item in map(_normalise, items):
        if not _PROMPT_SYNTAX.isdisjoint(item):
            item = _INNER_WEIGHT_RE.sub("", item).translate(_BRACKETS)
        tokens = find(item)
        if tokens:
            out.append(_Clause(_split_possessives(tokens) if "'s" in item else tokens))
    return out


def _is_token(word: str) -> bool:
    """Whether ``word`` can be a clause token: one ``_TOKEN_RE`` match, or the ``'s`` of ``_split_possessives``."""
    return word == "'s" or _TOKEN_RE.fullmatch(word) is not None


def _split_possessives(tokens: list[str]) -> list[str]:
    """``girl's`` -> ``girl``, ``'s``."""
    out: list[str] = []
    for t in tokens:
        if t.endswith("'s") and len(t) > 2:
            out += [t[:-2], "'s"]
        else:
            out.append(t)
    return out


def _subject(persons: list[_Person], informative: Callable[[str], bool]) -> _Person | None:
    """The character: the first person noun neither a relative nor absent, a singular one first.

    A role noun that says neither gender nor age (``a samurai``, ``from vampire``) gives way to a
    later singular one that does (``..., a girl with ...``): in one character's entry both name
    the same person, and the later one says more.
    """
    candidates = [p for p in persons if not p.relation and not p.absent and not p.plural]
    if candidates:
        first = candidates[0]
        if not informative(first.noun):
            return next((p for p in candidates[1:] if informative(p.noun)), first)
        return first
    return next((p for p in persons if not p.relation and not p.absent), None)


def _normalise(text: str) -> str:
    """Lower case, ``w/`` spelled out, curly apostrophes straightened."""
    return text.lower().replace("w/", "with ").replace("’", "'")
