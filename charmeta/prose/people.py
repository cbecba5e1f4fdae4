"""Who is in the picture: the character (subject), mentioned relatives, extra people, and
what is said about the character as a person (age, gender, ethnicity, body).
"""

from __future__ import annotations

import re
from functools import lru_cache
from itertools import chain
from operator import attrgetter

from charmeta.evidence import Evidence
from charmeta.ontology import EXPLICIT, IMPLIED, Ontology
from charmeta.prose.lexicon import (
    _BARE_NUMBER_AFTER_COMMA_RE,
    _BARE_NUMBER_AT_START_RE,
    _BARE_NUMBER_RE,
    _DECADE_RE,
    _DETERMINERS,
    _HE_RE,
    _NOT_PERSONS,
    _ONE_RE,
    _POSSESSIVES,
    _SHE_RE,
    _STATED_RES,
    _STOP,
    NOUN_DEFAULT,
    STATED,
    _Clause,
    _Lexicon,
    _Person,
    has_digit,
)

_TOKENS = attrgetter("tokens")
#: Absence cues that are only weak evidence: an interaction in the same clause wins over them
#: (``her brother has red hair`` is a mention; ``her sister is hugging her`` is a second person).
_WEAK_ABSENCE = frozenset({"has", "'s", "is"})
#: -ing words that do not link two people in one picture (``a girl wearing a nurse outfit``).
_NOT_LINKING = frozenset({"wearing", "looking", "dressed", "holding", "thinking", "dreaming", "remembering", "missing"})
#: Words after which a person noun names a role or likeness, not a second person (``dressed as a nurse``).
_ROLE_WORDS = frozenset({"as", "like"})
#: How far before a relative an interaction word may stand (``mending nets with his grandson``).
_NEAR = 6


def _ing_verb(word: str) -> bool:
    """An -ing word that may link two people (``lifting``, ``braiding``), not a noun like ``ring`` / ``king``."""
    return len(word) > 5 and word.endswith("ing") and word not in _NOT_LINKING


#: Person nouns by suffix (``fisherman``, ``policewomen``): "woman" / "women" end so too.
_MAN_SUFFIXES = ("man", "men")


#: Ages in words: ``fifteen-year-old``, ``twenty five years old``, ``aged seven``, ``age eighty``.
#: Years into a decade that ``early`` / ``mid`` / ``late`` mean (``in his late sixties`` -> 68).
_DECADE_PART = {"early": 2, "mid": 5, "late": 8}
_WORDED_AGE_RE = re.compile(r"\b((?:[a-z]+[- ])?[a-z]+)[\s-]+years?[\s-]+old\b|\bage[ds]?\s+((?:[a-z]+[- ])?[a-z]+)\b")
#: English number words up to ninety-nine, the only ones a stated age is written in.
_TENS = "twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety"
_NUM_WORD = (
    rf"(?:(?:{_TENS})(?:[- ](?:one|two|three|four|five|six|seven|eight|nine))?"
    r"|ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|seventeen|eighteen|nineteen"
    r"|one|two|three|four|five|six|seven|eight|nine)"
)
_APPROX = r"(?:about|around|roughly|nearly|almost|maybe|perhaps|probably|approximately)\s+"
#: Ages in words without "years": ``a girl of eleven``, ``a boy, about sixteen,``, ``forty-something``.
_WORD_AGE_RES = (
    re.compile(
        rf"\b(?:girl|boy|child|kid|woman|man|lady|gentleman|person|teen|teenager|guy)\s+of\s+(?:{_APPROX})?({_NUM_WORD})\b"
    ),
    re.compile(rf"(?:^|,)\s*(?:{_APPROX})?({_NUM_WORD})\s*(?=,|\.|;|$)"),
)
#: ``forty-something``, ``thirtyish``: the middle of the decade.
_DECADE_ISH_RE = re.compile(rf"\b({_TENS})[- ]?(?:something|ish)\b")
_NUM_WORD_RE = re.compile(rf"\b{_NUM_WORD}\b")
#: Every word a ``_NUM_WORD_RE`` match starts with, as bytes, and a ``bytes.translate`` table that
#: keeps ASCII letters and blanks everything else: ``_may_hold_number_word``'s set test.
_NUM_WORD_BYTES = frozenset(
    w.encode("ascii")
    for w in (
        _TENS.split("|")
        + "ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split()
        + "one two three four five six seven eight nine".split()
    )
)
_LETTER_BYTES = bytes(b if 65 <= b <= 90 or 97 <= b <= 122 else 32 for b in range(256))


