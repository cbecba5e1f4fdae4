"""Vectorised reading of ordered-tag captions: Arrow splits, one Python call per distinct item.

``split_caption`` + ``TextExtractor._header_units`` + the item loop, restated over
whole batches: captions are split with Arrow kernels, every distinct item of the
batch is looked up once (``ItemTable``), and the header's name rules become array
operations. The result is a flat array of *units* - (row, position, group or name
list, tag) - that ``charmeta.extractors.columnar`` groups and resolves.

Rows this module cannot read exactly like the per-entry path are left out and
go that way instead: prose, prompt-style lists, newlines, a second ``|||``,
captions over ``MAX_FAST_CHARS``, raw tag strings with non-ASCII text (Python's
``str.split`` and Arrow's split differ on exotic whitespace), and headers whose
count tags also name a character.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from charmeta.extractors.base import TagReader
from charmeta.ontology import EXCLUDE, LIST, MINOR, SEXUAL
from charmeta.parsing import clean_item, has_prose_hint, is_rating_item, item_terms, uses_prompt_syntax

#: Longer captions (in UTF-8 bytes) take the per-entry path (where ``guard_text`` counts their tags).
MAX_FAST_CHARS = 2_000
#: Distinct items remembered (per worker) before the tables start over.
MAX_ITEMS = 400_000
#: Stands for ``|||`` after the split (NUL never reaches here: ``guard_text`` rejects it). Two
#: characters, so that ``,MARK,`` is one byte longer than ``|||``: a caption's count of ``|||``
#: is then its growth in bytes when every ``|||`` is replaced (one kernel, no substring scans).
MARK = "\x00\x00"
#: Group ids of dress and safety units (``columnar.G_DRESS`` / ``G_SAFETY``) and the name lists' slots.
_G_DRESS, _G_SAFETY = 1, 3
#: ``ItemTable.tag_rank`` of a tag without a garment (above every real rank).
NO_GARMENT = 1 << 40
NAME_SLOTS = (-1, -2, -3)  # characters, copyrights, artists
#: Tag ids of a batch's plain items (``ItemTable.codes``) start here, above every remembered tag id.
BATCH_TAG = 1 << 32

# Per-item flags.
EMPTY, IS_MARK, RATING, FULL, FULL_NAMES, IS_CHAR, IS_COPY, SAFETY = (1 << i for i in range(8))
# Items whose row the per-entry path reads: ENTRY - the slot holds several terms, an extra-network token,
# ``BREAK`` / ``AND`` or generation text (``parsing.item_terms``, ``split_generation``); WEIGHTED - prompt
# syntax (a v3.0 header or rating item holding one is a prompt list); APPEAR - an appearance tag (read as a
# tag when it stands in a header, ``TextExtractor._header_units``).
ENTRY, WEIGHTED, APPEAR = (1 << i for i in range(8, 11))
#: Raw items that are never *plain* (``ItemTable._plain_items``): brackets, escapes, control characters,
#: doubled spaces / underscores, extra-network tokens, A1111 keywords, generation-text labels.
_NOT_PLAIN_RE = r"[\\\[\](){}<\x00-\x1f]|[ _]{2}|\bBREAK\b|\bAND\b|(?i:negative prompt|undesired content|steps\s*:)"
_GENERATION_RE = re.compile(r"negative prompt\s*:|undesired content\s*:|^\s*steps\s*:", re.I)


@dataclass
class Units:
    """One batch's units, in no particular order (``columnar`` sorts them)."""

    row: np.ndarray  # batch row
    pos: np.ndarray  # item position in the caption
    sub: np.ndarray  # order among the units of one item
    slot: np.ndarray  # group id (>= 0) or name list (-1 characters, -2 copyrights, -3 artists)
    tag: np.ndarray  # tag id (``ItemTable.tags``)
    unit: np.ndarray  # index into the table's unit arrays (its list values); -1 for header name units
    fast: np.ndarray  # bool per batch row: read here (else: per-entry path)


class UnitPlanner(Protocol):
    """What ``ItemTable`` asks of the columnar path that owns it (``columnar.ColumnarTagPath``):
    the tag reader, how a tag's hits become units, and the tables built from the ontology.
    A protocol, so this module never imports the path (which imports this module)."""

    ex: TagReader
    vocab: Vocabulary
    scan_regex: str
    garment_forms: list[frozenset[str]]
    list_groups: dict[int, str]

    def units_of(self, hits: tuple, t: str) -> tuple[tuple[int, str], ...]:
        """``(slot, tag)`` per group / name list that applying ``hits`` of ``t`` touches."""
        ...

    def dress_tag(self, t: str) -> tuple:
        """(nude?, primary garment entry, colour forms, has a dress style?) of one dress tag."""
        ...


