"""Load the tag ontology (``data/ontology/*.json``) and compile it into one lookup index.

The extractor's hot path is one dict lookup per normalised tag: every rule in the
data files (exact tags, color x noun patterns, suffix rules expanded over the WD
tagger vocabulary, count tags, ratings, safety tags) is compiled here, once per
process, into ``Ontology.index: tag -> tuple[Hit, ...]``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any, NamedTuple

# Hit kinds (first element of a Hit): kept as short interned strings for speed.
ATTR = "attr"  # (ATTR, attribute key, (value, strength))
MULTI = "multi"  # (MULTI, attribute key, None): multicolor / heterochromia marker
GARMENT = "garment"  # (GARMENT, None, garment index)
CGARMENT = "cgarment"  # (CGARMENT, color display, garment form)
NUDE = "nude"
DSTYLE = "dstyle"  # (DSTYLE, None, style)
COUNT = "count"  # (COUNT, group, n)
SOLO = "solo"
RATING = "rating"  # (RATING, None, rating)
META = "meta"
GENDER = "gender"  # (GENDER, None, value)
MINOR = "minor"
SEXUAL = "sexual"
EXCLUDE = "exclude"  # (EXCLUDE, None, reason)
NAME = "name"  # (NAME, "character" | "copyright", None)
LIST = "list"  # (LIST, attribute key, value)
IGNORE = "ignore"

#: Evidence strengths. Explicit tags beat implied ones (uniform -> Teen).
EXPLICIT = 2.0
IMPLIED = 1.0
#: An adult noun's Young Adult (``woman``): weaker than any other age evidence, as in prose.
NOUN_AGE_STRENGTH = 0.5

_COUNT_GROUPS = {"girl": "girl", "boy": "boy", "other": "other"}


class Hit(NamedTuple):
    kind: str
    key: Any
    value: Any


@dataclass(frozen=True)
class Garment:
    """One garment family of ``dress.json``: how it displays, its style and priority."""

    index: int
    display: str
    style: str
    tier: int
    forms: tuple[str, ...]
    tags: tuple[str, ...]
    name_from_tag: bool = False
    #: ``name_from_tag: "listed"``: only the family's own tags and forms show their name (``Serafuku``);
    #: tags expanded from the vocabulary (``kitauji high school uniform``) show the family display.
    listed_names_only: bool = False

    @property
    def rank(self) -> tuple[int, int]:
        return (self.tier, self.index)


@dataclass
class AttributeRules:
    """Per-attribute resolver settings read from its ontology file."""

    key: str
    resolver: str
    order: tuple[str, ...] = ()
    conflict_on_multiple: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def normalize_tag(raw: str) -> str:
    """Canonical tag form: lower case, spaces for underscores, unescaped parentheses.

    Emoticons of three characters or fewer keep their underscores (``^_^``), as
    in the ordered-tags captions.
    """
    t = raw.strip().lower()
    if "\\" in t:
        t = t.replace("\\(", "(").replace("\\)", ")").replace("\\", "")
    if "_" in t and len(t) > 3:
        t = t.replace("_", " ")
    if "  " in t:
        t = " ".join(t.split())
    return t


def _read_text(rel: str) -> str:
    return resources.files("charmeta").joinpath(rel).read_text("utf-8")


def _read_json(rel: str) -> Any:
    return json.loads(_read_text(rel))


class Ontology:
    """The compiled ontology. Build once per process with ``Ontology.load()``."""

    def __init__(self) -> None:
        base = "data/ontology/"
        self.meta = _read_json(base + "meta.json")
        self.aliases: dict[str, str] = _read_json(base + "aliases.json")["aliases"]
        self.colors = _read_json(base + "colors.json")
        self.prose = _read_json(base + "prose.json")
        self.safety = _read_json(base + "safety.json")
        self.dress = _read_json(base + "dress.json")
        self.rules: dict[str, AttributeRules] = {}
        self.index: dict[str, list[Hit]] = {}
        self.prose_words: dict[str, dict[str, str]] = {}  # attribute -> prose word -> value
        self.version = self._fingerprint()
        self._wd_general, self._wd_characters, series = self._load_wd_vocab()
        extra = self.prose.get("extra_character_names", [])
        self._wd_characters.update(normalize_tag(n) for n in extra)
        self.copyrights = self._load_copyrights(series)
        # The two- and three-word character names as word tuples: prose blanks names by looking up a tuple
        # of tokens (``PeopleReader._blank_names``) instead of joining them into a string first. Series titles
        # holding an age word join them (``kid icarus nude`` names no child); other titles do not (some are
        # plain phrases: ``red dress``).
        age_words = {w for w in self._age_words() if " " not in w}
        self.character_name_words: frozenset[tuple[str, ...]] = frozenset(
            tuple(n.split(" "))
            for n in self._wd_characters | {c for c in self.copyrights if age_words.intersection(c.split(" "))}
            if n.count(" ") in (1, 2)
        )
        self.garments: list[Garment] = []
        self._compile()
        self.year_re = re.compile(self.meta["year_pattern"])
        self.meta_substrings: tuple[str, ...] = tuple(self.meta["meta_substrings"])
        # ``is_meta``'s substring test as one regex search (~3x faster than ``any`` over the substrings).
        # meta substrings, plus whole-tag patterns of prompt syntax (``score 9 up``, ``source anime``, ``embedding:x``)
        self._meta_substring_re = re.compile(
            "|".join([*map(re.escape, self.meta_substrings), *self.meta.get("meta_patterns", ())]) or "(?!)"
        )
        # Freeze to tuples for cheap iteration. META hits carry no information beyond
        # "known, not an attribute": they freeze to an empty tuple.
        self.frozen: dict[str, tuple[Hit, ...]] = {
            k: tuple(h for h in v if h.kind != META) for k, v in self.index.items()
        }
        self.known_vocab: frozenset[str] = frozenset(self._wd_general) | frozenset(self.frozen)

    # -- loading --------------------------------------------------------------------

    @staticmethod
    @lru_cache(maxsize=1)
    def load() -> Ontology:
        return Ontology()

    def _fingerprint(self) -> str:
        return data_fingerprint()

    def _load_wd_vocab(self) -> tuple[set[str], set[str], set[str]]:
        """General tags and character names of the WD vocabulary, plus the character list's
        names and series (``characters_dev.txt``: ``name, series, ...``), read once."""
        general: set[str] = set()
        characters: set[str] = set()
        series: set[str] = set()
        reader = csv.DictReader(io.StringIO(_read_text("data/reference/wd_selected_tags.csv")))
        for row in reader:
            name = normalize_tag(row["name"])
            if row["category"] == "0":
                general.add(name)
            elif row["category"] == "4":
                characters.add(name)
        for line in _read_text("data/reference/characters_dev.txt").splitlines():
            if line and not line.startswith("#"):
                parts = line.split(",")
                characters.add(normalize_tag(parts[0]))
                if len(parts) > 1:
                    series.add(normalize_tag(parts[1]))
        return general, characters, series

    def _load_copyrights(self, series: set[str]) -> frozenset[str]:
        for name in self._wd_characters:  # "kaga (kancolle)" -> "kancolle"
            m = re.search(r"\(([^()]+)\)\s*$", name)
            if m:
                series.add(m.group(1).strip())
        return frozenset(series)

    # -- compiling --------------------------------------------------------------------

    def _add(self, tag: str, hit: Hit) -> None:
        tag = normalize_tag(tag)
        hits = self.index.setdefault(tag, [])
        if hit not in hits:
            hits.append(hit)

    def _compile(self) -> None:
        self._compile_meta()
        self._compile_counts()
        base = "data/ontology/"
        for name in ("hair_style", "body_type", "ethnicity", "skin_tone", "expression"):
            self._compile_priority_file(_read_json(f"{base}{name}.json"))
        self._compile_colors(_read_json(base + "hair_color.json"))
        self._compile_colors(_read_json(base + "eye_color.json"))
        self._compile_graded(_read_json(base + "hair_length.json"), "tags")
        self._compile_graded(_read_json(base + "age.json"), "explicit")
        self._compile_gender(_read_json(base + "gender.json"))
        self._compile_dress()
        self._compile_list_file(_read_json(base + "accessories.json"))
        marks = _read_json(base + "marks.json")
        self._compile_list_file(marks["scars"])
        self._compile_list_file(marks["tattoos"], suffix_title=marks["tattoos"].get("suffix"))
        self._compile_list_file(_read_json(base + "features.json"))
        self._compile_safety()
        for name in self._wd_characters:
            if name not in self.index:
                self.index[name] = [Hit(NAME, "character", None)]
        for name in self.copyrights:
            if name not in self.index:
                self.index[name] = [Hit(NAME, "copyright", None)]
        for alias, canonical in self.aliases.items():
            target = self.index.get(normalize_tag(canonical))
            if alias != canonical and target:
                for hit in target:
                    self._add(alias, hit)

    def _age_words(self) -> list[str]:
        """Every explicit age word of ``age.json`` and every minor tag of ``safety.json``."""
        age = _read_json("data/ontology/age.json")
        return list(age.get("explicit", {})) + list(self.safety["minor_tags"])

    def _compile_meta(self) -> None:
        for word, rating in self.meta["ratings"].items():
            self._add(word, Hit(RATING, None, rating))
        for word in self.meta["years"] + self.meta["quality"]:
            self._add(word, Hit(META, None, None))

    def _compile_counts(self) -> None:
        for group in _COUNT_GROUPS:
            for n in range(1, 6):
                self._add(f"{n}{group}" + ("" if n == 1 else "s"), Hit(COUNT, group, n))
            # a negative count is a floor: "at least 6", "2 or more" (``Evidence.add_count``)
            self._add(f"6+{group}s", Hit(COUNT, group, -6))
            self._add(f"multiple {group}s", Hit(COUNT, group, -2))
        self._add("solo", Hit(SOLO, None, None))
        # `solo focus` does not make a multi-character entry single (contract section 2).
        for word in ("solo focus", "other focus"):
            self._add(word, Hit(META, None, None))

    def _rules(self, data: dict[str, Any]) -> AttributeRules:
        rules = AttributeRules(
            key=data["attribute"],
            resolver=data["resolver"],
            order=tuple(data.get("order", ())),
            conflict_on_multiple=bool(data.get("conflict_on_multiple", False)),
            extra={k: v for k, v in data.items() if k not in ("attribute", "resolver", "order", "tags", "prose")},
        )
        self.rules[rules.key] = rules
        prose = {k: v for k, v in data.get("prose", {}).items() if v}
        if prose:
            self.prose_words[rules.key] = prose
        return rules

    def _add_values(self, key: str, mapping: dict[str, str | None], strength: float) -> None:
        """Exact tags -> values of one attribute (a null value means "known, not this attribute")."""
        for tag, value in mapping.items():
            if value:
                self._add(tag, Hit(ATTR, key, (value, strength)))

    def _compile_priority_file(self, data: dict[str, Any]) -> None:
        self._add_values(self._rules(data).key, data["tags"], EXPLICIT)

    def _compile_colors(self, data: dict[str, Any]) -> None:
        rules = self._rules(data)
        pattern: str = data["pattern"]
        palette: dict[str, str] = self.colors[data["colors"]]
        self._add_values(rules.key, {pattern.format(color=w): v for w, v in palette.items()}, EXPLICIT)
        for tag in data["multicolor_tags"]:
            self._add(tag, Hit(MULTI, rules.key, None))
        self._add_values(rules.key, data.get("tags", {}), EXPLICIT)

    def _compile_graded(self, data: dict[str, Any], explicit_key: str) -> None:
        """Files with explicit tags and weaker implied ones (hair length, age)."""
        rules = self._rules(data)
        self._add_values(rules.key, data[explicit_key], EXPLICIT)
        self._add_values(rules.key, data["implied"], IMPLIED)

    def _compile_gender(self, data: dict[str, Any]) -> None:
        self._rules(data)
        for tag, value in data["tags"].items():
            if value:
                self._add(tag, Hit(GENDER, None, value))

    def _compile_dress(self) -> None:
        data = self.dress
        self.rules["Dress"] = AttributeRules(key="Dress", resolver="dress")
        for tag in data["nude_tags"]:
            self._add(tag, Hit(NUDE, None, None))
        form_owner: dict[str, int] = {}
        for i, g in enumerate(data["garments"]):
            tags = tuple(normalize_tag(t) for t in g["tags"])
            forms = tuple(normalize_tag(f) for f in g.get("forms", g["tags"][:1]))
            naming = g.get("name_from_tag")
            garment = Garment(
                i, g["display"], g["style"], int(g["tier"]), forms, tags, bool(naming), naming == "listed"
            )
            self.garments.append(garment)
            for tag in tags:
                self._add(tag, Hit(GARMENT, None, i))
                form_owner.setdefault(tag, i)
        named = len(self.garments)
        self._compile_open_garments(data.get("open_vocabulary"), form_owner)
        # A form belongs to the garment that names it as a tag ("dress" -> Dress), else
        # to the first garment listing it as a color form ("suit" -> Business Suit).
        for garment in self.garments:
            for form in garment.forms:
                form_owner.setdefault(form, garment.index)
        # Heads expanded over the WD vocabulary ("sleeveless dress" -> Dress family).
        heads: dict[str, list[Any]] = data["expand_heads"]
        head_owner = {head: form_owner.get(head) for head in heads}
        excl_prefix = tuple(data["expand_exclude_prefixes"])
        excl_sub = tuple(data["expand_exclude_substrings"])
        clothes: dict[str, str] = self.colors["clothes"]
        for tag in sorted(self._wd_general):
            words = tag.split(" ")
            if len(words) < 2 or words[-1] not in heads or tag in self.index:
                continue
            if tag.startswith(excl_prefix) or any(s in tag for s in excl_sub):
                continue
            if any(" ".join(words[:n]) in clothes for n in (2, 1) if len(words) > n):
                continue  # colour-garment tags are compiled below for every form
            owner = head_owner.get(words[-1])
            if owner is None:
                continue
            self._add(tag, Hit(GARMENT, None, owner))
        # Colour x form ("green kimono", "pink suit"): the colour plus the garment itself.
        all_forms = set(form_owner)
        for form in all_forms:
            owner = form_owner[form]
            open_family = owner >= named  # a colour with an open-vocabulary garment: only tags that exist
            for word, display in clothes.items():
                tag = f"{word} {form}"
                if open_family and tag not in self._wd_general:
                    continue  # in a prompt "green tunic" is a phrase: the prose reader takes its colour
                self._add(tag, Hit(CGARMENT, display, form))
                self._add(tag, Hit(GARMENT, None, owner))
        for tag, style in data["style_tags"].items():
            self._add(tag, Hit(DSTYLE, None, style))

    def _compile_open_garments(self, spec: dict[str, Any] | None, form_owner: dict[str, int]) -> None:
        """Garments beyond the named families: Danbooru's attire tag groups (``tag_tree.json``) and
        common English clothing nouns, one family per (tier, style), each shown by its own name.

        A tag some family already names keeps it (``kimono`` stays Kimono); the families come
        after the named ones, so within a tier a named family still wins.
        """
        if not spec:
            return
        tree = json.loads(_read_text("data/reference/tag_tree.json"))
        exclude = {normalize_tag(t) for t in spec.get("exclude", ())}
        overrides = {normalize_tag(t): int(v) for t, v in spec.get("tier_overrides", {}).items()}
        chosen: dict[str, tuple[int, str]] = {}
        for path, (tier, style) in spec.get("groups", {}).items():
            node: Any = tree
            for part in path.split("|"):
                node = node.get(part, {}) if isinstance(node, dict) else {}
            for raw in node if isinstance(node, list) else ():
                tag = normalize_tag(raw)
                chosen.setdefault(tag, (overrides.get(tag, int(tier)), style))
        for raw, (tier, style) in spec.get("english", {}).items():
            tag = normalize_tag(raw)
            chosen.setdefault(tag, (overrides.get(tag, int(tier)), style))
        families: dict[tuple[int, str], list[str]] = {}
        for tag in sorted(chosen):
            if tag in exclude or tag in form_owner or any(h.kind == GARMENT for h in self.index.get(tag, ())):
                continue
            families.setdefault(chosen[tag], []).append(tag)
        for (tier, style), tags in sorted(families.items()):
            i = len(self.garments)
            self.garments.append(Garment(i, tags[0].title(), style, tier, tuple(tags), tuple(tags), True))
            for tag in tags:
                self._add(tag, Hit(GARMENT, None, i))
                form_owner.setdefault(tag, i)

    def person_tag_hits(self) -> dict[str, tuple[Hit, ...]]:
        """What a tag whose head noun is a person noun of the prose lexicon says as words
        (``elderly woman`` -> Female as well as its Elderly; ``old man`` -> Male).

        Only prompt lists use it (``TextExtractor._read_items``): there an item is the
        character described in words. In Danbooru captions such tags (``fat man``,
        ``old man`` beside ``1girl``) name someone else, so the index does not carry it.
        Adult nouns give Young Adult only as the weakest age evidence, as in prose."""
        persons: dict[str, list[str | None]] = self.prose.get("person_nouns", {})
        out: dict[str, tuple[Hit, ...]] = {}
        for tag in sorted(self._wd_general | set(self.index)):
            words = tag.split(" ")
            info = persons.get(words[-1])
            if info is None or len(words) > 3 or not all(w.replace("-", "").isalpha() for w in words):
                continue
            hits = self.index.get(tag, ())
            if any(h.kind in (NAME, COUNT, GARMENT) for h in hits):
                continue
            extra: list[Hit] = []
            gender, age = info[0], info[1]
            if gender and not any(h.kind == GENDER for h in hits):
                extra.append(Hit(GENDER, None, gender))
            if age and not any(h.kind == ATTR and h.key == "Age" for h in hits):
                extra.append(Hit(ATTR, "Age", (age, NOUN_AGE_STRENGTH if age == "Young Adult" else EXPLICIT)))
            if extra:
                out[tag] = tuple(extra)
        return out

    def _compile_list_file(self, data: dict[str, Any], suffix_title: str | None = None) -> None:
        rules = self._rules(data)
        key = rules.key
        explicit_none = {normalize_tag(t) for t, v in data["tags"].items() if not v}
        for tag, value in data["tags"].items():
            if value:
                self._add(tag, Hit(LIST, key, value))
        suffixes: dict[str, str] = dict(data.get("suffixes", {}))
        if suffix_title:
            suffixes[suffix_title] = "{Title}"
        if not suffixes:
            return
        excl_prefix = tuple(data.get("exclude_prefixes", ()))
        excl_tags = {normalize_tag(t) for t in data.get("exclude_tags", ())}
        for tag in self._wd_general:
            if tag in explicit_none or tag in excl_tags or tag.startswith(excl_prefix):
                continue
            if any(h.kind == LIST and h.key == key for h in self.index.get(tag, ())):
                continue
            for suffix, value in suffixes.items():
                if tag == suffix or tag.endswith(" " + suffix):
                    shown = tag.title() if value == "{Title}" else value
                    self._add(tag, Hit(LIST, key, shown))
                    break

    def _compile_safety(self) -> None:
        s = self.safety
        for tag, reason in s["always_exclude"].items():
            self._add(tag, Hit(EXCLUDE, None, reason))
        words = s.get("always_exclude_words", {})
        for tag in self._wd_general | set(s["always_exclude"]):
            for w in tag.split(" "):
                if w in words:
                    self._add(tag, Hit(EXCLUDE, None, words[w]))
                    break
        # every explicit Child / Teen age word marks a minor too, whatever the Age decision (two explicit
        # ages conflict -> Unknown, and `mature female, teenage, nude` must still be excluded)
        ages = self.rules["Age"].extra.get("explicit", {})
        minor_values = set(s["scan"]["minor_age_values"])
        minor_words = [t for t, v in ages.items() if v in minor_values]
        for tag in dict.fromkeys(s["minor_tags"] + minor_words):
            self._add(tag, Hit(MINOR, None, None))
        for tag in s["sexual_tags"] + s["sexual_words"]:
            self._add(tag, Hit(SEXUAL, None, None))

    # -- lookups --------------------------------------------------------------------

    def lookup(self, tag: str) -> tuple[Hit, ...]:
        return self.frozen.get(tag, ())

    def is_character(self, tag: str) -> bool:
        return tag in self._wd_characters

    def is_copyright(self, tag: str) -> bool:
        return tag in self.copyrights

    def is_meta(self, tag: str) -> bool:
        """A year or a tag holding one of ``meta_substrings`` (``commentary request``, ``highly detailed``)."""
        return self.year_re.match(tag) is not None or self._meta_substring_re.search(tag) is not None


@lru_cache(maxsize=1)
def data_fingerprint() -> str:
    """Hash of every file the ontology is compiled from (``data/ontology/*.json`` and the
    reference vocabularies): part of the text extractor's version, so editing a tag alias
    changes the predictions' fingerprint and ``charmeta run`` rebuilds them. Reads the files
    only (~5 ms), no compile: the fingerprint is needed before any engine is built."""
    h = hashlib.sha256()
    for folder in ("data/ontology", "data/reference"):
        base = resources.files("charmeta").joinpath(folder)
        for entry in sorted(base.iterdir(), key=lambda p: p.name):
            if entry.is_file() and (entry.name.endswith((".json", ".csv", ".txt"))):
                h.update(f"{folder}/{entry.name}".encode())
                h.update(entry.read_bytes())
    return h.hexdigest()[:12]


def get_ontology() -> Ontology:
    """The process-wide compiled ontology (built on first use, ~0.3 s)."""
    return Ontology.load()
