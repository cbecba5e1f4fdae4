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
from dataclasses import dataclass, field
from typing import Iterable, Optional

from charmeta.evidence import Evidence
from charmeta.ontology import ATTR, EXPLICIT, GARMENT, IMPLIED, Ontology, normalize_tag

STATED = 3.0  # a stated age beats every word
NOUN_DEFAULT = 0.5  # "woman" -> Young Adult only when nothing else says
UNIFORM = 1.0

_CLAUSE_SPLIT = re.compile(r"\s*(?:[,;:!?\n]|\.(?!\d)|—|–|\s-\s|\.\.+)\s*")
_TOKEN_RE = re.compile(r"\(|\)|[a-z0-9]+(?:[-'/][a-z0-9]+)*")
_STATED_RES = (
    re.compile(r"\b(\d{1,3})\s*(?:-|\s)?\s*(?:years?|yrs?|yr)(?:[\s-]*old)?\b"),
    re.compile(r"\b(\d{1,3})\s*(?:yo|y/o|y\.o\.)(?=\W|$)"),
    re.compile(r"\bage[ds]?\s+(\d{1,3})\b"),
)
_BARE_NUMBER_RE = re.compile(r"(?:^|,)\s*(\d{1,3})\s*(?=,|$)")
_DECADE_RE = re.compile(
    r"\b(?:(in\s+(?:her|his|their)\s+(?:early\s+|mid\s+|mid-|late\s+)?)|(early|mid|late)[\s-]+)"
    r"(teens|twenties|thirties|forties|fifties|sixties|seventies|eighties|nineties|[2-9]0s)\b"
)
_ONE_RE = re.compile(r"\bone (?:in|with|wearing|of them|blonde|blond|brunette|redhead|has)\b")
_HE_RE = re.compile(r"\bhe(?:'s| is| was| wears| has)\b")
_SHE_RE = re.compile(r"\bshe(?:'s| is| was| wears| has)\b")
_POSSESSIVES = frozenset({"her", "his", "their", "my", "your", "our"})
_DETERMINERS = frozenset({"a", "an", "the", "this", "that", "some"})
_STOP = frozenset({"a", "an", "the", "and", "with", "of", "to", "for", "in", "on", "at", "by", "is", "are", "was",
                   "who", "that", "'s", "as", "while", "from", "into", "her", "his", "their", "(", ")"})
_HAIR_SKIP_PREV = frozenset({"facial", "pubic", "body", "chest", "arm", "leg", "nose", "ear", "armpit", "back"})
_HAIR_SKIP_NEXT = frozenset({"clip", "clips", "ribbon", "ribbons", "bow", "bows", "band", "bands", "tie", "ties", "pin", "pins",
                             "ornament", "ornaments", "accessory", "accessories", "dryer", "brush", "salon", "stylist",
                             "between", "over", "covering", "flower", "flowers", "stick", "net"})
_SHOULDER_RE = re.compile(r"\b(to|past|below|above|at)\s+(?:her|his|their|the)\s+(shoulders?|chin|jaw|waist|hips?|knees?|back|ears?|neck)\b")
_SHOULDER_LEN = {("to", "shoulder"): "Medium", ("to", "shoulders"): "Medium", ("at", "shoulders"): "Medium", ("above", "shoulders"): "Medium",
                 ("past", "shoulders"): "Long", ("below", "shoulders"): "Long", ("to", "chin"): "Short", ("to", "jaw"): "Short",
                 ("to", "ears"): "Short", ("to", "neck"): "Short", ("to", "waist"): "Long", ("to", "hips"): "Long", ("to", "hip"): "Long",
                 ("to", "knees"): "Long", ("to", "back"): "Long", ("past", "waist"): "Long"}


def title_case(words: Iterable[str] | str) -> str:
    """Title Case that keeps hyphenated words readable (`one-piece` -> `One-Piece`)."""
    if isinstance(words, str):
        words = words.split()
    return " ".join(w[:1].upper() + w[1:] if "-" not in w else "-".join(p[:1].upper() + p[1:] for p in w.split("-")) for w in words)


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
    persons: dict[str, tuple[Optional[str], Optional[str]]]
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
    typo_targets_mod: dict[str, str] = field(default_factory=dict)
    typo_targets_noun: dict[str, str] = field(default_factory=dict)