class _Column:
    """An int64 column grown by Python appends, read as numpy: only the values appended
    since the last read are converted (a full ``np.array(list)`` per batch would cost
    O(table size) each time)."""

    __slots__ = ("arr", "n", "pending")

    def __init__(self) -> None:
        self.arr = np.zeros(1024, np.int64)
        self.n = 0
        self.pending: list[int] = []

    def __len__(self) -> int:
        return self.n + len(self.pending)

    def array(self) -> np.ndarray:
        if self.pending:
            need = self.n + len(self.pending)
            if need > len(self.arr):
                self.arr = np.concatenate([self.arr, np.zeros(max(need, 2 * len(self.arr)) - len(self.arr), np.int64)])
            self.arr[self.n : need] = self.pending
            self.n = need
            self.pending = []
        return self.arr[: self.n]


_COLUMNS = ("flags", "item_tag", "ustart", "ucount", "u_slot", "u_tag", "u_vstart", "u_vcount", "v_val")


class ItemTable:
    """Distinct items -> codes, and what each code contributes (flags, units, tag id).

    Items the ontology knows (or that need the per-item reader) are remembered
    across batches (captions repeat the same few thousand tags), held in
    ``_Column``s and cleared past ``MAX_ITEMS`` so memory stays bounded. *Plain*
    items (``_plain_items``: unknown to the ontology's index, mostly names, often
    seen once) are not: each batch codes them again with array operations, which
    costs less than a Python dict entry and an interned tag per name. Their codes
    follow the remembered ones and their tag ids start at ``BATCH_TAG``; both are
    valid until the next ``begin_batch``.
    """

    def __init__(self, path: UnitPlanner) -> None:
        self.path = path
        self.reset()

    def reset(self) -> None:
        self.comma: dict[str, int] = {}  # raw comma-separated item (spaces included) -> code
        self.token: dict[str, int] = {}  # raw Danbooru token -> code
        self.tag_ids: dict[str, int] = {}
        self.tags: list[str] = []
        # per code: flags, tag id, first unit, unit count; per unit: slot, tag id, its list values
        for name in _COLUMNS:
            setattr(self, name, _Column())
        self.values: list[str] = []  # list-attribute values (``v_val`` holds their ids)
        self.value_ids: dict[str, int] = {}
        # dress: per tag seen in a dress unit, what DressResolver reads of it (``UnitPlanner.dress_tag``):
        # tag id -> (nude, primary garment rank as one int or NO_GARMENT, garment index, style)
        self.dress: dict[int, tuple[int, int, int, int]] = {}
        self.colour_pairs: list[int] = []  # tag * n_garments + garment: the tag's colour names that garment
        self._dress_arrays: tuple = ((-1, -1), {})  # ((tags, colour pairs) when built, arrays)
        # The code of every plain Danbooru token: no units (a raw tag string has no header, so a
        # token's flags and tag are never read).
        self.no_units = len(self.flags)
        for name, value in (("flags", 0), ("item_tag", -1), ("ustart", 0), ("ucount", 0)):
            getattr(self, name).pending.append(value)
        self.begin_batch()

    def begin_batch(self) -> None:
        """Forget the previous batch's plain items (their codes and tag ids were valid for it only)."""
        self.batch_flags = np.zeros(0, np.int64)  # per batch code, after the remembered codes
        self.batch_tags: pa.Array = pa.array([], pa.string())  # tag id BATCH_TAG + i is batch_tags[i]
        self._batch_first = -1  # the first batch code, once one is given

    def arrays(self) -> dict[str, np.ndarray]:
        """The columns as numpy arrays (this batch's plain items after the remembered ones),
        plus dense per-tag dress arrays."""
        out = {name: getattr(self, name).array() for name in _COLUMNS}
        k = len(self.batch_flags)
        if k:
            out["flags"] = np.concatenate([out["flags"], self.batch_flags])
            out["item_tag"] = np.concatenate([out["item_tag"], np.arange(BATCH_TAG, BATCH_TAG + k, dtype=np.int64)])
            out["ustart"] = np.concatenate([out["ustart"], np.zeros(k, np.int64)])
            out["ucount"] = np.concatenate([out["ucount"], np.zeros(k, np.int64)])
        sizes, dense = self._dress_arrays
        if sizes != (len(self.tags), len(self.colour_pairs)):  # pairs are added once per tag
            n = len(self.tags)
            dense = {
                "tag_nude": np.zeros(n, np.int64),
                "tag_rank": np.full(n, NO_GARMENT, np.int64),
                "tag_garment": np.full(n, -1, np.int64),
                "tag_style": np.zeros(n, np.int64),
            }
            if self.dress:
                ids = np.fromiter(self.dress, np.int64, len(self.dress))
                info = np.array(list(self.dress.values()), np.int64)
                for j, name in enumerate(("tag_nude", "tag_rank", "tag_garment", "tag_style")):
                    dense[name][ids] = info[:, j]
            dense["colour_pairs"] = np.unique(np.array(self.colour_pairs, np.int64))
            dense["n_garments"] = np.array(len(self.path.garment_forms))
            self._dress_arrays = ((n, len(self.colour_pairs)), dense)
        out.update(dense)
        return out

    def tag_id(self, t: str) -> int:
        return _intern(self.tag_ids, self.tags, t)

    def _value_id(self, v: str) -> int:
        return _intern(self.value_ids, self.values, v)

    def _read_dress(self, tag: int) -> None:
        """Record what DressResolver reads of a tag seen in a dress unit (once per tag)."""
        if tag in self.dress:
            return
        nude, best, forms, style = self.path.dress_tag(self.tags[tag])
        rank, garment = NO_GARMENT, -1
        if best is not None:
            tier, index = best[0]
            rank, garment = tier * 1_000_000 + index, best[1]
        self.dress[tag] = (int(nude), rank, garment, int(style))
        n_garments = len(self.path.garment_forms)
        for gi, garment_forms in enumerate(self.path.garment_forms):
            if forms and not forms.isdisjoint(garment_forms):
                self.colour_pairs.append(tag * n_garments + gi)

    def _new(self, item: str, comma: bool, extra: int = 0) -> int:
        """Code a new item: its tag, units (``TextExtractor`` item cache) and header flags."""
        if self._batch_first >= 0:  # batch codes follow the remembered ones: none may come after them
            raise RuntimeError("an item was remembered after this batch's plain items were coded")
        flags = extra
        tag = -1
        u_slot = self.u_slot.pending
        self.ustart.pending.append(len(self.u_slot))
        units: tuple = ()
        if item == MARK:
            flags = IS_MARK
        elif not item:
            flags = EMPTY
        else:
            ex = self.path.ex
            t, hits, scanned = ex.read_item(item)
            if hits is None:
                hits = scanned  # safety markers in an unknown item's words (``TagReader.read_item``)
            units = self.path.units_of(hits, t) if hits else ()
            tag = self.tag_id(t)
            if comma and is_rating_item(item):
                flags |= RATING
            if hits is not None and (not hits or t in ex.header_tags):
                flags |= FULL  # a count / solo / rating tag: applies in full in a header
                if any(slot < 0 for slot, _ in units):
                    flags |= FULL_NAMES
            is_character, is_copyright = ex.ont.is_character(t), ex.ont.is_copyright(t)
            flags |= (IS_CHAR if is_character else 0) | (IS_COPY if is_copyright else 0)
            if hits and not (is_character or is_copyright) and any(h.kind in (EXCLUDE, MINOR, SEXUAL) for h in hits):
                flags |= SAFETY  # an unknown name in a header still applies its safety hits
            if comma and ex.is_appearance(item):
                flags |= APPEAR
            list_keys = self.path.list_groups
            for slot, _ in units:
                u_slot.append(slot)
                self.u_tag.pending.append(tag)
                start = len(self.v_val)
                self.u_vstart.pending.append(start)
                key = list_keys.get(slot)
                if key is not None:  # ListResolver reads the values of the tag's list hits, in order
                    self.v_val.pending.extend(self._value_id(h.value) for h in hits if h.kind is LIST and h.key == key)
                self.u_vcount.pending.append(len(self.v_val) - start)
                if slot == _G_DRESS:
                    self._read_dress(tag)
        self.ucount.pending.append(len(units))
        self.flags.pending.append(flags)
        self.item_tag.pending.append(tag)
        return len(self.flags) - 1

    def full(self) -> bool:
        """Past ``MAX_ITEMS``: the owner starts over (between batches: codes index its results)."""
        return len(self.flags) > MAX_ITEMS

    def codes(self, items: pa.Array, comma: bool) -> np.ndarray:
        """Codes of an array of raw items, for ``arrays()`` until the next ``begin_batch``:
        plain items coded with array operations, the others by one dict lookup per
        *distinct* item. Comma items must be coded last (after every token)."""
        enc = pc.dictionary_encode(items)
        distinct = enc.dictionary
        plain, tags, flags = self._plain_items(distinct, comma)
        code = np.empty(len(distinct), np.int64)
        known = np.flatnonzero(~plain)
        if len(known):
            code[known] = self._known_codes(distinct.take(pa.array(known)).to_pylist(), comma)
        at = np.flatnonzero(plain)
        if len(at):
            code[at] = self._batch_codes(tags.take(pa.array(at)), flags[at]) if comma else self.no_units
        return code[enc.indices.to_numpy(zero_copy_only=False)]

    def _known_codes(self, raws: list[str], comma: bool) -> list[int]:
        """Codes of items that are not plain: remembered, new ones coded by ``_new``."""
        table = self.comma if comma else self.token
        found = [table.get(r) for r in raws]
        for k, code in enumerate(found):
            if code is None:
                raw = raws[k]
                if comma and raw != MARK:
                    item = clean_item(raw)
                    extra = 0
                    if _GENERATION_RE.search(raw) or item_terms(raw) != ([item] if item else []):
                        extra |= ENTRY
                    if uses_prompt_syntax(raw):
                        extra |= WEIGHTED
                    found[k] = table[raw] = self._new(item, comma, extra)
                else:
                    found[k] = table[raw] = self._new(raw, comma)
        return found

    def _plain_items(self, raw: pa.Array, comma: bool) -> tuple[np.ndarray, pa.Array, np.ndarray]:
        """Which raw items are plain - ASCII, no brackets / backslashes / double spaces,
        not a rating item, and unknown to the ontology's index (so: no hits, no units) - with
        their normalised tags (``clean_item`` + ``normalize_tag`` as array operations, exact
        for such items) and header flags (known character / copyright name).

        The tests may call an item that is plain "not plain" (it then takes the exact
        per-item path), never the reverse; that lets them stay cheap: byte lengths (the
        same as character lengths for the ASCII items that can be plain), and one regex
        for the characters plain items lack and for two spaces / underscores in a row
        (the only way the normalised tag can hold a double space)."""
        item = pc.ascii_trim_whitespace(raw) if comma else raw
        plain = pc.and_(pc.string_is_ascii(raw), pc.greater(pc.binary_length(item), 0))
        plain = pc.and_(plain, pc.invert(pc.match_substring_regex(raw, _NOT_PLAIN_RE)))
        t = pc.ascii_lower(item)
        t = pc.if_else(pc.greater(pc.binary_length(t), 3), pc.replace_substring(t, "_", " "), t)
        plain = pc.and_(plain, pc.invert(pc.starts_with(t, "rating:")))
        # words the safety scanner may find something in: the exact per-item reader decides
        plain = pc.and_(plain, pc.invert(pc.match_substring_regex(t, self.path.scan_regex)))
        vocab = self.path.vocab
        at = pc.fill_null(pc.index_in(t, value_set=vocab.names), -1).to_numpy(zero_copy_only=False)
        seen = at >= 0
        flags = np.where(seen, vocab.flags[at], 0)
        in_index = seen & vocab.in_index[at]  # has ontology hits (or an empty entry): the full path
        return plain.to_numpy(zero_copy_only=False) & ~in_index, t, flags

    def _batch_codes(self, tags: pa.Array, flags: np.ndarray) -> np.ndarray:
        """Code plain items (see ``_plain_items``) for this batch: header flags, no units, tag
        ids ``BATCH_TAG`` + their index in ``batch_tags``. Returns their codes."""
        if self._batch_first < 0:
            self._batch_first = len(self.flags)
        first = self._batch_first + len(self.batch_flags)
        self.batch_flags = np.concatenate([self.batch_flags, flags.astype(np.int64)])
        self.batch_tags = pa.concat_arrays([self.batch_tags, tags.cast(pa.string())])
        return np.arange(first, first + len(flags), dtype=np.int64)

    def tag_strings(self, tag: np.ndarray) -> tuple[np.ndarray, pa.Array]:
        """Tag ids (remembered or this batch's) -> one id per distinct *string*, and those strings.

        A remembered tag and a batch tag may spell the same name (``a\\ b`` and ``a b``):
        name lists keep each string once, as ``dict.fromkeys`` does per entry."""
        tags = self.tags
        # batch tag ids follow the remembered ones: one dense id space, distinct ids by counting
        dense = np.where(tag >= BATCH_TAG, tag - (BATCH_TAG - len(tags)), tag)
        distinct, inverse = dense_unique(dense, len(tags) + len(self.batch_tags))
        batch = distinct >= len(tags)
        strings = pa.concat_arrays(
            [
                pa.array([tags[i] for i in distinct[~batch].tolist()], pa.string()),
                self.batch_tags.take(pa.array(distinct[batch] - len(tags))),
            ]
        )
        enc = pc.dictionary_encode(strings)
        ids = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        return ids[inverse], enc.dictionary


