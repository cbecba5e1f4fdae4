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

from typing import Optional

from charmeta.evidence import Evidence
from charmeta.ontology import Ontology
from charmeta.prose.appearance import AppearanceReader
from charmeta.prose.lexicon import (
    _CLAUSE_SPLIT,
    _TOKEN_RE,
    _Clause,
    build_lexicon,
    title_case,
)
from charmeta.prose.people import PeopleReader

__all__ = ["ProseReader", "build_lexicon", "title_case"]


class ProseReader(PeopleReader, AppearanceReader):
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
        self.known_adjectives = frozenset(ontology.prose.get("known_adjectives", ()))

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
