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
from typing import Any

_WEIGHT_RE = re.compile(r":\s*-?\d+(?:\.\d+)?\s*$")
#: What ``looks_like_prose`` calls items: the pieces between commas / newlines (``_item_shape`` counts them without it).
_SPLIT_RE = re.compile(r"\s*[,\n]\s*")
#: Function words whose presence hints at sentences (``looks_like_prose``), matched as whole words in any case.
_PROSE_HINT_WORDS = (
    "a",
    "an",
    "the",
    "with",
    "wearing",
    "in",
    "of",
    "and",
    "her",
    "his",
    "she",
    "he",
    "is",
    "who",
    "their",
    "on",
    "at",
    "to",
    "while",
    "has",
)
_PROSE_HINT_RE = re.compile(r"\b(" + "|".join(_PROSE_HINT_WORDS) + r")\b", re.I)
#: ``_hint_count``'s ASCII path: the hint words as bytes, and a table that lower-cases ASCII letters and
#: turns every byte that is not a word character (``\w``: ``[A-Za-z0-9_]`` in ASCII) into a space.
_HINT_WORDS = frozenset(_PROSE_HINT_WORDS)
_HINT_BYTES = frozenset(w.encode("ascii") for w in _PROSE_HINT_WORDS)
_WORD_BYTES = bytes(b if chr(b).isalnum() or b == ord("_") else ord(" ") for b in range(128)).lower() + b" " * 128
#: ``_hint_count``'s other path: the word runs ``\b`` sees, and one hint word as a whole run.
_WORD_RUN_RE = re.compile(r"\w+")
_HINT_RUN_RE = re.compile(r"(?:" + "|".join(_PROSE_HINT_WORDS) + r")", re.I)
_RATING_PREFIX = "rating:"
#: Extra-network tokens of A1111 / ComfyUI prompts (``<lora:name:0.8>``, ``<hypernet:x:1>``): never evidence.
_NETWORK_RE = re.compile(r"<\s*(?:lora|lyco|locon|lycoris|hypernet|hypernetwork|embedding|ti)\s*:[^>]*>", re.I)
#: A1111's prompt keywords: ``BREAK`` starts a new chunk, ``AND`` composes prompts (upper case only, as A1111 reads them).
_KEYWORD_RE = re.compile(r"\s*\b(?:BREAK|AND)\b\s*")
_UNESCAPED_GROUP_RE = re.compile(r"(?<!\\)[()\[\]{}]")
#: ``name (qualifier)`` - one item, not two terms (``hatsune miku (cosplay)``, ``kaga \(kancolle\)``).
_QUALIFIED_NAME_RE = re.compile(r"^[^()\[\]{}]+\([^()\[\]{}]+\)(?:\s*\([^()\[\]{}]+\))*$")
#: Generation text: the negative prompt's label, and the parameter line (``Steps: 28, Sampler: ...``).
_NEGATIVE_RE = re.compile(r"(?:^|(?<=[\n,.]))\s*(?:negative prompt|undesired content)\s*:", re.I)
_PARAMETERS_RE = re.compile(
    r"(?:^|(?<=[\n,.]))\s*steps\s*:\s*\d+\s*,\s*(?:sampler|cfg scale|seed|size|schedule type|model)\s*:", re.I
)


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
    """Heuristic: several function words per item means sentences, not tags.

    The items are those of ``_SPLIT_RE.split`` (empty ones left out), the hints
    ``_PROSE_HINT_RE``'s matches. Cheap tests decide most texts first: under two
    hints is never prose, and a text with at least as many hints as it has
    comma / newline pieces (never fewer than its items) always is.
    """
    hints = _hint_count(text)
    if hints < 2:
        return False
    if hints >= text.count(",") + text.count("\n") + 1:
        return True  # hints >= 2 means a word, so at least one item
    n_items, long_items = _item_shape(text)
    return long_items * 3 >= n_items or hints >= n_items