def _intern(ids: dict[str, int], strings: list[str], s: str) -> int:
    """The id of ``s`` in ``strings`` (appended on first sight)."""
    i = ids.get(s)
    if i is None:
        i = ids[s] = len(strings)
        strings.append(s)
    return i


class Vocabulary:
    """Every tag the ontology's index knows plus known character / copyright names, as an
    Arrow array for ``index_in``, with per-name header flags and index membership."""

    def __init__(self, ontology: Any) -> None:
        names = sorted(set(ontology.frozen) | set(ontology._wd_characters) | set(ontology.copyrights))
        self.names = pa.array(names, pa.string())
        self.in_index = np.array([n in ontology.frozen for n in names], bool)
        self.flags = np.array(
            [
                (IS_CHAR if ontology.is_character(n) else 0) | (IS_COPY if ontology.is_copyright(n) else 0)
                for n in names
            ],
            np.int64,
        )


def read_units(texts: pa.StringArray, items: ItemTable) -> Units:
    """Split and code a batch of captions into units (see module docstring).

    Steps: which rows may be read here and how (``_row_kinds``); raw Danbooru tag strings
    as whitespace tokens (``_token_items``); comma captions split at commas
    (``_comma_items``, coded last: see ``ItemTable.codes``); each comma caption's header /
    body boundary and the rows the per-entry path must read instead (``_comma_rows``); the
    units of the items that apply in full, then the header's name units (``_header_names``).
    """
    n = len(texts)
    items.begin_batch()
    kinds = _row_kinds(texts)
    tokens = _token_items(texts, kinds.token_rows, items)
    comma = _comma_items(kinds.marked, kinds.comma_rows, items)
    arr = items.arrays()
    ustart, ucount, u_slot, u_tag = arr["ustart"], arr["ucount"], arr["u_slot"], arr["u_tag"]
    c_flags = arr["flags"][comma.codes]
    comma_fast, header = _comma_rows(kinds.comma_rows, comma, c_flags, kinds.n_marks)
    fast = np.zeros(n, bool)
    fast[tokens.idx[tokens.danbooru]] = True
    fast |= comma_fast
    c_keep = comma_fast[comma.row] & ((c_flags & (EMPTY | IS_MARK)) == 0)
    # items whose units apply in full: bodies, and count / rating tags of headers
    full = c_keep & (~header | ((c_flags & FULL) != 0))
    t_units = take_where(tokens.danbooru[tokens.parent], tokens.codes, tokens.parent, tokens.pos)
    parts = [
        _expand(*take_where(full, comma.codes, comma.row, comma.pos), ustart, ucount, u_slot, u_tag),
        _expand(t_units[0], tokens.idx[t_units[1]], t_units[2], ustart, ucount, u_slot, u_tag),
    ]
    named = np.flatnonzero(c_keep & header & ((c_flags & FULL) == 0))
    if len(named):
        parts.extend(_header_names(comma, c_flags, arr["item_tag"], named))
    row, pos, sub, slot, tag, unit = (np.concatenate([p[i] for p in parts]) for i in range(6))
    return Units(row, pos, sub, slot, tag, unit, fast)