def _deletes(word: str) -> set[str]:
    out = {word[:i] + word[i + 1:] for i in range(len(word))}
    out |= {word[:i] + word[i + 1] + word[i] + word[i + 2:] for i in range(len(word) - 1)}
    return out


def _build_typo_index(words: Iterable[str], min_len: int) -> dict[str, str]:
    """Symmetric-delete index: a word one edit (or one swap) away maps to its target."""
    index: dict[str, str] = {}
    for w in words:
        if len(w) < min_len or " " in w:
            continue
        for d in _deletes(w) | {w}:
            index.setdefault(d, w)
    return index


_TYPO_CACHE: dict[tuple[int, str], Optional[str]] = {}
_TYPO_CACHE_MAX = 100_000


def _typo(token: str, index: dict[str, str]) -> Optional[str]:
    """The vocabulary word one typo away from ``token`` (memoised: prose repeats words)."""
    if len(token) < 4 or not token.isalpha():
        return None
    key = (id(index), token)
    hit = _TYPO_CACHE.get(key, _MISS)
    if hit is not _MISS:
        return hit  # type: ignore[return-value]
    if len(_TYPO_CACHE) > _TYPO_CACHE_MAX:
        _TYPO_CACHE.clear()
    result = _TYPO_CACHE[key] = _typo_uncached(token, index)
    return result


_MISS = object()


def _typo_uncached(token: str, index: dict[str, str]) -> Optional[str]:
    if token in index and index[token] != token and len(token) == len(index[token]) - 1:
        return index[token]  # a letter dropped: "blak" -> "black"
    for d in _deletes(token):
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
    extra_heads = {"sundress": "sundress", "gown": "gown", "tux": "tuxedo", "dresses": "dress", "raincoat": "raincoat",
                   "overalls": "overalls", "jeans": "jeans", "trousers": "trousers", "jersey": "jersey", "sweatshirt": "sweatshirt",
                   "hoodie": "hoodie", "cardigan": "cardigan", "apron": None, "aprons": None, "outfit": None, "uniforms": "uniform",
                   "top": "top", "tee": "shirt", "blazer": "blazer", "vest": "vest", "skirts": "skirt", "kimonos": "kimono"}
    for word, target in extra_heads.items():
        if target is None:
            continue
        idx = garment_phrases.get(target, head_owner.get(target))
        if idx is not None:
            garment_phrases.setdefault(word, idx)
    for head, idx in head_owner.items():
        garment_phrases.setdefault(head, idx)
    mod_words = set(colors["hair"]) | set(colors["eyes"]) | set(lengths) | set(styles) | {"ponytail", "twintails", "braids", "dreadlocks", "pigtails"}
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
    )
    lex.typo_targets_mod = _build_typo_index(mod_words, 5)
    lex.typo_targets_noun = _build_typo_index({"ponytail", "twintails", "pigtails", "dreadlocks", "braids"}, 6)
    return lex


@dataclass
class _Clause:
    tokens: list[str]
    other: bool = False  # about a mentioned, non-depicted person


@dataclass
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
_NOT_PERSONS = frozenset({"german", "germans", "roman", "romans", "shaman", "talisman", "caiman", "ottoman", "walkman",
                          "layman", "yeoman", "doberman", "superman", "batman", "pokeman", "ramen", "omen", "semen", "amen",
                          "stamen", "specimen", "abdomen", "regimen", "acumen", "women", "woman"})