def _may_hold_number_word(text: str) -> bool:
    """Whether ``_NUM_WORD_RE`` may match ``text``: a match is a whole run of letters that is a number
    word (``\b`` on its left, ``\b`` or ``-`` / space on its right), so in ASCII text a set test on
    the letter runs says no exactly when the regex finds nothing (~1 us instead of ~3 us a prose
    entry; most prose states no age). Other texts: the regex."""
    if text.isascii():
        return not _NUM_WORD_BYTES.isdisjoint(text.encode("ascii").translate(_LETTER_BYTES).split())
    return _NUM_WORD_RE.search(text) is not None


def _worded_ages(text: str) -> list[tuple[int, str]]:
    """Stated ages written in words, read by ``number_parser`` (a maintained English number-word
    parser: ``twenty-five`` -> 25, ``eighty`` -> 80), imported here only: tag captions never get here.
    ``a fifteen`` -> 15: the parser reads the longest number the words make, so a leading article
    or adjective (``a``, ``nearly``) is tried away first."""
    out: list[tuple[int, str]] = []
    for rx in _WORD_AGE_RES:
        for m in rx.finditer(text):
            value = _number(m.group(1).replace("-", " "))
            if value is not None:
                out.append((value, m.group(0).strip(" ,")))
    for m in _DECADE_ISH_RE.finditer(text):
        value = _number(m.group(1))
        if value is not None:
            out.append((value + 5, m.group(0)))
    for m in _WORDED_AGE_RE.finditer(text):
        before = m.group(1) is not None  # "<number> years old": the number ends there; "aged <number>": starts
        words = (m.group(1) or m.group(2) or "").replace("-", " ").split()
        spans = [words[k:] for k in range(len(words))] if before else [words[:k] for k in range(len(words), 0, -1)]
        for span in spans:
            value = _number(" ".join(span))
            if value is not None:
                out.append((value, m.group(0)))
                break
    return out


@lru_cache(maxsize=4096)
def _number(words: str) -> int | None:
    """``number_parser.parse_number`` in English (~0.4 ms a call; memoised: ages repeat)."""
    from number_parser import parse_number

    value = parse_number(words, language="en")
    return value if isinstance(value, int) else None


def _has_man_suffix(tokens: list[str]) -> bool:
    """Whether a token may be a -man / -woman person noun (one C-level substring test on the joined clause)."""
    joined = " ".join(tokens)
    return "man" in joined or "men" in joined