class _RowKinds(NamedTuple):
    """``_row_kinds``: the texts with ``|||`` marked, their ``|||`` counts, and the rows read as
    comma captions / as raw tag strings (the rest: the per-entry path)."""

    marked: pa.StringArray
    n_marks: np.ndarray
    comma_rows: np.ndarray
    token_rows: np.ndarray


def _row_kinds(texts: pa.StringArray) -> _RowKinds:
    """Rows short enough and free of odd characters, split into comma captions that may hold a
    header / body boundary and comma-less ASCII rows (raw tag strings)."""
    # bytes <= MAX_FAST_CHARS implies chars <= it (O(1) per row). Blank / whitespace-only rows
    # need no test: without ',' or '|||' they have no tokens, so they are never read here.
    odd, ascii_ = _character_classes(texts)
    ok = _bool(pc.less_equal(pc.binary_length(texts), MAX_FAST_CHARS)) & ~odd
    marked, n_marks = _mark_sections(texts)
    # a ',' or a '|||'; RE2 finds a one-character literal ~3x faster than match_substring
    has_comma = _bool(pc.match_substring_regex(marked, ","))
    comma_rows = ok & has_comma & _may_have_boundary(texts, ok & has_comma, n_marks)
    return _RowKinds(marked, n_marks, comma_rows, ok & ~has_comma & ascii_)