def _hint_count(text: str) -> int:
    r"""``len(_PROSE_HINT_RE.findall(text))`` without its slow scan (~1 us instead of ~6 on prose).

    ``\b`` on both sides makes every match a whole ``\w`` run, so the count is
    the runs that are hint words. In ASCII, runs are a ``bytes.split`` after one
    ``translate`` and case-insensitive means lower-cased; other texts take the
    runs from ``_WORD_RUN_RE`` and test the non-ASCII ones with the regex itself
    (its case folding: ``ſ`` is an ``s``, ``ı`` and ``İ`` are ``i``).
    """
    if text.isascii():
        return sum(map(_HINT_BYTES.__contains__, text.encode("ascii").translate(_WORD_BYTES).split()))
    hints = 0
    for run in _WORD_RUN_RE.findall(text):
        if run.lower() in _HINT_WORDS if run.isascii() else _HINT_RUN_RE.fullmatch(run) is not None:
            hints += 1
    return hints


def _item_shape(text: str) -> tuple[int, int]:
    r"""How many items ``_SPLIT_RE.split(text)`` gives (empty ones left out), and how many hold three spaces or more.

    The same pieces by ``str.split``: each separator match is one comma or
    newline with all the whitespace around it, so an inner piece loses its
    whitespace on both sides, the first piece only on its right and the last
    only on its left (``str.strip`` and ``\s`` agree on what whitespace is).
    """
    pieces = (text.replace("\n", ",") if "\n" in text else text).split(",")
    if len(pieces) > 1:
        pieces = [pieces[0].rstrip(), *map(str.strip, pieces[1:-1]), pieces[-1].lstrip()]
    n_items = len(pieces) - pieces.count("")
    return n_items, sum(1 for t in pieces if t.count(" ") >= 3)


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


def split_generation(text: str) -> tuple[str, str | None, str | None]:
    """A1111 / ComfyUI / NovelAI generation text -> (prompt, negative prompt, parameters).

    ``Negative prompt:`` (NovelAI: ``Undesired content:``) and the parameter line
    (``Steps: 28, Sampler: Euler a, CFG scale: 7, Seed: 1``) are never evidence
    (contract section 5): a ``2girls`` in the negative prompt is not two characters.
    They are returned so the rich record can keep them. Texts without a colon skip
    every search (tag captions: one ``in`` test).
    """
    if ":" not in text:
        return text, None, None
    low = text.lower()
    if "negative" not in low and "undesired" not in low and "steps" not in low:
        return text, None, None  # most captions: three substring tests instead of two regex scans
    params_at = neg_at = -1
    m = _PARAMETERS_RE.search(text)
    if m is not None:
        params_at = m.start()
    n = _NEGATIVE_RE.search(text, 0, params_at if params_at >= 0 else len(text))
    if n is not None:
        neg_at = n.start()
    if params_at < 0 and neg_at < 0:
        return text, None, None
    end = neg_at if neg_at >= 0 else params_at
    prompt = text[:end].rstrip(" \t\n,.")
    negative = None
    if n is not None:
        negative = text[n.end() : params_at if params_at >= 0 else len(text)].strip(" \t\n,") or None
    parameters = text[params_at:].strip(" \t\n,") if params_at >= 0 else None
    return prompt, negative, parameters


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
            return ParsedCaption("tags", [], item_terms(text))  # one tag: "male focus"; "(child:1.1) (nude:1.2)"
        return ParsedCaption("prose", [], [text])
    items = None
    # A rating item ("rating: general") is, lower-cased, a piece of the lower-cased text (items are
    # trimmed, never rewritten inside): texts without "rating:" (prose with a colon) skip the split.
    if ":" in text and _RATING_PREFIX in text.lower():
        items = _items(text)
        for i, item in enumerate(items):
            if is_rating_item(item):
                if _plain_header(text):
                    return ParsedCaption("v30", items[:i], items[i:])
                break  # a weighted rating term or weighted items before it: a prompt list
    if looks_like_prose(text):
        return ParsedCaption("prose", [], [text])
    return ParsedCaption("tags", [], _items(text) if items is None else items)


def uses_prompt_syntax(text: str) -> bool:
    """An unescaped bracket or an extra-network token: prompt syntax, never a v3.0 header's.

    Substring counts instead of ``_UNESCAPED_GROUP_RE.search`` (a lookbehind scan costs ~14 us
    on a caption, these ~1 us): a ``(`` is unescaped when there are more of them than ``\\(``."""
    if "[" in text or "]" in text or "{" in text or "}" in text or "<" in text:
        return True
    n = text.count("(")
    if n and n != text.count("\\("):
        return True
    n = text.count(")")
    return bool(n) and n != text.count("\\)")


