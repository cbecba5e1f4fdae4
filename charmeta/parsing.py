"""Split a caption into its sections: header (count tags and names), rating and body.

Formats (``docs/caption_format.md``):

* ``v31``  - ``<count>, <character>, <copyright>, <artist>, ||| <rating>, <general…>, <year>, <quality>``
* ``v30``  - the same without ``|||``, rating as ``rating: general``
* ``danbooru`` - a raw space-separated ``tag_string`` with underscores
* ``tags`` - any other comma list (prompt style, ``(long hair:1.2)`` weights)
* ``prose`` - free text; handled by ``charmeta.prose``

Only the structure is decided here; what each tag means is the ontology's job.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Optional

_WEIGHT_RE = re.compile(r":\s*-?\d+(?:\.\d+)?\s*$")
_SPLIT_RE = re.compile(r"\s*[,\n]\s*")
_PROSE_HINT_RE = re.compile(
    r"\b(a|an|the|with|wearing|in|of|and|her|his|she|he|is|who|their|on|at|to|while|has)\b", re.I
)
_RATING_PREFIX = "rating:"


@dataclass(slots=True)
class ParsedCaption:
    """A caption split into sections. Items are raw (not yet normalised)."""

    fmt: str
    header: list[str] = field(default_factory=list)
    body: list[str] = field(default_factory=list)


def strip_prompt_weight(item: str) -> str:
    """``(long hair:1.2)`` -> ``long hair``; ``[blue eyes]`` -> ``blue eyes``; ``((x))`` -> ``x``.

    Only brackets that wrap the whole item are removed, so escaped name
    qualifiers like ``kaga \\(kancolle\\)`` are left alone.
    """
    s = item.strip()
    while len(s) >= 2 and s[0] in "([{" and s[-1] in ")]}" and not s.endswith("\\)"):
        s = s[1:-1].strip()
        if ":" in s:
            s = _WEIGHT_RE.sub("", s)
    if s and s[0] in "([{" and not s.startswith("\\("):
        s = s.lstrip("([{").strip()
    if s and s[-1] in ")]}" and "(" not in s and "[" not in s and "{" not in s:
        s = s.rstrip(")]}").strip()
    if ":" in s and _WEIGHT_RE.search(s) and not s.lower().startswith(_RATING_PREFIX):
        s = _WEIGHT_RE.sub("", s)
    return s


def looks_like_prose(text: str) -> bool:
    """Heuristic: several function words per item means sentences, not tags."""
    items = [t for t in _SPLIT_RE.split(text) if t]
    if not items:
        return False
    long_items = sum(1 for t in items if t.count(" ") >= 3)
    hints = len(_PROSE_HINT_RE.findall(text))
    return hints >= 2 and (long_items * 3 >= len(items) or hints >= len(items))


def danbooru_tokens(text: str) -> tuple[list[str], bool]:
    """A comma-less caption's whitespace tokens, and whether they are a raw Danbooru tag string."""
    tokens = text.split()
    return tokens, len(tokens) > 1 and ("_" in text or (len(tokens) > 3 and not _PROSE_HINT_RE.search(text)))


def has_prose_hint(text: str) -> bool:
    """A function word (``a``, ``with``, ``her``...) somewhere in the text."""
    return _PROSE_HINT_RE.search(text) is not None


def is_rating_item(item: str) -> bool:
    """``rating: general`` style items start the body of a v3.0 caption."""
    return item.lower().startswith(_RATING_PREFIX)


def split_caption(text: str) -> ParsedCaption:
    """Decide the format and split into header / body items."""
    if "|||" in text:
        head, _, body = text.partition("|||")
        return ParsedCaption("v31", _items(head), _items(body))
    if "," not in text and "\n" not in text:
        tokens, danbooru = danbooru_tokens(text)
        if danbooru:
            return ParsedCaption("danbooru", [], tokens)
        if len(tokens) <= 3 and not _PROSE_HINT_RE.search(text):
            return ParsedCaption("tags", [], [strip_prompt_weight(text)])  # one tag: "male focus"
        return ParsedCaption("prose", [], [text])
    items = _items(text)
    for i, item in enumerate(items):
        if is_rating_item(item):
            return ParsedCaption("v30", items[:i], items[i:])
    if looks_like_prose(text):
        return ParsedCaption("prose", [], [text])
    return ParsedCaption("tags", [], items)


def _items(text: str) -> list[str]:
    if "\n" in text:
        text = text.replace("\n", ",")
    return [item for item in map(clean_item, text.split(",")) if item]


def clean_item(raw: str) -> str:
    """One comma-separated item as read: trimmed, prompt weights / brackets removed ("" = no item)."""
    raw = raw.strip()
    if raw and (raw[0] in "([{" or raw[-1] in ")]}"):
        raw = strip_prompt_weight(raw)
    return raw


#: A raw Danbooru post's own ``rating`` field (g/s/q/e) -> the rating word the extractor reads.
_RATING_FIELD_VALUES = {"g": "general", "general": "general", "safe": "general", "s": "sensitive", "sensitive": "sensitive",
                        "q": "questionable", "questionable": "questionable", "e": "explicit", "explicit": "explicit"}


def with_rating(text: Optional[str], rating: Any) -> Optional[str]:
    """Fold a post's separate rating field into its caption as a rating tag.

    Raw Danbooru ``tag_string``s carry no rating word; the safety rule needs the
    rating, so it travels inside the text every backend reads (``rating:explicit``
    for space-separated tags, a trailing ``explicit`` item for comma lists).
    Unknown values are ignored. Used by the source readers and ``Engine.extract_text``.
    """
    if text is None or not isinstance(rating, str):
        return text
    word = _RATING_FIELD_VALUES.get(rating.strip().lower())
    if word is None:
        return text
    return f"{text}, {word}" if "," in text else f"{text} rating:{word}"
