"""The tag / prose extractor backend: one caption or description in, one ``Extraction`` out.

Hot path (tag captions): split into items, normalise, one dict lookup per item
(``Ontology.frozen``), append observations; then the resolvers and the safety
rule run once per entry. Items the ontology does not know are read as phrases
by ``ProseReader`` only in prompt-style lists and prose, never in the name
sections of ordered-tags captions.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from charmeta.contract import CORE_KEYS, UNKNOWN
from charmeta.evidence import Evidence
from charmeta.extractors.base import ColumnarPath
from charmeta.ontology import (
    ATTR,
    CGARMENT,
    COUNT,
    DSTYLE,
    EXCLUDE,
    GARMENT,
    GENDER,
    LIST,
    MINOR,
    MULTI,
    NAME,
    NUDE,
    RATING,
    SEXUAL,
    SOLO,
    Hit,
    Ontology,
    get_ontology,
    normalize_tag,
)
from charmeta.parsing import ParsedCaption, split_caption, split_generation
from charmeta.prose import ProseReader, title_case
from charmeta.records import Decision, Extraction
from charmeta.resolvers import UNKNOWN_COUNT_FACTOR, DressResolver, build_resolvers
from charmeta.safety import SafetyRule, SafetyScanner, add_scanned

#: Name units of an ordered-tags header (``_header_units``): the item is a character /
#: copyright / artist name, whatever else the ontology knows about it.
AS_CHARACTER = (Hit(NAME, "character", None),)
AS_COPYRIGHT = (Hit(NAME, "copyright", None),)
AS_ARTIST = (Hit(NAME, "artist", None),)
log = logging.getLogger("charmeta.text")
#: Hit kinds that describe the character: an item holding one is a tag, even in a name section.
_APPEARANCE_KINDS = frozenset((ATTR, LIST, GARMENT, CGARMENT, NUDE, DSTYLE, MULTI, MINOR, SEXUAL, EXCLUDE))
_NAME_QUALIFIER_RE = re.compile(r"^[^()]+\([^()]+\)(\s*\([^()]+\))*$")
_ITEM_CACHE_MAX = 200_000
_NO_EVIDENCE: list[str] = []  # shared, never mutated
#: The decision of every core attribute without evidence. Shared by all records (one
#: allocation saved per missing attribute): decisions are never mutated after ``_finish``.
_NO_DECISION = Decision(UNKNOWN, 0.0, _NO_EVIDENCE, False)
#: Resolvers that read more than ``Evidence.attrs`` (counts, garments) run for every entry.
#: A tuple: the attributes dict fills in this order whatever the hash seed.
_ALWAYS_RESOLVE = ("Gender", "Dress")


def _unique(items: list[str]) -> list[str]:
    """The distinct items in order (callers skip it for lists of one or none)."""
    return list(dict.fromkeys(items))


class TextExtractor:
    """Danbooru-style tags and prose -> ``Extraction``: an ``AttributeExtractor``, ``ColumnarCapable``
    (its ``columnar`` batch path) and the ``TagReader`` that path reads items with
    (``charmeta.extractors.base``)."""

    name = "text"

    @staticmethod
    def code_version() -> str:
        """Package version + hash of the ontology's data files: the outputs depend on both, so
        both are part of the predictions' fingerprint (see ``charmeta.pipeline.stages``)."""
        from charmeta import __version__
        from charmeta.ontology import data_fingerprint

        return f"{__version__}+{data_fingerprint()}"

    @property
    def version(self) -> str:
        return self.code_version()

    def __init__(self, ontology: Ontology) -> None:
        self.ont = ontology
        self.prose = ProseReader(ontology)
        self.resolvers = build_resolvers(ontology)
        self.dress = self.resolvers["Dress"]
        assert isinstance(self.dress, DressResolver)
        self.safety = SafetyRule(ontology)
        self.scanner = SafetyScanner(ontology)
        self.lookup = ontology.frozen.get
        # raw item -> (normalised tag, hits): captions repeat the same few thousand tags.
        self._item_cache: dict[str, tuple[str, tuple | None, tuple | None]] = {}
        # Unknown prompt-list item -> whether it is read as a phrase (``_is_phrase``): "soft light" repeats.
        self._phrase_cache: dict[str, bool] = {}
        # Tags that may stand in the name section of an ordered-tags caption (1girl, solo, rating...).
        self.header_tags = frozenset(
            t for t, hits in ontology.frozen.items() if any(h.kind in (COUNT, SOLO, GENDER, RATING) for h in hits)
        )
        self.rating_severity = ontology.meta["rating_severity"]
        # (first word, number of words) of every tag a prose clause may be read as (``_read_clause_as_tag``).
        self._clause_tag_shapes = frozenset(
            (t.split(" ", 1)[0], t.count(" ") + 1)
            for t, hits in ontology.frozen.items()
            if hits and not all(h.kind == NAME for h in hits)
        )
        self._drop_words = frozenset(ontology.dress.get("display_drop_words", ()))
        self._person_tags = ontology.person_tag_hits()
        # Names that are also person nouns of the prose lexicon: read as phrases in prompt lists.
        self._person_word_names = frozenset(
            w
            for w, hits in ((w, ontology.frozen.get(w)) for w in self.prose.lex.persons)
            if hits and len(hits) == 1 and hits[0].kind == NAME
        )
        self._columnar: ColumnarPath | None = None

    @property
    def columnar(self) -> ColumnarPath:
        """The batch path for structured captions (``charmeta.extractors.columnar``, the
        ``ColumnarCapable`` capability), built on first use: one-entry callers (``charmeta
        extract --text``) never import numpy / pyarrow for it. It reads items through this
        extractor's ``TagReader`` members (``read_item``, ``apply``, the resolvers)."""
        if self._columnar is None:
            from charmeta.extractors.columnar import ColumnarTagPath

            self._columnar = ColumnarTagPath(self)
        return self._columnar

    @classmethod
    def default(cls) -> TextExtractor:
        return cls(get_ontology())

    # -- protocol -----------------------------------------------------------------------

    def extract_batch(self, items: Sequence[Any]) -> list[Extraction]:
        return [self.extract(t) for t in items]

    def extract(self, text: str) -> Extraction:
        if ":" in text:  # generation text: the negative prompt and the parameter line are never evidence
            prompt, negative, parameters = split_generation(text)
            if negative is not None or parameters is not None:
                ex = self._extract(prompt)
                ex.negative_prompt, ex.parameters = negative, parameters
                return ex
        return self._extract(text)

    def _extract(self, text: str) -> Extraction:
        parsed = split_caption(text)
        ev = Evidence()
        kind = "tags"
        if parsed.fmt == "prose":
            kind = "prose"
            self.prose.read(text, ev, tag_reader=self._read_clause_as_tag, tag_shapes=self._clause_tag_shapes)
            add_scanned(ev, self.scanner.scan(text))
        else:
            if (
                parsed.fmt == "tags"
                and len(parsed.body) == 1
                and " " in parsed.body[0]
                and self.lookup(normalize_tag(parsed.body[0])) is None
            ):
                words = parsed.body[0].split()
                if any(self.lookup(normalize_tag(w)) for w in words):
                    parsed.body, parsed.fmt = words, "danbooru"  # "1girl child": two space-separated tags
                else:
                    # "two people dancing"
                    self.prose.read(text, ev, tag_reader=self._read_clause_as_tag, tag_shapes=self._clause_tag_shapes)
                    add_scanned(ev, self.scanner.scan(text))
                    return self._finish(ev, "prose")
            if parsed.fmt == "danbooru" and "_" not in text:
                # a space-separated run of words, not a raw tag string: multi-word tags and names exist only
                # across tokens ("little girl", "kaitou kid"), so known runs are joined and the whole text
                # is scanned for safety markers as well
                parsed.body = self._join_known_runs(_run_words(parsed.body))
                add_scanned(ev, self.scanner.scan(text))
            if parsed.header and self._read_header(parsed.header, ev) and parsed.fmt == "v30":
                # a `rating:` token inside a plain comma list: the items before it are tags, not names
                log.debug("v3.0 header holds appearance tags; read as a tag list: %r", parsed.header)
                parsed = ParsedCaption("tags", [], parsed.header + parsed.body)
                ev = Evidence()
            unknown, known = self._read_items(parsed.body, ev, parsed.fmt)
            if unknown and parsed.fmt == "tags":
                self.prose.read(", ".join(unknown), ev, clauses=unknown)
                if len(unknown) > known:
                    kind = "prose"
        return self._finish(ev, kind)

    # -- reading ------------------------------------------------------------------------

    def _read_header(self, items: list[str], ev: Evidence) -> bool:
        """Apply the header's units; whether an appearance tag stood in it (``_header_units``)."""
        units, appearance = self._header_units(items)
        for t, hits in units:
            self.apply(hits, t, ev)
        return appearance

    def _header_units(self, items: list[str]) -> tuple[list[tuple[str, tuple]], bool]:
        """The header's items as ``(tag, hits to apply)`` units, in order, and whether an
        appearance tag (``is_appearance``) stood among them.

        Count / solo / gender / rating tags apply in full; then character,
        copyright, artist names (never attribute evidence) become name units. A
        name the ontology does not know as one still applies its safety hits (the
        rule errs on exclusion). Shared by the per-entry path and the columnar
        path (``charmeta.extractors.columnar``), so both read a header alike.
        """
        ont = self.ont
        cache = self._item_cache
        units: list[tuple[str, tuple]] = []
        has_character = has_copyright = appearance = False
        for raw in items:
            t, hits, scanned = cache.get(raw) or self._cache_item(raw)
            if hits is not None and (not hits or t in self.header_tags):
                if hits:
                    units.append((t, hits))
                    for h in hits:
                        if h[0] is NAME:
                            if h[1] == "character":
                                has_character = True
                            else:
                                has_copyright = True
                continue
            is_character, is_copyright = ont.is_character(t), ont.is_copyright(t)
            if hits and not (is_character or is_copyright) and any(h.kind in _APPEARANCE_KINDS for h in hits):
                # an appearance tag left in a name section (`1girl, blue eyes, ||| ...`) is read as a tag
                log.debug("appearance tag %r in a name section read as a tag", t)
                units.append((t, hits))
                appearance = True
                continue
            if not (is_character or is_copyright):
                if hits:
                    safety = tuple(h for h in hits if h.kind in (EXCLUDE, MINOR, SEXUAL))
                elif hits is None:  # an unknown name: the words it holds (``12yo loli_artist``, ``_cache_item``)
                    safety = scanned or ()
                else:
                    safety = ()
                if safety:
                    units.append((t, safety))
            if is_character or (not has_character and not is_copyright):
                units.append((t, AS_CHARACTER))
                has_character = True
            elif is_copyright or not has_copyright:
                units.append((t, AS_COPYRIGHT))
                has_copyright = True
            else:
                units.append((t, AS_ARTIST))
        return units, appearance

    def _join_known_runs(self, tokens: list[str]) -> list[str]:
        """Greedy longest runs of up to four tokens that the index knows as one tag or name."""
        out: list[str] = []
        i, n = 0, len(tokens)
        lookup = self.lookup
        while i < n:
            for k in range(min(4, n - i), 1, -1):
                joined = " ".join(tokens[i : i + k])
                if lookup(normalize_tag(joined)) is not None:
                    out.append(joined)
                    i += k
                    break
            else:
                out.append(tokens[i])
                i += 1
        return out

    def is_appearance(self, raw: str) -> bool:
        """An item the index knows as a tag that describes the character (not a name, count or rating)."""
        t, hits, _ = self._item_cache.get(raw) or self._cache_item(raw)
        if not hits or t in self.header_tags or self.ont.is_character(t) or self.ont.is_copyright(t):
            return False
        return any(h.kind in _APPEARANCE_KINDS for h in hits)

    def scan_hits(self, t: str) -> tuple:
        """The safety markers in the words of a normalised item the index does not know. Not cached
        here: ``_cache_item`` keeps the answer with the item (one cache, not two: fewer objects for
        the garbage collector to walk, measured ~7 us per caption on the per-entry path)."""
        return self.scanner.item_hits(t)

    def read_item(self, raw: str) -> tuple[str, tuple | None, tuple | None]:
        """``TagReader.read_item``: one raw item's (tag, hits, single hit / safety hits), memoised."""
        return self._item_cache.get(raw) or self._cache_item(raw)

    def forget_items(self, limit: int) -> None:
        """``TagReader.forget_items``: clear the item memo once it holds more than ``limit`` items
        (names are mostly unique: the columnar path never lets it grow between its batches)."""
        if len(self._item_cache) > limit:
            self._item_cache.clear()

    def _cache_item(self, raw: str) -> tuple[str, tuple | None, tuple | None]:
        """Normalise and look up one raw item once: (tag, hits or None, the hit when it is the only one).

        For an item the index does not know (hits None) the third element holds the safety markers
        its words carry (``scan_hits``; None when none): unknown items cost no second lookup."""
        t = normalize_tag(raw)
        hits = self.lookup(t)
        if hits is None:
            entry = self._item_cache[raw] = (t, None, self.scan_hits(t) or None)
        else:
            entry = self._item_cache[raw] = (t, hits, hits[0] if len(hits) == 1 else None)
        return entry

    def _read_items(self, items: list[str], ev: Evidence, fmt: str) -> tuple[list[str], int]:
        unknown: list[str] = []
        known = 0
        prompt_list = fmt == "tags"
        cache = self._item_cache
        attrs = ev.attrs
        lists = ev.lists
        phrases = self._phrase_cache
        if len(cache) > _ITEM_CACHE_MAX or len(phrases) > _ITEM_CACHE_MAX:  # bounded memory whatever the dataset size
            cache.clear()
            phrases.clear()
        for raw in items:
            t, hits, single = cache.get(raw) or self._cache_item(raw)
            if hits is None:
                if single is not None:  # safety markers in the words of an unknown item (``_cache_item``)
                    self.apply(single, t, ev)
                if prompt_list and t:
                    is_phrase = phrases.get(t)
                    if is_phrase is None:
                        is_phrase = phrases[t] = self._is_phrase(t)
                    if is_phrase:
                        unknown.append(t)
                continue
            if prompt_list and single is not None and single[0] is NAME and t in self._person_word_names:
                unknown.append(t)  # "businesswoman": a series title too, but in a prompt a person noun
                continue
            known += 1
            if prompt_list:
                extra = self._person_tags.get(t)
                if extra is not None:
                    self.apply(extra, t, ev)  # "elderly woman": Female too (``Ontology.person_tag_hits``)
            if single is not None:  # one hit: the common kinds inlined, the rest via apply
                kind, key, value = single
                if kind is ATTR:
                    obs = attrs.get(key)
                    if obs is None:
                        attrs[key] = [(value[0], value[1], t)]
                    else:
                        obs.append((value[0], value[1], t))
                elif kind is LIST:
                    items_of = lists.get(key)
                    if items_of is None:
                        lists[key] = [(value, t)]
                    else:
                        items_of.append((value, t))
                elif kind is NAME:
                    (ev.characters if key == "character" else ev.copyrights).append(t)
                elif kind is RATING:
                    ev.ratings.append(value)
                elif kind is SOLO:
                    ev.solo = True
                else:
                    self.apply(hits, t, ev)
            elif hits:
                self.apply(hits, t, ev)
        return unknown, known

    def _is_phrase(self, t: str) -> bool:
        """Whether an item of a prompt list the index does not know is read as prose: not a meta tag
        (year, ``commentary``...), not a known vocabulary tag, not a qualified name (``kaga (kancolle)``)."""
        return not self.ont.is_meta(t) and t not in self.ont.known_vocab and not _NAME_QUALIFIER_RE.match(t)

    def _read_clause_as_tag(self, words: list[str], ev: Evidence) -> bool:
        """In prose, a clause that is itself a tag (``dark skin``, ``smiling``) is read as one.

        ``words`` are the clause's tokens (no spaces in any): only a clause whose
        first word and length some such tag has is joined and looked up.
        """
        if words and (words[0], len(words)) not in self._clause_tag_shapes:
            return False
        clause = " ".join(words)
        hits = self.lookup(clause)
        if not hits or all(h.kind == NAME for h in hits):
            return False
        self.apply(hits, clause, ev)
        return True

    def apply(self, hits: tuple, t: str, ev: Evidence) -> None:
        for kind, key, value in hits:
            if kind == ATTR:
                ev.add(key, value[0], value[1], t)
            elif kind == LIST:
                ev.add_list(key, value, t)
            elif kind == GARMENT:
                g = self.ont.garments[value]
                display = None
                form = next((h[2] for h in hits if h[0] == CGARMENT), t) if g.name_from_tag else t
                if g.name_from_tag and (not g.listed_names_only or form in g.tags or form in g.forms):
                    # "black tank top" -> Black Tank Top, not the family name
                    color = next((h[1] for h in hits if h[0] == CGARMENT), None)
                    name = title_case([w for w in form.split(" ") if w not in self._drop_words] or form.split(" "))
                    display = name if color is None else f"{color} {name}"
                ev.garments.append((g.rank, value, t, display))
            elif kind == CGARMENT:
                ev.garment_colors.append((key, value, t))
            elif kind == COUNT:
                ev.add_count(t, key, value)
            elif kind == SOLO:
                ev.solo = True
            elif kind == RATING:
                ev.ratings.append(value)
            elif kind == MULTI:
                ev.add_multi(key, t)
            elif kind == NUDE:
                ev.nude.append(t)
            elif kind == DSTYLE:
                ev.dress_styles.append((value, t))
            elif kind == GENDER:
                ev.gender_tags.append((value, t))
            elif kind == MINOR:
                ev.minor.append(t)
            elif kind == SEXUAL:
                ev.sexual.append(t)
            elif kind == EXCLUDE:
                ev.exclude.append((value, t))
            elif kind == NAME:
                (ev.characters if key == "character" else ev.artists if key == "artist" else ev.copyrights).append(t)
            # META: rating/year/quality words are recognised and kept out of attributes.

    # -- resolution -----------------------------------------------------------------------

    def _finish(self, ev: Evidence, kind: str) -> Extraction:
        count = _character_count(ev)
        rating = max(ev.ratings, key=self._severity_of) if ev.ratings else None
        attributes = self._decide(ev)
        if count is None:
            for d in attributes.values():
                d.confidence = round(d.confidence * UNKNOWN_COUNT_FACTOR, 4)
        for key in CORE_KEYS:
            attributes.setdefault(key, _NO_DECISION)
        characters, copyrights, artists = ev.characters, ev.copyrights, ev.artists
        ex = Extraction(
            kind,
            "ok",
            None,
            count,
            bool(count and count >= 2),
            _unique(characters) if len(characters) > 1 else characters,
            _unique(copyrights) if len(copyrights) > 1 else copyrights,
            _unique(artists) if len(artists) > 1 else artists,
            rating,
            attributes,
        )
        reason = self.safety.reason(ev, attributes["Age"].value, rating)
        if reason is not None:
            ex.status, ex.reason = "excluded", reason
        elif ex.multi_character:
            ex.status, ex.reason = "multi_character", f"{count} characters"
        return ex

    def _severity_of(self, rating: str) -> int:
        return self.rating_severity.get(rating, 0)

    def _decide(self, ev: Evidence) -> dict[str, Decision]:
        """One decision per attribute with evidence, in the order the evidence names them
        (attributes, lists, markers), then Gender, Dress and Dress Style."""
        attributes: dict[str, Decision] = {}
        resolvers = self.resolvers
        for keys in (ev.attrs, ev.lists, ev.multi):
            for key in keys:
                if key not in attributes and key in resolvers:
                    d = resolvers[key].resolve(ev)
                    if d is not None:
                        attributes[key] = d
        for key in _ALWAYS_RESOLVE:
            if key not in attributes:
                d = resolvers[key].resolve(ev)
                if d is not None:
                    attributes[key] = d
        if ev.garments or ev.nude or ev.dress_styles:
            style = self.dress.style(ev)
            if style is not None:
                attributes["Dress Style"] = style
        return attributes


def _run_words(tokens: list[str]) -> list[str]:
    """The words of a space-separated run without what is no part of them: ``;`` separators
    (``1girl; kid icarus; nude``) and Midjourney weights (``kaitou kid::2``). Left on, they keep
    a name's words from joining (``_join_known_runs``), and its words are then read alone
    (``kid`` as a minor marker: 16 held-out safety controls were excluded so)."""
    if not any(";" in t or "::" in t for t in tokens):
        return tokens
    out: list[str] = []
    for token in tokens:
        if "::" in token:
            token = token.split("::", 1)[0]
        out.extend(w for w in token.split(";") if w)
    return out


def _character_count(ev: Evidence) -> int | None:
    """Count tags first, then the people counted in prose, then ``solo``; None when nothing says."""
    if ev.counts:
        return sum(ev.group_counts().values())
    if ev.prose_count is not None:
        return ev.prose_count
    if ev.solo:
        return 1
    return None