class _TokenItems(NamedTuple):
    """``_token_items``: the raw-tag-string rows (``idx``), their tokens' codes, parent row (among
    ``idx``) and position, and which of those rows are read here (``danbooru``)."""

    idx: np.ndarray
    codes: np.ndarray
    parent: np.ndarray
    pos: np.ndarray
    danbooru: np.ndarray


def _token_items(texts: pa.StringArray, token_rows: np.ndarray, items: ItemTable) -> _TokenItems:
    """Raw Danbooru tag strings: whitespace tokens, no header. Rows of words without
    underscores are joined into known runs and scanned per entry (``TextExtractor.extract``),
    so only rows holding an ``_`` are read here."""
    t_idx = np.flatnonzero(token_rows)
    t_text = texts.take(pa.array(t_idx))
    t_lists = pc.ascii_split_whitespace(t_text)
    t_flat = pc.list_flatten(t_lists)
    t_parent = pc.list_parent_indices(t_lists).to_numpy()
    keep = pc.greater(pc.binary_length(t_flat), 0).to_numpy(zero_copy_only=False)  # ASCII rows only
    t_flat = t_flat.filter(pa.array(keep))
    t_parent = t_parent[keep]
    n_tokens = np.bincount(t_parent, minlength=len(t_idx))
    underscore = pc.match_substring(t_text, "_").to_numpy(zero_copy_only=False)
    maybe = np.flatnonzero(~underscore & (n_tokens > 3))
    plain = np.zeros(len(t_idx), bool)
    if len(maybe):
        candidates = t_text.take(pa.array(maybe)).to_pylist()
        plain[maybe] = [not has_prose_hint(s) for s in candidates]
    danbooru = (n_tokens > 1) & (underscore | plain)  # as parsing.danbooru_tokens decides
    t_codes = items.codes(t_flat, comma=False)
    t_first = np.concatenate([[0], np.cumsum(n_tokens)[:-1]]) if len(t_idx) else np.zeros(0, np.int64)
    t_pos = np.arange(len(t_codes), dtype=np.int64) - t_first[t_parent] if len(t_codes) else np.zeros(0, np.int64)
    return _TokenItems(t_idx, t_codes, t_parent, t_pos, danbooru & underscore)