class ProseReader:
    """Turns prose / phrase text into observations on an ``Evidence``."""

    def __init__(self, ontology: Ontology) -> None:
        self.ont = ontology
        self.lex = build_lexicon(ontology)
        self.name_prone = frozenset(ontology.prose.get("name_prone_nouns", ()))
        self.color_ethnicity: dict[str, str] = ontology.prose.get("color_ethnicity", {})
        self.color_ethnicity_nouns = frozenset(ontology.prose.get("color_ethnicity_nouns", ()))
        # First words of multi-word phrases: most tokens start none, so n-grams are only built after one.
        self._garment_first = frozenset(p.split(" ", 1)[0] for p in self.lex.garment_phrases)
        self._phrase_first = frozenset(p.split(" ", 1)[0] for p in self.lex.phrases)
        self.known_adjectives = frozenset({"shy", "sleepy", "cute", "pretty", "beautiful", "handsome", "tall", "short", "happy",
                                           "sad", "cool", "lonely", "brave", "angry", "smiling", "tired", "freckled", "young",
                                           "blonde", "blond", "redheaded", "tiny", "small", "big", "cheerful", "grumpy", "quiet",
                                           "little", "tough", "strong", "wild", "gentle", "elegant", "tan", "pale", "lean"})

    # -- entry points ------------------------------------------------------------------

    def read(self, text: str, ev: Evidence, clauses: Optional[list[str]] = None, tag_reader=None) -> None:
        """Read free text (``clauses`` None) or the unknown items of a tag list."""
        low = text.lower().replace("w/", "with ").replace("’", "'")
        raw_clauses = clauses if clauses is not None else self._split(low)
        parsed = [self._tokenize(c.lower().replace("w/", "with ").replace("’", "'")) for c in raw_clauses]
        parsed = [c for c in parsed if c.tokens]
        self._blank_names(parsed)
        persons = self._find_persons(parsed)
        self._mark_other_context(parsed, persons)
        subject = next((p for p in persons if not p.relation and not p.absent and not p.plural), None)
        if subject is None:
            subject = next((p for p in persons if not p.relation and not p.absent), None)
        self._count_people(low, parsed, persons, subject, ev)
        for ci, clause in enumerate(parsed):
            if clause.other:
                continue
            if tag_reader is not None and tag_reader(" ".join(t for t in clause.tokens if t not in "()"), ev):
                continue
            self._read_hair(clause.tokens, ev)
            self._read_eyes(clause.tokens, ev)
            self._read_garments(clause.tokens, ev)
            self._read_phrases(clause.tokens, ev)
            self._read_body(clause.tokens, ev, subject, ci)
        self._read_subject(low, parsed, persons, subject, ev)

    # -- tokenising --------------------------------------------------------------------

    def _split(self, text: str) -> list[str]:
        # keep parentheses as their own clauses so "(the one with the red hair)" stays together
        text = text.replace("(", ", ( ").replace(")", " ) ,")
        return [c for c in _CLAUSE_SPLIT.split(text) if c and c.strip()]

    def _tokenize(self, clause: str) -> _Clause:
        tokens = _TOKEN_RE.findall(clause)
        out: list[str] = []
        for t in tokens:
            if t.endswith("'s") and len(t) > 2:
                out += [t[:-2], "'s"]
            else:
                out.append(t)
        return _Clause(out)

    def _blank_names(self, clauses: list[_Clause]) -> None:
        """Character names are never evidence (``kaitou kid`` is not a child)."""
        is_char = self.ont.is_character
        first_words = self.ont.character_first_words
        for c in clauses:
            toks = c.tokens
            n = len(toks)
            for size in (3, 2):
                for i in range(n - size + 1):
                    if toks[i] in first_words and is_char(" ".join(toks[i:i + size])):
                        for j in range(i, i + size):
                            toks[j] = "_"

    # -- people -----------------------------------------------------------------------

    def _find_persons(self, clauses: list[_Clause]) -> list[_Person]:
        lex = self.lex
        found: list[_Person] = []
        for ci, c in enumerate(clauses):
            toks = c.tokens
            text = " ".join(toks)
            for i, t in enumerate(toks):
                if t not in lex.persons and t not in lex.plural_persons and self.person_info(t) is None:
                    continue
                if t in ("blonde", "brunette") and i + 1 < len(toks) and toks[i + 1] in lex.hair_nouns:
                    continue
                if i + 1 < len(toks) and toks[i + 1] in lex.persons and t not in lex.plural_persons:
                    continue  # "school girl", "ninja warrior": the head is the last noun
                if t in self.name_prone and i > 0 and not self._person_context(toks[max(0, i - 2):i]):
                    continue  # "kaitou kid", "iron man": the end of a name, not a person noun
                prev = toks[max(0, i - 3):i]
                relation = any(w in _POSSESSIVES for w in prev[-2:]) and not (i >= 1 and toks[i - 1] in ("her", "his") and t in ("hair",))
                before = " ".join(toks[:i])
                padded = f" {text} "
                absent = relation and (any(f" {cue} " in padded for cue in lex.absence)
                                       or before.endswith(("for her", "for his", "for their")))
                present = False
                near = " " + " ".join(toks[max(0, i - 4):i]) + " "
                if relation and any(f" {v} " in near for v in lex.interaction):
                    absent, present = False, True
                if relation and not absent:
                    # "a mother and her daughter", "her sister standing behind her": a second person in the picture
                    nxt = toks[i + 1] if i + 1 < len(toks) else ""
                    present = present or "and" in prev[-3:] or (nxt.endswith("ing") and nxt not in ("wearing",))
                number = 1
                for w in prev:
                    if w in lex.numbers:
                        number = max(number, lex.numbers[w])
                plural = t in lex.plural_persons
                found.append(_Person(t, ci, i, relation, absent, plural, number if (plural or number > 1) else 1, present))
        return found

    def person_info(self, word: str) -> Optional[tuple[Optional[str], Optional[str]]]:
        """(gender, age) of a person noun: the lexicon, else the -man / -woman suffix (fisherman)."""
        info = self.lex.persons.get(word)
        if info is not None:
            return info
        if len(word) > 5 and word.isalpha() and word not in _NOT_PERSONS:
            if word.endswith(("woman", "women")):
                return ("Female", "Young Adult")
            if word.endswith(("man", "men")) and not word.endswith(("human", "humans")):
                return ("Male", "Young Adult")
        return None

    def _person_context(self, before: list[str]) -> bool:
        """Whether the words before a name-prone noun let it be a person noun (not a name's end)."""
        lex = self.lex
        if any(w in _DETERMINERS or w in _POSSESSIVES for w in before):
            return True
        prev = before[-1]
        return (prev in lex.persons or prev in lex.lengths or prev in _POSSESSIVES or prev in _STOP or prev in lex.age_adj
                or prev in lex.ethnicity or prev in lex.body or prev in lex.numbers or prev in lex.hair_colors
                or prev in lex.hair_color_nouns or prev in lex.nonbinary or prev in self.known_adjectives
                or prev.endswith(("-haired", "-old", "-eyed")) or prev == "_")

    def _mark_other_context(self, clauses: list[_Clause], persons: list[_Person]) -> None:
        """Attributes after a relative's mention belong to the relative, not the character."""
        for p in persons:
            if not p.relation:
                continue
            c = clauses[p.clause]
            c.tokens = c.tokens[:p.pos + 1]  # what follows a relative's mention describes the relative
            if p.clause + 1 < len(clauses) and clauses[p.clause + 1].tokens[:1] == ["("]:
                clauses[p.clause + 1].other = True
        for c in clauses:
            if c.tokens[:3] == ["the", "one", "with"] or c.tokens[:4] == ["(", "the", "one", "with"]:
                c.other = True

    def _count_people(self, low: str, clauses: list[_Clause], persons: list[_Person], subject: Optional[_Person], ev: Evidence) -> None:
        lex = self.lex
        count = 1 if persons else None
        depicted = [p for p in persons if not p.absent]
        for p in depicted:
            if p.plural:
                count = max(count or 0, p.number if p.number > 1 else 2)
            elif p.number > 1 and not p.relation:
                count = max(count or 0, p.number)
        singles = [p for p in depicted if not p.plural]
        nonrel = {p.noun for p in singles if not p.relation}
        if len(nonrel) >= 2:
            first = min((p for p in singles if not p.relation), key=lambda p: (p.clause, p.pos))
            others = [p for p in singles if not p.relation and p.noun != first.noun]
            joined = any(self._joined(clauses, first, o) for o in others)
            if joined:
                count = max(count or 0, 2)
        for p in singles:
            if p.relation and (p.present or (subject is not None and self._joined(clauses, subject, p))):
                count = max(count or 0, 2)
        words = set(t for c in clauses for t in c.tokens)
        for g in lex.group_words:
            if (" " in g and g in low) or g in words:
                if g in ("both", "together", "each other", "one another") and not persons and not ev.counts:
                    continue
                count = max(count or 0, 2)
        if len(_ONE_RE.findall(low)) >= 2:
            count = max(count or 0, 2)
        if _HE_RE.search(low) and _SHE_RE.search(low):
            count = max(count or 0, 2)
        if count is not None:
            ev.prose_count = count

    def _joined(self, clauses: list[_Clause], a: _Person, b: _Person) -> bool:
        """Two person nouns depict two people when 'and' or an interaction verb links them."""
        if a.clause != b.clause:
            return False
        lo, hi = sorted((a.pos, b.pos))
        between = clauses[a.clause].tokens[lo + 1:hi]
        text = " ".join(between)
        if "and" in between or "&" in between:
            return True
        return any(v in text for v in self.lex.interaction)

    def _read_subject(self, low: str, clauses: list[_Clause], persons: list[_Person], subject: Optional[_Person], ev: Evidence) -> None:
        lex = self.lex
        # Non-binary words anywhere about the character.
        words = [t for c in clauses if not c.other for t in c.tokens]
        wordset = set(words)
        for nb in lex.nonbinary:
            if nb in wordset:
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
                    if w == "old" and j > 0 and (toks[j - 1].isdigit() or toks[j - 1] in ("yr", "yrs", "year", "years", "yo")):
                        continue
                    ev.add("Age", val, EXPLICIT, f"{w} {subject.noun}")
                elif w in self.color_ethnicity and j == subject.pos - 1 and subject.noun in self.color_ethnicity_nouns:
                    ev.add("Ethnicity", self.color_ethnicity[w], EXPLICIT, f"{w} {subject.noun}")
                elif w in lex.ethnicity:
                    two = f"{toks[j - 1]} {w}" if j > 0 else w
                    val = lex.ethnicity.get(two, lex.ethnicity[w])
                    ev.add("Ethnicity", val, EXPLICIT, f"{w} {subject.noun}")
                elif w in lex.body:
                    ev.add("Body Type", lex.body[w], EXPLICIT, f"{w} {subject.noun}")
                elif w in lex.hair_color_nouns or w.endswith("-haired"):
                    self._haired(w, ev)
                elif lex.lengths.get(w) == "Bald":
                    ev.add("Hair Length", "Bald", EXPLICIT, f"{w} {subject.noun}")
            if subject.noun in lex.hair_color_nouns:
                ev.add("Hair Color", lex.hair_color_nouns[subject.noun], EXPLICIT, subject.noun)
        # Standalone "redhead"/"blonde" nouns, hyphenated "-haired" words anywhere.
        for c in clauses:
            if c.other:
                continue
            for w in c.tokens:
                if w.endswith("-haired"):
                    self._haired(w, ev)
        # Age phrases and stated ages.
        joined = " ".join(words)
        for phrase, val in lex.age_phrases.items():
            if phrase in joined:
                ev.add("Age", val, EXPLICIT, phrase)
        self._stated_age(low if not any(c.other for c in clauses) else joined, ev, bool(persons))
        # Pronouns decide gender only when no noun did.
        if "Gender" not in ev.attrs:
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
            if w in _DETERMINERS or w in ("and", "with", "of", "to", "for", "in", "on", "(", ")", "'s") or w in _POSSESSIVES:
                break
            out.append((j, w))
            j -= 1
            steps += 1
        return out

    def _haired(self, w: str, ev: Evidence) -> None:
        lex = self.lex
        base = w[:-len("-haired")] if w.endswith("-haired") else w
        if base in lex.hair_colors:
            ev.add("Hair Color", lex.hair_colors[base], EXPLICIT, w)
        elif base in lex.hair_color_nouns:
            ev.add("Hair Color", lex.hair_color_nouns[base], EXPLICIT, w)
        elif base in lex.lengths:
            ev.add("Hair Length", lex.lengths[base], EXPLICIT, w)

    def _stated_age(self, text: str, ev: Evidence, has_person: bool) -> None:
        lex = self.lex
        ages: list[tuple[int, str]] = []
        for rx in _STATED_RES:
            for m in rx.finditer(text):
                ages.append((int(m.group(1)), m.group(0)))
        for m in _DECADE_RE.finditer(text):
            word = m.group(3)
            ages.append((lex.decades.get(word, 0), m.group(0)))
        if has_person and not ages:
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

    def _negated(self, toks: list[str], i: int) -> bool:
        for w in toks[max(0, i - 3):i]:
            if w in self.lex.negations:
                return True
        return False

    def _hair_modifier(self, w: str) -> Optional[list[tuple[str, str]]]:
        lex = self.lex
        if w in lex.hair_colors:
            return [("color", lex.hair_colors[w])]
        if w in lex.shades:
            return [("shade", w)]
        if w in lex.lengths:
            return [("length", lex.lengths[w])]
        if w in lex.styles and w not in ("bun", "bob", "braid", "ponytail"):
            return [("style", lex.styles[w])]
        if w in lex.multi_words:
            return [("multi", w)]
        if w in ("two", "double", "twin"):
            return [("num", w)]
        if w.endswith("-haired"):
            return None
        if "-" in w:
            parts = [p for p in w.split("-") if p not in ("to", "and", "n")]
            if w in lex.lengths:
                return [("length", lex.lengths[w])]
            mods: list[tuple[str, str]] = []
            for part in parts:
                m = self._hair_modifier(part)
                if not m:
                    return None
                mods += m
            if sum(1 for k, _ in mods if k == "color") >= 2:
                mods.append(("multi", w))
            return mods
        fixed = _typo(w, lex.typo_targets_mod)
        if fixed and fixed != w:
            return self._hair_modifier(fixed)
        return None

    def _read_hair(self, toks: list[str], ev: Evidence) -> None:
        lex = self.lex
        n = len(toks)
        for i, t in enumerate(toks):
            noun = t
            if t not in lex.hair_nouns:
                fixed = _typo(t, lex.typo_targets_noun)
                if not fixed:
                    continue
                noun = fixed
                toks[i] = fixed
            if (i > 0 and toks[i - 1] in _HAIR_SKIP_PREV) or (i + 1 < n and toks[i + 1] in _HAIR_SKIP_NEXT):
                continue
            if noun == "cut" and not (i > 0 and toks[i - 1] in ("pixie", "bob", "buzz", "crew", "hime", "bowl")):
                continue
            if self._negated(toks, i):
                continue
            if noun in ("bangs", "fringe", "cut", "haircut", "hairdo") and not (i > 0 and toks[i - 1] in ("pixie", "bob", "buzz", "crew", "hime", "bowl")):
                mods = self._collect_back(toks, i)
                self._apply_hair_mods(mods, ev, noun, style_noun=None)
                continue
            style_noun = None
            two = f"{toks[i - 1]} {noun}" if i > 0 else noun
            if two in lex.styles:
                style_noun = two
            elif noun in lex.styles:
                style_noun = noun
            elif two in ("buzz cut", "crew cut", "bowl cut"):
                ev.add("Hair Length", "Short", IMPLIED, two)
            mods = self._collect_back(toks, i - (1 if style_noun == two and two != noun else 0))
            self._apply_hair_mods(mods, ev, noun, style_noun)
            if noun in ("hair", "locks", "mane", "tresses", "curls", "waves"):
                if noun in ("curls",):
                    ev.add("Hair Style", "Curly", EXPLICIT, noun)
                if noun == "waves":
                    ev.add("Hair Style", "Wavy", EXPLICIT, noun)
                self._read_hair_forward(toks, i, ev)

    def _collect_back(self, toks: list[str], i: int) -> list[tuple[str, str, str]]:
        mods: list[tuple[str, str, str]] = []
        j = i - 1
        while j >= 0 and i - j <= 7:
            w = toks[j]
            if w in ("and", "&", "or") and mods and j > 0 and self._hair_modifier(toks[j - 1]):
                j -= 1
                continue
            m = self._hair_modifier(w)
            if not m:
                break
            mods += [(k, v, w) for k, v in m]
            j -= 1
        return mods

    def _apply_hair_mods(self, mods: list[tuple[str, str, str]], ev: Evidence, noun: str, style_noun: Optional[str]) -> None:
        lex = self.lex
        nums = [w for k, _, w in mods if k == "num"]
        if style_noun:
            style = lex.styles[style_noun]
            if nums and noun in ("braids", "braid", "plaits"):
                style = "Twin Braids"
            elif nums and noun in ("buns", "bun"):
                style = "Double Bun"
            elif nums and noun in ("ponytails", "pigtails"):
                style = "Twintails"
            ev.add("Hair Style", style, EXPLICIT, " ".join([w for *_, w in reversed(mods)] + [style_noun]))
            implied = self.ont.lookup(normalize_tag(style_noun))
            for h in implied:
                if h.kind == ATTR and h.key == "Hair Length":
                    ev.add("Hair Length", h.value[0], IMPLIED, style_noun)
            if style_noun in ("bob", "pixie", "pixie cut", "bob cut"):
                ev.add("Hair Length", "Short", IMPLIED, style_noun)
        src_noun = style_noun or noun
        for kind, value, word in mods:
            if kind == "color":
                ev.add("Hair Color", value, EXPLICIT, f"{word} {src_noun}")
            elif kind == "length":
                ev.add("Hair Length", value, EXPLICIT, f"{word} {src_noun}")
            elif kind == "style":
                ev.add("Hair Style", value, EXPLICIT, f"{word} {src_noun}")
            elif kind == "multi":
                ev.add_multi("Hair Color", f"{word} {src_noun}")

    def _read_hair_forward(self, toks: list[str], i: int, ev: Evidence) -> None:
        lex = self.lex
        n = len(toks)
        end = min(n, i + 9)
        j = i + 1
        while j < end:
            w = toks[j]
            if w in lex.eye_nouns or w in lex.persons or w in lex.garment_phrases:
                break
            two = f"{w} {toks[j + 1]}" if j + 1 < n else ""
            if two and two in lex.styles:
                self._apply_hair_mods(self._collect_back(toks, j), ev, toks[j + 1], two)
                j += 2
                continue
            if w in lex.styles and w not in ("straight",):
                self._apply_hair_mods(self._collect_back(toks, j), ev, w, w)
            elif w in ("half-up", "half"):
                ev.add("Hair Style", "Half Up", EXPLICIT, "hair worn half-up")
            j += 1
        m = _SHOULDER_RE.search(" ".join(toks[i + 1:end + 2]))
        if m:
            key = (m.group(1), m.group(2))
            val = _SHOULDER_LEN.get(key) or _SHOULDER_LEN.get((m.group(1), m.group(2) + "s"))
            if val:
                ev.add("Hair Length", val, EXPLICIT, f"hair {m.group(0)}")

    def _read_eyes(self, toks: list[str], ev: Evidence) -> None:
        lex = self.lex
        for i, t in enumerate(toks):
            if t not in lex.eye_nouns or self._negated(toks, i):
                continue
            colors: list[tuple[str, str]] = []
            j = i - 1
            one = False
            while j >= 0 and i - j <= 5:
                w = toks[j]
                if w in lex.eye_colors:
                    colors.append((lex.eye_colors[w], w))
                elif w in ("one", "left", "right", "other"):
                    one = True
                elif w in lex.shades or w in ("big", "large", "wide", "bright", "sparkling", "glowing", "narrow", "almond-shaped", "round", "sharp", "piercing", "striking", "soft", "kind", "tired", "sleepy", "kohl-lined"):
                    pass
                elif w in ("and", "&") and colors:
                    pass
                elif "-" in w and all(p in lex.eye_colors for p in w.split("-")):
                    colors += [(lex.eye_colors[p], p) for p in w.split("-")]
                else:
                    fixed = _typo(w, lex.typo_targets_mod)
                    if fixed and fixed in lex.eye_colors:
                        colors.append((lex.eye_colors[fixed], w))
                    else:
                        break
                j -= 1
            if not colors:
                continue
            if t in ("eye", "iris") and not one:
                continue  # "a black eye" is a bruise, not an eye color
            for value, word in colors:
                if word == "dark" and len(colors) > 1:
                    continue
                ev.add("Eye Color", value, EXPLICIT, f"{word} {t}")

    def _read_garments(self, toks: list[str], ev: Evidence) -> None:
        lex = self.lex
        n = len(toks)
        i = 0
        while i < n:
            t = toks[i]
            if t in ("nude", "naked", "undressed") and not self._negated(toks, i):
                ev.nude.append(t)
                ev.sexual.append(t)
                i += 1
                continue
            match = None
            if t not in self._garment_first:  # no garment phrase starts with this word
                i += 1
                continue
            for size in (3, 2, 1):
                if i + size > n:
                    continue
                phrase = " ".join(toks[i:i + size])
                if phrase in lex.garment_phrases and phrase not in lex.persons:  # "a witch", "a nurse": people
                    match = (size, phrase)
                    break
            if match is None:
                i += 1
                continue
            size, phrase = match
            end = i + size
            # extend over a head that follows ("school uniform" inside "yellow kindergarten uniform" etc.)
            if self._negated(toks, i):
                i = end
                continue
            gi = lex.garment_phrases[phrase]
            quals: list[str] = []
            color: Optional[str] = None
            j = i - 1
            while j >= 0 and len(quals) < 2:
                w = toks[j]
                if w in lex.clothes_colors:
                    color = lex.clothes_colors[w]
                    if j > 0 and f"{toks[j - 1]} {w}" in lex.clothes_colors:
                        color = lex.clothes_colors[f"{toks[j - 1]} {w}"]
                    break
                if w in lex.garment_stop or w in lex.shades or w in _STOP or w.isdigit() or w in lex.persons or w == "_":
                    if w in lex.shades and j > 0 and toks[j - 1] in lex.clothes_colors:
                        j -= 1
                        continue
                    break
                quals.insert(0, w)
                j -= 1
            words = quals + toks[i:end]
            display = title_case(words)
            if color:
                display = f"{color} {display}"
            garment = self.ont.garments[gi]
            canonical = normalize_tag(self.ont.aliases.get(phrase, phrase))
            for h in self.ont.lookup(canonical):
                if h.kind == GARMENT:
                    gi = h.value
                    garment = self.ont.garments[gi]
                    break
            for h in self.ont.lookup(canonical):
                if h.kind == ATTR and h.key == "Age":
                    ev.add("Age", h.value[0], UNIFORM, canonical)
            ev.garments.append(((garment.tier, 0, len(ev.garments)), gi, " ".join(words), display))
            i = end

    def _read_phrases(self, toks: list[str], ev: Evidence) -> None:
        lex = self.lex
        n = len(toks)
        i = 0
        first = self._phrase_first
        while i < n:
            if toks[i] not in first:
                i += 1
                continue
            hit = None
            for size in (4, 3, 2, 1):
                if i + size > n:
                    continue
                phrase = " ".join(toks[i:i + size])
                if phrase in lex.phrases:
                    hit = (size, phrase)
                    break
            if hit is None:
                i += 1
                continue
            size, phrase = hit
            if not self._negated(toks, i):
                for key, value in lex.phrases[phrase]:
                    if key in ("Accessories", "Features", "Scars", "Tattoos"):
                        ev.add_list(key, value, phrase)
                    elif key == "Skin Tone" and phrase in ("tan", "pale") and i + size < n and toks[i + size] not in ("skin", "skinned"):
                        continue
                    else:
                        ev.add(key, value, EXPLICIT, phrase)
            i += size

    def _read_body(self, toks: list[str], ev: Evidence, subject: Optional[_Person], ci: int) -> None:
        lex = self.lex
        n = len(toks)
        for i, w in enumerate(toks):
            if w not in lex.body or self._negated(toks, i):
                continue
            nxt = toks[i + 1:i + 3]
            prev = toks[i - 1] if i > 0 else ""
            standalone = n == 1 or prev in ("is", "'s", "looks", "very", "quite", "rather", "pretty", "slightly") or (i == n - 1 and prev == "and")
            before_person = any(x in lex.persons for x in nxt)
            build = bool(nxt) and nxt[0] in ("build", "figure", "frame", "body", "physique")
            if standalone or before_person or build:
                if subject is not None and before_person and ci == subject.clause:
                    continue  # already read as the subject's modifier
                ev.add("Body Type", lex.body[w], EXPLICIT, w)