def _may_hold_terms(piece: str) -> bool:
    """A comma piece ``item_terms`` may split (others are only trimmed)."""
    return "(" in piece or ")" in piece or "BREAK" in piece or "AND" in piece or uses_prompt_syntax(piece)


def _plain_header(text: str) -> bool:
    """Whether a v3.0 caption's header and rating item (the text up to the first ``rating:``'s
    comma item) are free of prompt syntax: a weighted or bracketed term there means the
    ``rating:`` token sits in a prompt list, and the items before it are tags, not names."""
    at = text.lower().find(_RATING_PREFIX)
    end = text.find(",", at)
    head = text if end < 0 else text[:end]
    return not uses_prompt_syntax(head)


def _items(text: str) -> list[str]:
    if "\n" in text:
        text = text.replace("\n", ",")
    if "BREAK" in text or "AND" in text or uses_prompt_syntax(text):
        out: list[str] = []
        for piece in text.split(","):
            if not _may_hold_terms(piece):
                piece = piece.strip()
                if piece:
                    out.append(piece)
            else:
                out.extend(item_terms(piece))
        return out
    # ``clean_item`` inlined: only a piece that starts or ends with a bracket can hold a weight,
    # the rest are just trimmed (no Python call per item: ~2 us a caption of 20 tags)
    items = [
        s if not (s[0] in "([{" or s[-1] in ")]}") else strip_prompt_weight(s)
        for s in map(str.strip, text.split(","))
        if s
    ]
    return items if "" not in items else [item for item in items if item]


def item_terms(raw: str) -> list[str]:
    """One comma slot as the terms it holds, each read like an item.

    Most slots are one term (``clean_item``). Weighted groups inside a slot are unwrapped
    into one phrase (``(petite:1.1) (loli:0.9) girl`` -> ``petite loli girl``; ``((loli:1.2)
    nude)`` -> ``loli nude``); ``BREAK`` / ``AND`` split a slot (``child BREAK nude`` ->
    ``child``, ``nude``). Extra-network tokens (``<lora:name:0.8>``) are dropped.
    ``name (qualifier)`` stays one item.
    """
    if "<" in raw:
        raw = _NETWORK_RE.sub(" ", raw)
    if "BREAK" in raw or "AND" in raw:
        parts = _KEYWORD_RE.split(raw)
        if len(parts) > 1:
            return [t for part in parts for t in item_terms(part)]
    item = clean_item(raw)
    if not item:
        return []
    if not uses_prompt_syntax(item) or _is_qualified_name(item):
        return [item]
    return _group_terms(raw)


def _is_qualified_name(item: str) -> bool:
    if _QUALIFIED_NAME_RE.match(item) is None:
        return False
    return _WEIGHT_RE.search(item.rstrip(")").strip()) is None  # ``(loli:1.2)`` inside is a weight


def _group_terms(raw: str) -> list[str]:
    """The slot's text with brackets and weights removed, as one phrase (``(auburn:1.2) wavy hair``
    -> ``auburn wavy hair``): an adjective keeps its noun, and the safety scanner reads every word
    of the phrase (``(petite:1.1) (loli:0.9) girl`` -> ``petite loli girl``)."""
    terms = []
    for run in _UNESCAPED_GROUP_RE.split(raw):
        run = run.strip()
        if ":" in run:
            run = _WEIGHT_RE.sub("", run).strip()
        if run:
            terms.append(run)
    return [" ".join(terms)] if terms else []


def clean_item(raw: str) -> str:
    """One comma-separated item as read: trimmed, prompt weights / brackets removed ("" = no item)."""
    raw = raw.strip()
    if raw and (raw[0] in "([{" or raw[-1] in ")]}"):
        raw = strip_prompt_weight(raw)
    return raw


#: A raw Danbooru post's own ``rating`` field (g/s/q/e) -> the rating word the extractor reads.
_RATING_FIELD_VALUES = {
    "g": "general",
    "general": "general",
    "safe": "general",
    "s": "sensitive",
    "sensitive": "sensitive",
    "q": "questionable",
    "questionable": "questionable",
    "e": "explicit",
    "explicit": "explicit",
}


def with_rating(text: str | None, rating: Any) -> str | None:
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