class PeopleReader:
    """Mixin of ``ProseReader``: people and the subject's own words."""

    lex: _Lexicon
    ont: Ontology
    _person_words: frozenset[str]
    _name_pairs: frozenset[tuple[str, str]]
    _name_first: frozenset[str]
    _name_second: frozenset[str]
    _body_words: frozenset[str]
    _pronoun_words: frozenset[str]
    _group_single: frozenset[str]
    _group_multi: tuple[str, ...]
    _group_multi_anchors: tuple[str, ...]
    _age_phrase_anchors: tuple[str, ...]
    _age_time_words: frozenset[str]
    _crowd_nouns: frozenset[str]
    _crowd_verbs: frozenset[str]
    _descent_words: frozenset[str]
    _depiction_cues: tuple[str, ...]
    _not_person_before: frozenset[str]

    def _blank_names(self, clauses: list[_Clause]) -> None:
        """Character names are never evidence (``kaitou kid`` is not a child).

        Tokens hold no spaces, so a run of them is a name exactly when their tuple
        is one of ``Ontology.character_name_words`` (no string joined per test);
        every such run starts with one of ``_name_pairs``.
        """
        names = self.ont.character_name_words
        first_words = self._name_first
        second_words = self._name_second
        name_pairs = self._name_pairs
        for c in clauses:
            toks = c.tokens
            # A first and a second word of some name (C-level set tests) before any pair is built.
            if first_words.isdisjoint(toks) or second_words.isdisjoint(toks):
                continue
            # Common words start some name ("a", "girl"): the pairs of words then rule most clauses out.
            if name_pairs.isdisjoint(zip(toks, toks[1:])):
                continue
            # Only positions starting a name's first two words can start one ("_", the blank, starts none).
            n = len(toks)
            starts = [i for i in range(n - 1) if (toks[i], toks[i + 1]) in name_pairs]
            for i in starts:  # every three-word name first, then two-word ones
                if i + 3 <= n and (toks[i], toks[i + 1], toks[i + 2]) in names:
                    toks[i : i + 3] = ("_", "_", "_")
            for i in starts:
                if (toks[i], toks[i + 1]) in names:
                    toks[i : i + 2] = ("_", "_")

    # -- people -----------------------------------------------------------------------

    def _find_persons(self, clauses: list[_Clause], low: str) -> list[_Person]:
        lex = self.lex
        person_words = self._person_words
        # Tokens are substrings of ``low``: without "man" / "men" in it no token is a -man noun.
        suffixed = "man" in low or "men" in low
        found: list[_Person] = []
        for ci, c in enumerate(clauses):
            toks = c.tokens
            man = suffixed and _has_man_suffix(toks)  # False: no token of the clause ends in -man / -men
            if not man and person_words.isdisjoint(toks):
                continue
            for i, t in enumerate(toks):
                if t not in person_words and not (
                    man and t.endswith(_MAN_SUFFIXES) and self.person_info(t) is not None
                ):
                    continue
                if t in ("blonde", "brunette") and i + 1 < len(toks) and toks[i + 1] in lex.hair_nouns:
                    continue
                if i + 1 < len(toks) and toks[i + 1] in lex.persons and t not in lex.plural_persons:
                    continue  # "school girl", "ninja warrior": the head is the last noun
                if i + 1 < len(toks) and (toks[i + 1] in self._not_person_before or toks[i + 1] in lex.garment_phrases):
                    continue  # "demon tail", "judge uniform", "angel wings": a modifier, not a person
                if i > 0 and toks[i - 1] in self._age_time_words and t in lex.plural_persons:
                    continue  # "in his early teens": an age, not people
                if t in ("couple", "pair", "group") and i + 1 < len(toks) and toks[i + 1] == "of":
                    continue  # "a couple of hours": a quantity; "a couple of friends" counts by "friends"
                if t in self.name_prone and i > 0 and not self._person_context(toks[max(0, i - 2) : i]):
                    continue  # "kaitou kid", "iron man": the end of a name, not a person noun
                prev = toks[max(0, i - 3) : i]
                relation = not _POSSESSIVES.isdisjoint(prev[-2:]) and not (
                    i >= 1 and toks[i - 1] in ("her", "his") and t in ("hair",)
                )
                absent = present = False
                if relation:
                    absent, present = self._relative_presence(toks, i, prev)
                elif (
                    found
                    and self._depiction_cues
                    and any(
                        " ".join(toks[max(0, i - 4) : i]).endswith(cue)
                        or f"{cue} " in " ".join(toks[max(0, i - 4) : i]) + " "
                        for cue in self._depiction_cues
                    )
                ):
                    absent = True  # "a painting of a king", "a photo of her late grandmother": not in the scene
                number = 1
                for w in prev:
                    if w in lex.numbers:
                        number = max(number, lex.numbers[w])
                plural = t in lex.plural_persons
                if t == "people" and number < 2:
                    continue  # "a crowd of people" is background; "two people" are characters
                found.append(
                    _Person(t, ci, i, relation, absent, plural, number if (plural or number > 1) else 1, present)
                )
        return found

    def _relative_presence(self, toks: list[str], i: int, prev: list[str]) -> tuple[bool, bool]:
        """(absent, present) of the relative at ``toks[i]``: ``waiting for his brother`` is absent,
        ``hugging her sister`` / ``a mother and her daughter`` is in the picture too."""
        lex = self.lex
        padded = f" {' '.join(toks)} "
        cues = [cue for cue in lex.absence if f" {cue} " in padded]
        strong = any(c not in _WEAK_ABSENCE for c in cues) or " ".join(toks[:i]).endswith(
            ("for her", "for his", "for their", "of her", "of his", "of their", "about her", "about his")
        )
        absent = strong or bool(cues)
        present = False
        before = toks[max(0, i - _NEAR) : i]
        near = " " + " ".join(before) + " "
        after = " " + " ".join(toks[i + 1 : i + 4]) + " "
        if not strong and (
            any(f" {v} " in near or f" {v} " in after for v in lex.interaction) or any(map(_ing_verb, before))
        ):
            absent, present = False, True
        if not absent:
            # "a mother and her daughter", "her sister standing behind her": a second person in the picture
            nxt = toks[i + 1] if i + 1 < len(toks) else ""
            present = present or "and" in prev[-3:] or (nxt.endswith("ing") and nxt not in ("wearing",))
        return absent, present

    def person_info(self, word: str) -> tuple[str | None, str | None] | None:
        """(gender, age) of a person noun: the lexicon, else the -man / -woman suffix (fisherman)."""
        info = self.lex.persons.get(word)
        if info is not None:
            return info
        if len(word) > 5 and word.isalpha() and word not in _NOT_PERSONS:
            if word.endswith(("woman", "women")):
                return ("Female", "Young Adult")
            if word.endswith(_MAN_SUFFIXES) and not word.endswith(("human", "humans")):
                return ("Male", "Young Adult")
        return None

    def _person_context(self, before: list[str]) -> bool:
        """Whether the words before a name-prone noun let it be a person noun (not a name's end)."""
        lex = self.lex
        if any(w in _DETERMINERS or w in _POSSESSIVES for w in before):
            return True
        prev = before[-1]
        return (
            prev in lex.persons
            or prev in lex.lengths
            or prev in _POSSESSIVES
            or prev in _STOP
            or prev in lex.age_adj
            or prev in lex.ethnicity
            or prev in lex.body
            or prev in lex.numbers
            or prev in lex.hair_colors
            or prev in lex.hair_color_nouns
            or prev in lex.nonbinary
            or prev in self.known_adjectives
            or prev.endswith(("-haired", "-old", "-eyed"))
            or prev == "_"
        )

    def _mark_other_context(self, clauses: list[_Clause], persons: list[_Person]) -> bool:
        """Attributes after a relative's mention belong to the relative, not the character.

        Returns whether some clause is now about someone else (``_Clause.other``).
        """
        marked = False
        for p in persons:
            if not p.relation:
                continue
            c = clauses[p.clause]
            c.tokens = c.tokens[: p.pos + 1]  # what follows a relative's mention describes the relative
            if p.clause + 1 < len(clauses) and clauses[p.clause + 1].tokens[:1] == ["("]:
                clauses[p.clause + 1].other = marked = True
        for c in clauses:
            toks = c.tokens
            if (
                toks
                and toks[0] in ("the", "(")
                and (toks[:3] == ["the", "one", "with"] or toks[:4] == ["(", "the", "one", "with"])
            ):
                c.other = marked = True
        return marked

    def _count_people(
        self, low: str, clauses: list[_Clause], persons: list[_Person], subject: _Person | None, ev: Evidence
    ) -> None:
        count = self._count_persons(clauses, persons, subject) if persons else None
        if (
            self._mentions_group(low, clauses)
            or self._mentions_crowd(clauses)
            or ("one " in low and len(_ONE_RE.findall(low)) >= 2)  # "one in red, one with a hat"
            or ("she" in low and _SHE_RE.search(low) and _HE_RE.search(low))
        ):  # "she is ..., he is ..."
            count = max(count or 0, 2)
        if count is not None:
            ev.prose_count = count

    def _count_persons(self, clauses: list[_Clause], persons: list[_Person], subject: _Person | None) -> int:
        """People depicted by the person nouns: numbers, plurals, and single nouns joined by 'and' or a verb."""
        count = 1
        depicted = [p for p in persons if not p.absent]
        for p in depicted:
            if p.plural:
                count = max(count, p.number if p.number > 1 else 2)
            elif p.number > 1 and not p.relation:
                count = max(count, p.number)
        singles = [p for p in depicted if not p.plural]
        nonrel = {p.noun for p in singles if not p.relation}
        if len(nonrel) >= 2:
            first = min((p for p in singles if not p.relation), key=lambda p: (p.clause, p.pos))
            others = [p for p in singles if not p.relation and p.noun != first.noun]
            joined = any(self._joined(clauses, first, o) for o in others)
            if joined:
                count = max(count, 2)
        for p in singles:
            if p.relation and (p.present or (subject is not None and self._joined(clauses, subject, p))):
                count = max(count, 2)
            elif not p.relation and p.pos > 0 and clauses[p.clause].tokens[p.pos - 1] in ("another", "other"):
                count = max(count, 2)  # "while another customer waits"
        return count

    def _mentions_crowd(self, clauses: list[_Clause]) -> bool:
        """A crowd that takes part in the scene (``a cheering crowd``, ``a small crowd gathers around him``):
        a crowd noun with a crowd verb within two words of it. A crowd only named is background."""
        nouns = self._crowd_nouns
        for c in clauses:
            toks = c.tokens
            if nouns.isdisjoint(toks):
                continue
            for i, t in enumerate(toks):
                if t in nouns and not self._crowd_verbs.isdisjoint(toks[max(0, i - 2) : i + 3]):
                    return True
        return False

    def _mentions_group(self, low: str, clauses: list[_Clause]) -> bool:
        """Whether a group word (``couple``, ``both``, ``each other``) says two or more people are depicted."""
        if (
            all(map(self._group_single.isdisjoint, map(_TOKENS, clauses)))  # most entries: no one-word group word,
            and not (
                any(map(low.__contains__, self._group_multi_anchors))  # and no phrase either (a cheap
                and any(map(f" {low} ".__contains__, self._group_multi))
            )
        ):  # necessary test first)
            return False
        words = set(t for c in clauses for t in c.tokens)
        blockers = self.ont.prose.get("group_word_blockers", {})
        for g in self.lex.group_words:
            if not ((" " in g and f" {g} " in f" {low} ") or g in words):
                continue
            stops = blockers.get(g, ())
            if stops and all(any(f"{g} {b}" in " ".join(c.tokens) for b in stops) for c in clauses if g in c.tokens):
                continue  # "a couple of hours", "both hands": not people
            return True
        return False

    def _joined(self, clauses: list[_Clause], a: _Person, b: _Person) -> bool:
        """Two person nouns depict two people when 'and' or an interaction verb links them."""
        if a.clause != b.clause:
            return False
        lo, hi = sorted((a.pos, b.pos))
        between = clauses[a.clause].tokens[lo + 1 : hi]
        text = " ".join(between)
        if "and" in between or "&" in between:
            return True
        if not _ROLE_WORDS.isdisjoint(between[-2:]):
            return False  # "a girl dressed as a nurse": one person
        return any(v in text for v in self.lex.interaction) or any(map(_ing_verb, between))

    def _read_subject(
        self,
        low: str,
        clauses: list[_Clause],
        persons: list[_Person],
        subject: _Person | None,
        ev: Evidence,
        has_other: bool,
    ) -> None:
        """Age, gender, ethnicity and body words about the character (``has_other``: some clause
        is about someone else, see ``_mark_other_context``)."""
        lex = self.lex
        # Non-binary words anywhere about the character.
        if has_other:
            words = [t for c in clauses if not c.other for t in c.tokens]
        else:
            words = list(chain.from_iterable(map(_TOKENS, clauses)))
        joined = " ".join(words)
        if not lex.nonbinary.isdisjoint(words):
            for nb in dict.fromkeys(w for w in words if w in lex.nonbinary):  # text order, not set order
                ev.gender_tags.append(("Non-binary", nb))
        if subject is not None:
            gender, age = self.person_info(subject.noun) or (None, None)
            toks = clauses[subject.clause].tokens
            mods = self._person_modifiers(toks, subject.pos)
            if gender:
                ev.add("Gender", gender, EXPLICIT, subject.noun)
            if age:
                # Adult nouns ("woman", "businessman") say Young Adult only when nothing else does.
                strength = NOUN_DEFAULT if age == "Young Adult" else EXPLICIT
                ev.add("Age", age, strength, subject.noun)
            adult = age == "Young Adult" or subject.noun in ("person", "adult")
            for j, w in mods:
                if w in lex.age_adj:
                    val = lex.age_adj[w]
                    if w == "young" and not adult:
                        continue
                    if (
                        w == "old"
                        and j > 0
                        and (toks[j - 1].isdigit() or toks[j - 1] in ("yr", "yrs", "year", "years", "yo"))
                    ):
                        continue
                    ev.add("Age", val, EXPLICIT, f"{w} {subject.noun}")
                elif w in self.color_ethnicity and j == subject.pos - 1 and subject.noun in self.color_ethnicity_nouns:
                    ev.add("Ethnicity", self.color_ethnicity[w], EXPLICIT, f"{w} {subject.noun}")
                elif w in lex.ethnicity or (j > 0 and f"{toks[j - 1]} {w}" in lex.ethnicity):
                    two = f"{toks[j - 1]} {w}" if j > 0 else w
                    val = lex.ethnicity.get(two) or lex.ethnicity[w]  # "sri lankan", "south african"
                    ev.add("Ethnicity", val, EXPLICIT, f"{w} {subject.noun}")
                elif w in lex.body:
                    ev.add("Body Type", lex.body[w], EXPLICIT, f"{w} {subject.noun}")
                elif w in lex.hair_color_nouns or w.endswith("-haired"):
                    self._haired(w, ev)
                elif lex.lengths.get(w) == "Bald":
                    ev.add("Hair Length", "Bald", EXPLICIT, f"{w} {subject.noun}")
            if subject.noun in lex.hair_color_nouns:
                ev.add("Hair Color", lex.hair_color_nouns[subject.noun], EXPLICIT, subject.noun)
        if not self._descent_words.isdisjoint(words):  # "of Korean descent", "of Nigerian origin"
            for j, w in enumerate(words):
                if w in self._descent_words and j >= 2:
                    for k in (2, 3):
                        if j - k >= 0 and words[j - k] == "of":
                            origin = " ".join(words[j - k + 1 : j])
                            if origin in lex.ethnicity:
                                ev.add("Ethnicity", lex.ethnicity[origin], EXPLICIT, f"of {origin} {w}")
        # Hyphenated "-haired" words anywhere (``words`` holds every token of the character's clauses).
        if "-haired" in joined:
            for w in words:
                if w.endswith("-haired"):
                    self._haired(w, ev)
        # Age phrases and stated ages.
        if any(map(joined.__contains__, self._age_phrase_anchors)):  # rare: a cheap necessary test first
            for phrase, val in lex.age_phrases.items():
                if phrase in joined:
                    ev.add("Age", val, EXPLICIT, phrase)
        self._stated_age(joined if has_other else low, ev, bool(persons))
        # Pronouns decide gender only when no noun did.
        if "Gender" not in ev.attrs and not self._pronoun_words.isdisjoint(words):
            counts = {"Female": 0, "Male": 0}
            for w in words:
                g = lex.pronouns.get(w)
                if g:
                    counts[g] += 1
            if counts["Female"] != counts["Male"]:
                g = max(counts, key=counts.__getitem__)
                ev.add("Gender", g, IMPLIED, "pronouns")

    def _person_modifiers(self, toks: list[str], pos: int) -> list[tuple[int, str]]:
        out = []
        j = pos - 1
        steps = 0
        while j >= 0 and steps < 4:
            w = toks[j]
            if (
                w in _DETERMINERS
                or w in ("and", "with", "of", "to", "for", "in", "on", "(", ")", "'s")
                or w in _POSSESSIVES
            ):
                break
            out.append((j, w))
            j -= 1
            steps += 1
        return out

    def _haired(self, w: str, ev: Evidence) -> None:
        lex = self.lex
        base = w[: -len("-haired")] if w.endswith("-haired") else w
        if base in lex.hair_colors:
            ev.add("Hair Color", lex.hair_colors[base], EXPLICIT, w)
        elif base in lex.hair_color_nouns:
            ev.add("Hair Color", lex.hair_color_nouns[base], EXPLICIT, w)
        elif base in lex.lengths:
            ev.add("Hair Length", lex.lengths[base], EXPLICIT, w)

    def _stated_age(self, text: str, ev: Evidence, has_person: bool) -> None:
        lex = self.lex
        ages: list[tuple[int, str]] = []
        digits = has_digit(text)  # most prose states no number: skip the patterns
        if digits:
            for needles, gate, rx in _STATED_RES:
                if any(map(text.__contains__, needles)) and (gate is None or gate.search(text) is not None):
                    for m in rx.finditer(text):
                        ages.append((int(m.group(1)), m.group(0)))
        # "a fifteen-year-old", "a girl of eleven"
        if not ages and _may_hold_number_word(text) and _NUM_WORD_RE.search(text) is not None:
            ages += _worded_ages(text)
        if "teens" in text or "ties" in text or (digits and "0s" in text):  # "in her forties", "late teens", "mid-30s"
            for m in _DECADE_RE.finditer(text):
                word = m.group(3)
                age = lex.decades.get(word, 0)
                qualifier = (m.group(2) or (m.group(1) or "").split()[-1]).rstrip("-")
                if age and qualifier in _DECADE_PART:  # "late sixties" is 68, "early teens" 13
                    start = 13 if word == "teens" else age // 10 * 10
                    age = max(start, min(start + 9, start + _DECADE_PART[qualifier]))
                ages.append((age, m.group(0)))
        if (
            has_person
            and not ages
            and digits
            and (
                _BARE_NUMBER_AFTER_COMMA_RE.search(text) is not None or _BARE_NUMBER_AT_START_RE.match(text) is not None
            )
        ):
            for m in _BARE_NUMBER_RE.finditer(text):
                ages.append((int(m.group(1)), m.group(0).strip(", ")))
        for age, source in ages:
            if not 0 < age < 125:
                continue
            for lo, hi, band in lex.age_bands:
                if lo <= age <= hi:
                    ev.add("Age", band, STATED, source.strip())
                    break

    # -- hair, eyes, garments, phrases -------------------------------------------------------

    def _read_body(self, toks: list[str], ev: Evidence, subject: _Person | None, ci: int) -> None:
        lex = self.lex
        n = len(toks)
        for i, w in enumerate(toks):
            if w not in lex.body or self._negated(toks, i):
                continue
            nxt = toks[i + 1 : i + 3]
            prev = toks[i - 1] if i > 0 else ""
            standalone = (
                n == 1
                or prev in ("is", "'s", "looks", "very", "quite", "rather", "pretty", "slightly")
                or (i == n - 1 and prev == "and")
            )
            before_person = any(x in lex.persons for x in nxt)
            build = bool(nxt) and nxt[0] in ("build", "figure", "frame", "body", "physique")
            if standalone or before_person or build:
                if subject is not None and before_person and ci == subject.clause:
                    continue  # already read as the subject's modifier
                ev.add("Body Type", lex.body[w], EXPLICIT, w)