class _CommaItems(NamedTuple):
    """``_comma_items``: every comma item's code, batch row and position in its caption."""

    codes: np.ndarray
    row: np.ndarray
    pos: np.ndarray


def _comma_items(marked: pa.StringArray, comma_rows: np.ndarray, items: ItemTable) -> _CommaItems:
    """Comma captions (v3.1 / v3.0): '|||' is an item of its own (``_mark_sections``), then one
    split. Coded after the tokens: their plain items get this batch's codes, which follow every
    remembered one."""
    c_lists = pc.split_pattern(_null_except(marked, comma_rows), ",")
    c_codes = items.codes(pc.list_flatten(c_lists), comma=True)
    c_row = pc.list_parent_indices(c_lists).to_numpy()
    c_pos = np.arange(len(c_codes), dtype=np.int64) - c_lists.offsets.to_numpy()[c_row]
    return _CommaItems(c_codes, c_row, c_pos)


def _comma_rows(
    comma_rows: np.ndarray, comma: _CommaItems, c_flags: np.ndarray, n_marks: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Which comma captions are read here, and which of their items stand in a header.

    The header / body boundary per row is the '|||' item (v3.1), else the first rating item
    (v3.0); a row with neither is a prompt list or prose. The per-entry path reads: a second
    '|||'; headers whose count tags also carry a name hit; several terms in a slot or
    generation text anywhere; an appearance tag in a header; prompt syntax up to a v3.0
    caption's rating item (then it is a prompt list)."""
    n = len(comma_rows)
    c_row, c_pos = comma.row, comma.pos
    boundary = np.full(n, -1, np.int64)
    marks = np.flatnonzero(c_flags & IS_MARK)
    boundary[c_row[marks]] = c_pos[marks]
    is_v31 = np.zeros(n, bool)
    is_v31[c_row[marks]] = True
    ratings = np.flatnonzero((c_flags & RATING) != 0)
    if len(ratings):
        r_rows = c_row[ratings]
        first = run_starts(r_rows)  # flat order is row-major: first per row
        first_rows = r_rows[first]
        v30 = ~is_v31[first_rows]
        boundary[first_rows[v30]] = c_pos[ratings[first]][v30]
    c_idx = np.flatnonzero(comma_rows)
    comma_fast = np.zeros(n, bool)
    comma_fast[c_idx] = (boundary[c_idx] >= 0) & (n_marks[c_idx] <= 1)
    header = (c_pos < boundary[c_row]) & ((c_flags & (EMPTY | IS_MARK)) == 0)
    comma_fast[np.unique(c_row[header & ((c_flags & FULL_NAMES) != 0)])] = False
    v30_head = ~is_v31[c_row] & (c_pos <= boundary[c_row])
    entry = ((c_flags & ENTRY) != 0) | (header & ((c_flags & APPEAR) != 0)) | (v30_head & ((c_flags & WEIGHTED) != 0))
    comma_fast[np.unique(c_row[entry])] = False
    return comma_fast, header


def _header_names(
    comma: _CommaItems, c_flags: np.ndarray, item_tag: np.ndarray, named: np.ndarray
) -> list[tuple[np.ndarray, ...]]:
    """Units of the header items that are names (``TextExtractor._header_units``): the first item
    that is a character or not a copyright is the character, later ones only when known
    characters; of the rest the first is the copyright, later ones only when known copyrights;
    everything else is an artist. A name holding safety words also applies those (group safety)."""
    f = c_flags[named]
    rows = comma.row[named]
    pos = comma.pos[named]
    is_char, is_copy = (f & IS_CHAR) != 0, (f & IS_COPY) != 0
    character = is_char | first_per_row(rows, is_char | ~is_copy)
    rest = ~character
    copyright_ = rest & (is_copy | first_per_row(rows, rest))
    slot = np.where(character, -1, np.where(copyright_, -2, -3))
    tags = item_tag[comma.codes[named]]
    safe = (f & SAFETY) != 0
    n_safe = int(safe.sum())
    no_unit = np.full(len(named), -1, np.int64)
    return [
        (
            rows[safe],
            pos[safe],
            np.zeros(n_safe, np.int64),
            np.full(n_safe, _G_SAFETY, np.int64),
            tags[safe],
            no_unit[safe],
        ),
        (rows, pos, np.ones(len(named), np.int64), slot, tags, no_unit),
    ]


def _may_have_boundary(texts: pa.StringArray, rows: np.ndarray, n_marks: np.ndarray) -> np.ndarray:
    """Rows that may hold a header / body boundary: a ``|||`` or a rating item (``is_rating_item``:
    ``rating:`` in any case). A comma row without one is prose or a prompt list, never read here,
    so it is not split and its items are not coded. The search runs only on rows without ``|||``
    and errs towards yes (``ignore_case`` folds at least what ``str.lower`` does to ASCII)."""
    marked = n_marks > 0
    unmarked = rows & ~marked
    rating = _bool(pc.match_substring(_null_except(texts, unmarked), "rating:", ignore_case=True))
    return marked | rating


def _bool(mask: pa.Array) -> np.ndarray:
    """An Arrow boolean array as numpy, null as False."""
    return pc.fill_null(mask, False).to_numpy(zero_copy_only=False)


def _null_except(texts: pa.StringArray, rows: np.ndarray) -> pa.StringArray:
    """``texts`` with every row outside the mask ``rows`` null (kernels skip null rows).

    The same offsets and data buffers under a new validity bitmap: unlike ``take`` of
    the rows, no text is copied, and list kernels' parent indices stay batch rows."""
    keep = rows & _bool(texts.is_valid())
    if texts.offset:  # the bitmap counts from the buffers' start, like the offsets
        keep = np.concatenate([np.zeros(texts.offset, bool), keep])
    validity = pa.array(keep).buffers()[1]
    return pa.Array.from_buffers(texts.type, len(texts), [validity, *texts.buffers()[1:]], offset=texts.offset)


def _character_classes(texts: pa.StringArray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: *odd* - holding NUL / U+FFFD (``guard_text``'s) or a newline / ``\\x1c-\\x1f`` (split
    differently by ``str.split`` and Arrow): such rows go per entry; and ASCII or not.

    Most captions are printable ASCII, which is ASCII and holds none of the odd characters:
    one cheap classifying kernel clears those, and the other two tests scan only the rest."""
    suspect = np.flatnonzero(~_bool(pc.ascii_is_printable(texts)))
    odd = np.zeros(len(texts), bool)
    ascii_ = np.ones(len(texts), bool)
    if len(suspect):
        rest = texts.take(pa.array(suspect))
        odd[suspect] = _bool(pc.match_substring_regex(rest, "[\x00\n\x1c-\x1f\ufffd]"))
        ascii_[suspect] = _bool(pc.string_is_ascii(rest))
    return odd, ascii_


def _mark_sections(texts: pa.StringArray) -> tuple[pa.StringArray, np.ndarray]:
    """Every ``|||`` replaced by the item ``MARK`` (``,MARK,``), and how many each text held.

    One replace-all kernel gives both (the count is the growth in bytes): cheaper
    than a first-only replace plus substring scans for a first and a second ``|||``.
    Replacing them all changes nothing read here: a text with two goes per entry.
    """
    marked = pc.replace_substring(texts, "|||", "," + MARK + ",")
    grown = pc.subtract(pc.binary_length(marked), pc.binary_length(texts))
    return marked, pc.fill_null(grown, 0).to_numpy(zero_copy_only=False) // (len(MARK) - 1)


def _expand(
    codes: np.ndarray,
    rows: np.ndarray,
    pos: np.ndarray,
    ustart: np.ndarray,
    ucount: np.ndarray,
    u_slot: np.ndarray,
    u_tag: np.ndarray,
) -> tuple[np.ndarray, ...]:
    """Each item's units from the code table, as flat arrays (row, pos, sub, slot, tag, unit)."""
    owner, sub = expand_counts(ucount[codes])
    unit = ustart[codes][owner] + sub
    return rows[owner], pos[owner], sub, u_slot[unit], u_tag[unit], unit


def expand_counts(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For ``counts[i]`` children of each parent ``i``: each child's parent and its index
    among its parent's children (a CSR expansion)."""
    owner = np.repeat(np.arange(len(counts)), counts)
    first = np.cumsum(counts) - counts
    return owner, np.arange(len(owner), dtype=np.int64) - first[owner]


def first_per_row(rows: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """True at the first True of ``mask`` within each run of equal ``rows`` (rows ascending)."""
    out = np.zeros(len(rows), bool)
    hits = np.flatnonzero(mask)
    if len(hits):
        out[hits[run_starts(rows[hits])]] = True
    return out


def take_where(mask: np.ndarray, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """``a[mask]`` for each array, through the mask's indices (found once). Numpy's boolean
    indexing costs several times a gather when the mask is irregular, as unit masks are."""
    at = np.flatnonzero(mask)
    return tuple(a.take(at) for a in arrays)


def run_starts(values: np.ndarray) -> np.ndarray:
    """Where each run of equal ``values`` starts. For sorted values: the first index of each
    distinct value, as ``np.unique(values, return_index=True)`` gives, without its sort."""
    if not len(values):
        return np.zeros(0, np.int64)
    return np.flatnonzero(np.concatenate([[True], values[1:] != values[:-1]]))


def dense_unique(values: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(values, return_inverse=True)`` for ids in ``[0, size)`` (decision / value ids:
    a table's length bounds them) by counting instead of sorting: O(len(values) + size)."""
    seen = np.bincount(values, minlength=size) > 0
    distinct = np.flatnonzero(seen)
    rank = np.cumsum(seen) - 1
    return distinct, rank[values]
