"""The columnar path for ordered-tag captions: whole batches as arrays, decisions memoised.

Why: a per-entry pass that builds ``Evidence``, runs every resolver and builds a
Python ``Extraction`` costs ~45 us per caption, most of it re-deciding the same
few thousand situations (``black hair`` -> Black, 0.95). Each resolver reads only
its own slice of the evidence, and that slice is fully determined by the ordered
tags that feed it. So:

1. ``caption_arrays.read_units`` splits the batch with Arrow kernels and turns it
   into *units* - (row, position, group, tag) - with one Python call per distinct
   item (``ItemTable``), header name rules as array operations;
2. units are grouped into one *segment* per (row, group): one group per attribute
   resolver, plus gender + count, dress, rating and safety. Dress segments are
   first reduced to the tags ``DressResolver`` reads (``_reduce_dress``); list
   attributes (``ListResolver``: distinct values in order) are built directly;
3. each segment is hashed and looked up in a sorted index (``SegmentIndex``), or,
   when it is one unit (most are), in a table by unit id (``_UnitResults``); a
   segment never seen replays exactly its tags through the reference reader
   (``TagReader.apply``) and resolver, so the result is the reference result
   by construction;
4. count, unknown-count scaling, rating, the safety rule, status and reason are
   array operations over the rows; the Arrow table is built per attribute with
   ``take`` from the batch's distinct decisions.

Only structured captions go this way (``v31``, ``v30`` and raw ``danbooru``: no
prose reading is involved in them); prose, prompt-style lists, invalid rows and
the edge cases ``caption_arrays`` lists keep the per-entry path, and the two
tables are merged in input order. ``tests/core/test_columnar.py`` checks both
paths give identical tables. ``extractions`` gives the same rows as ``Extraction``
records instead of a table (``charmeta extract``'s block path), checked record for
record in the same test file. The path reads the tag extractor only through
``charmeta.extractors.base.TagReader``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Union

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from charmeta.contract import ATTRIBUTES, UNKNOWN, rich_arrow_schema
from charmeta.evidence import Evidence
from charmeta.extractors import caption_arrays
from charmeta.extractors.base import TagReader
from charmeta.extractors.caption_arrays import (
    NO_GARMENT,
    ItemTable,
    Units,
    Vocabulary,
    dense_unique,
    expand_counts,
    first_per_row,
    read_units,
    run_starts,
    take_where,
)
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
)
from charmeta.records import Decision, Extraction, extractions_to_table
from charmeta.resolvers import UNKNOWN_COUNT_FACTOR, ListResolver

log = logging.getLogger("charmeta.columnar")

#: Resolved segments remembered before everything is forgotten (bounded memory at any N).
MEMO_MAX = 300_000
_NAME_TARGETS = {"character": 0, "copyright": 1, "artist": 2}
_NO_ASSIGNS: tuple = ()

# Fixed groups; attribute groups are numbered after them.
G_GENDER, G_DRESS, G_RATING, G_SAFETY = 0, 1, 2, 3
_KIND_GROUP = {
    COUNT: G_GENDER,
    SOLO: G_GENDER,
    GENDER: G_GENDER,
    GARMENT: G_DRESS,
    CGARMENT: G_DRESS,
    NUDE: G_DRESS,
    DSTYLE: G_DRESS,
    RATING: G_RATING,
    MINOR: G_SAFETY,
    SEXUAL: G_SAFETY,
    EXCLUDE: G_SAFETY,
}


class ColumnarTagPath:
    """Turns a batch of captions into rich-schema Arrow columns (see module docstring)."""

    def __init__(self, extractor: TagReader) -> None:
        self.ex = extractor
        self.schema = rich_arrow_schema()
        self.attr_index = {spec.key: i for i, spec in enumerate(ATTRIBUTES)}
        # Attribute resolvers other than gender / dress get a group each.
        self.attr_groups: dict[str, int] = {}
        for key in extractor.resolvers:
            if key not in ("Gender", "Dress"):
                self.attr_groups[key] = 4 + len(self.attr_groups)
        self.group_keys = {g: k for k, g in self.attr_groups.items()}
        self.n_groups = 4 + len(self.attr_groups)
        self.vocab = Vocabulary(extractor.ont)
        self.scan_regex = extractor.scanner.candidate_regex()
        self.garment_forms = [frozenset(g.tags) | frozenset(g.forms) for g in extractor.ont.garments]
        #: Groups resolved by ``ListResolver`` (distinct values in order): built as arrays, no memo.
        self.list_groups: dict[int, str] = {
            g: k for k, g in self.attr_groups.items() if isinstance(extractor.resolvers[k], ListResolver)
        }
        #: Per slot + 4 (name lists -3..-1, then groups): whether it is a list group (one gather per unit).
        self._is_list_slot = np.zeros(4 + self.n_groups, bool)
        self._is_list_slot[[4 + g for g in self.list_groups]] = True
        self._age = self.attr_index["Age"]
        #: Batches the columnar path raised on (read by the per-entry path instead); tests assert 0.
        self.fallbacks = 0
        self._reset()

    # -- plans: what a unit of hits touches ------------------------------------------------

    def units_of(self, hits: tuple, t: str) -> tuple[tuple[int, str], ...]:
        """What applying ``hits`` of tag ``t`` touches, as ``(slot, t)`` pairs: a group id
        (>= 0; once per group) or a name list (-1 characters, -2 copyrights, -3 artists)."""
        out: list[tuple[int, str]] = []
        for kind, key, _ in hits:
            if kind is ATTR or kind is MULTI or kind is LIST:
                g = G_GENDER if key == "Gender" and kind is ATTR else self.attr_groups.get(key)
            elif kind is NAME:
                out.append((-1 - _NAME_TARGETS.get(key, 1), t))
                continue
            else:
                g = _KIND_GROUP.get(kind)
            if g is not None and (g, t) not in out:
                out.append((g, t))
        return tuple(out)

    # -- memo -------------------------------------------------------------------------------

    def _reset(self) -> None:
        """Forget every memoised decision."""
        self.index = SegmentIndex()
        self.unit_results = _UnitResults()
        self.results = _Results()
        self.safety_memo: dict[tuple, str | None] = {}
        self.list_memo: dict[tuple, tuple[str, Decision | None]] = {}
        self.rating_names: list[str | None] = [None]
        self.rating_ids: dict[str, int] = {}
        self.safety_tuples: list[tuple] = [()]
        # per attribute: distinct decisions (index 0 = none) and their unknown-count variants
        self.decisions: list[list[Decision | None]] = [[None] for _ in ATTRIBUTES]
        self.scaled: list[dict[int, int]] = [{} for _ in ATTRIBUTES]
        self.items = ItemTable(self)

    def _trim(self) -> None:
        """Between batches: start over once ``MEMO_MAX`` segments are remembered or the item
        table is full, so memory stays bounded whatever the dataset size."""
        if (
            self.results.n > MEMO_MAX
            or len(self.safety_memo) > MEMO_MAX
            or len(self.list_memo) > MEMO_MAX
            or self.items.full()
        ):
            self._reset()
        self.ex.forget_items(caption_arrays.MAX_ITEMS)  # names are mostly unique: never let it grow

    def _register(self, key: str, d: Decision | None) -> tuple:
        """``((attribute index, decision id),)`` for a resolver's decision (none: empty)."""
        a = self.attr_index.get(key)
        if d is None or a is None:
            return _NO_ASSIGNS
        self.decisions[a].append(d)  # resolvers return a new Decision per call: one id each
        return ((a, len(self.decisions[a]) - 1),)

    def _scaled(self, a: int, did: int) -> int:
        """The id of decision ``did`` with its confidence scaled for an unknown character count."""
        s = self.scaled[a].get(did)
        if s is None:
            d = self.decisions[a][did]
            scaled = Decision(d.value, round(d.confidence * UNKNOWN_COUNT_FACTOR, 4), d.evidence, d.conflict)
            s = self.scaled[a][did] = len(self.decisions[a])
            self.decisions[a].append(scaled)
        return s

    def _replay(self, tags: tuple[str, ...]) -> Evidence:
        ev = Evidence()
        lookup, apply, scanned = self.ex.lookup, self.ex.apply, self.ex.scan_hits
        for t in tags:
            hits = lookup(t)
            apply(scanned(t) if hits is None else hits, t, ev)
        return ev

    def _solve(self, g: int, tags: tuple[str, ...]) -> Any:
        """A group's outcome from its tags, by the reference reader and resolvers."""
        ev = self._replay(tags)
        res = self.ex.resolvers
        if g == G_GENDER:
            count = sum(ev.group_counts().values()) if ev.counts else (1 if ev.solo else None)
            return self._register("Gender", res["Gender"].resolve(ev)), count
        if g == G_DRESS:
            out = self._register("Dress", res["Dress"].resolve(ev))
            if ev.garments or ev.nude or ev.dress_styles:
                out += self._register("Dress Style", self.ex.dress.style(ev))
            return out
        if g == G_RATING:
            severity = self.ex.rating_severity
            return max(ev.ratings, key=lambda r: severity.get(r, 0)) if ev.ratings else None
        key = self.group_keys[g]
        return self._register(key, res[key].resolve(ev))

    def _result(self, g: int, tags: tuple[str, ...]) -> int:
        """Resolve one new segment (dress ones through their reduced signature's memo) -> result id."""
        a1 = a2 = count = -1
        d1 = d2 = rating = safety = 0
        if g == G_SAFETY:
            safety = len(self.safety_tuples)
            self.safety_tuples.append(tags)
        elif g == G_RATING:
            value = self._solve(g, tags)
            if value is not None:
                rating = self.rating_ids.get(value, 0)
                if not rating:
                    rating = self.rating_ids[value] = len(self.rating_names)
                    self.rating_names.append(value)
        else:
            out = self._solve(g, tags)  # dress segments arrive reduced (``_reduce_dress``)
            if g == G_GENDER:
                out, c = out
                count = -1 if c is None else c
            if out:
                a1, d1 = out[0]
                if len(out) > 1:
                    a2, d2 = out[1]
        return self.results.append((a1, d1, a2, d2, count, rating, safety))

    def dress_tag(self, t: str) -> tuple:
        """What one dress tag contributes, read off the reference reader: (nude?, its primary
        garment entry or None, the garment forms its colour hits name, has a dress-style hit?).
        ``ItemTable`` calls it once per tag and keeps the answer as arrays."""
        ev = self._replay((t,))
        best = None
        for entry in ev.garments:  # the first entry of the lowest rank, as DressResolver picks
            if best is None or entry[0] < best[0]:
                best = entry
        return bool(ev.nude), best, frozenset(f for _, f, _ in ev.garment_colors), bool(ev.dress_styles)

    def _safety(self, tags: tuple[str, ...], age: str, rating: str | None) -> str | None:
        key = (tags, age, rating)
        reason = self.safety_memo.get(key, key)
        if reason is key:
            reason = self.safety_memo[key] = self.ex.safety.reason(self._replay(tags), age, rating)
        return reason

    # -- batch ------------------------------------------------------------------------------

    def table(
        self,
        ids: Sequence[Any],
        texts: Sequence[Any] | pa.Array,
        source_shard: Any,
        positions: Sequence[Any] | None,
        preset_invalid: Sequence[str | None] | None,
        extract_one: Callable[[Any], Extraction],
    ) -> pa.Table:
        """One batch -> one rich table, rows in input order (see module docstring)."""
        self._trim()
        n = len(texts)
        if isinstance(texts, (pa.Array, pa.ChunkedArray)):
            arrow = texts.combine_chunks() if isinstance(texts, pa.ChunkedArray) else texts
            if not pa.types.is_string(arrow.type):
                arrow = pa.nulls(n, pa.string())  # binary / other columns: the per-entry path guards them
        else:
            arrow = pa.array([v if type(v) is str else None for v in texts], pa.string())
        if isinstance(preset_invalid, (pa.Array, pa.ChunkedArray)):
            preset_invalid = preset_invalid.to_pylist()
        fast_columns: dict[str, _FastColumn] | None = None
        pos = np.arange(n, dtype=np.int64) if positions is None else positions
        try:
            units = read_units(arrow, self.items)
            fast = units.fast
            if preset_invalid is not None:
                fast &= np.array([not p for p in preset_invalid], bool)
            fast_rows = np.flatnonzero(fast)
            if len(fast_rows):
                columns = self._resolve(units, fast, fast_rows)
                fast_columns = self._build(
                    columns, _pick(ids, fast_rows), _pick(source_shard, fast_rows), _pick(pos, fast_rows)
                )
        except Exception as exc:  # never lose a batch to this path: the per-entry path reads it all
            log.warning("columnar tag path failed on a batch of %d, using the per-entry path: %r", n, exc)
            self.fallbacks += 1
            self._reset()
            fast_rows, fast, fast_columns = np.zeros(0, np.int64), np.zeros(n, bool), None
        slow_rows = np.flatnonzero(~fast)
        slow_table = None
        if len(slow_rows):
            slow_ex = []
            for i, value in zip(slow_rows.tolist(), _py(_pick(texts, slow_rows))):
                pre = preset_invalid[i] if preset_invalid is not None else None
                if pre:
                    slow_ex.append(Extraction.invalid(pre))
                else:
                    slow_ex.append(extract_one(value))
            slow_table = extractions_to_table(
                slow_ex, _py(_pick(ids, slow_rows)), _py(_pick(source_shard, slow_rows)), _py(_pick(pos, slow_rows))
            )
        if fast_columns is None:
            return slow_table if slow_table is not None else extractions_to_table([], [], None, [])
        return _merge(self.schema, fast_columns, fast_rows, slow_table, slow_rows)

    def extractions(self, texts: Sequence[Any], extract_one: Callable[[Any], Extraction]) -> list[Extraction]:
        """One batch -> one ``Extraction`` per text, in input order: what ``extract_one`` (the
        per-entry path) returns, field for field, with the structured captions read as arrays.

        ``charmeta extract``'s path: it writes ``to_cli_json`` lines, so it needs the records
        rather than the rich table ``table`` builds. Decisions are the memoised ``Decision``
        objects themselves (shared between rows: readers must not mutate them, and nothing
        does after ``_finish``). Measured on 100k synthetic captions (``charmeta synth``), the
        CLI's per-line work (parse, extract, ``to_cli_json``, JSON) went from ~58 to ~30 us an
        entry, CPU time, interleaved in one process on the shared 2-core machine."""
        self._trim()
        n = len(texts)
        arrow = pa.array([v if type(v) is str else None for v in texts], pa.string())
        out: list[Extraction | None] = [None] * n
        try:
            units = read_units(arrow, self.items)
            fast_rows = np.flatnonzero(units.fast)
            if len(fast_rows):
                records = self._records(self._resolve(units, units.fast, fast_rows))
                for i, record in zip(fast_rows.tolist(), records):
                    out[i] = record
        except Exception as exc:  # never lose a batch to this path: the per-entry path reads it all
            log.warning("columnar tag path failed on a batch of %d, using the per-entry path: %r", n, exc)
            self.fallbacks += 1
            self._reset()
            out = [None] * n
        return [record if record is not None else extract_one(v) for record, v in zip(out, texts)]

    def _records(self, cols: dict[str, Any]) -> list[Extraction]:
        """The columnar rows as ``Extraction`` records (``extractions``): each attribute's decision
        by its id, list attributes by ``_list_decisions``."""
        dids = cols["dids"]
        count = cols["count"].tolist()
        per_attr = [
            (spec.key, self.decisions[a], dids[a].tolist())
            for a, spec in enumerate(ATTRIBUTES)
            if not spec.is_list and dids[a].any()
        ]
        lists = self._list_decisions(*cols["list_units"], count)
        characters, copyrights, artists = (c.to_pylist() for c in cols["names"])
        statuses = ("ok", "multi_character", "excluded")
        rows = zip(
            count,
            cols["status"].tolist(),
            cols["multi"].tolist(),
            cols["reason"].to_pylist(),
            cols["rating"].to_pylist(),
        )
        records = []
        for i, (c, status, multi, reason, rating) in enumerate(rows):
            attributes = {key: decisions[ids[i]] for key, decisions, ids in per_attr if ids[i]}
            row_lists = lists.get(i)
            if row_lists is not None:
                attributes.update(row_lists)
            records.append(
                Extraction(
                    "tags",
                    statuses[status],
                    reason,
                    None if c < 0 else c,
                    multi,
                    characters[i],
                    copyrights[i],
                    artists[i],
                    rating,
                    attributes,
                )
            )
        return records

    def _list_decisions(
        self, row: np.ndarray, slot: np.ndarray, unit: np.ndarray, count: list[int]
    ) -> dict[int, dict[str, Decision]]:
        """Per row with list units: its list attributes' decisions, by the reference resolver
        (``ListResolver``) on the row's (value, tag) pairs in caption order, memoised per pairs
        (``hair ornament`` alone repeats), scaled like every decision when the count is unknown."""
        arr = self.items.arrays()
        owner, k = expand_counts(arr["u_vcount"][unit])
        values = arr["v_val"][arr["u_vstart"][unit][owner] + k].tolist()
        sources = arr["u_tag"][unit[owner]].tolist()
        value_names, tag_names = self.items.values, self.items.tags
        pairs: dict[tuple[int, int], list[tuple[str, str]]] = {}
        for r, g, v, t in zip(row[owner].tolist(), slot[owner].tolist(), values, sources):
            items = pairs.get((r, g))
            if items is None:
                pairs[(r, g)] = [(value_names[v], tag_names[t])]
            else:
                items.append((value_names[v], tag_names[t]))
        out: dict[int, dict[str, Decision]] = {}
        memo = self.list_memo
        for (r, g), items in pairs.items():
            memo_key = (g, count[r] < 0, tuple(items))
            decision = memo.get(memo_key)
            if decision is None:
                key = self.list_groups[g]
                ev = Evidence()
                ev.lists[key] = items
                d = self.ex.resolvers[key].resolve(ev)
                if d is not None and count[r] < 0:
                    d = Decision(d.value, round(d.confidence * UNKNOWN_COUNT_FACTOR, 4), d.evidence, d.conflict)
                decision = memo[memo_key] = (key, d)
            if decision[1] is not None:
                out.setdefault(r, {})[decision[0]] = decision[1]
        return out

    def _resolve(self, u: Units, fast: np.ndarray, fast_rows: np.ndarray) -> dict[str, Any]:
        """Units of the fast rows -> per-row decision ids, count, rating, status, reason, names.

        Steps: order the units (``_ordered_units``); names and list attributes straight from
        their units; the other units grouped into segments (``_segments``) and each segment's
        memoised result found or made (``_segment_results``); per-row outcomes from the results
        (``_row_outcomes``); confidences scaled for unknown counts (``_scale_unknown_counts``);
        the safety rule, status and reason (``_status``)."""
        n = len(fast_rows)
        row, slot, tag, key, unit = self._ordered_units(u, fast, fast_rows)
        is_name = slot < 0
        names = self._names(*take_where(is_name, row, slot, tag), n)
        arr = self.items.arrays()
        is_list = self._is_list_slot[slot + 4]
        list_units = take_where(is_list, row, slot, unit)
        lists = self._lists(*list_units, arr, n)
        tag, starts, ends, seg_row, seg_g, seg_unit = self._segments(
            *take_where(~is_name & ~is_list, row, slot, tag, key, unit), arr
        )
        res = self._segment_results(tag, starts, ends, seg_g, seg_unit)
        dids, count, rating, safety = self._row_outcomes(res, seg_row, seg_g, n)
        self._scale_unknown_counts(dids, count)
        status, reason, rating_column = self._status(dids, count, rating, safety)
        return {
            "dids": dids,
            "count": count,
            "multi": count >= 2,
            "status": status,
            "reason": reason,
            "rating": rating_column,
            "names": names,
            "lists": lists,
            "list_units": list_units,
        }

    @staticmethod
    def _ordered_units(u: Units, fast: np.ndarray, fast_rows: np.ndarray) -> tuple[np.ndarray, ...]:
        """The fast rows' units (row renumbered among the fast rows) ordered by row, slot,
        position and order within the item: (row, slot, tag, sort key, unit)."""
        keep = fast[u.row]
        row_of = np.full(len(fast), -1, np.int64)
        row_of[fast_rows] = np.arange(len(fast_rows), dtype=np.int64)
        if keep.all():  # every unit's row is fast unless rows were preset invalid: no copies
            row, slot, tag, pos, sub, unit = u.row, u.slot, u.tag, u.pos, u.sub, u.unit
        else:
            row, slot, tag, pos, sub, unit = take_where(keep, u.row, u.slot, u.tag, u.pos, u.sub, u.unit)
        row = row_of[row]
        key = (row << 23) | ((slot + 4) << 17) | (pos << 5) | sub
        order = np.argsort(key, kind="stable")
        return row[order], slot[order], tag[order], key[order], unit[order]

    @staticmethod
    def _segments(
        row: np.ndarray,
        slot: np.ndarray,
        tag: np.ndarray,
        key: np.ndarray,
        unit: np.ndarray,
        arr: dict[str, np.ndarray],
    ) -> tuple[np.ndarray, ...]:
        """Group units into segments, one per (row, group), tags in caption order, dress ones
        reduced first (``_reduce_dress``): (tag, starts, ends, row, group, and the unit id of
        each one-unit segment, -1 for longer ones)."""
        dress = slot == G_DRESS
        if dress.any():
            dress_at = np.flatnonzero(dress)
            keep_dress = _reduce_dress(key[dress_at] >> 17, tag[dress_at], arr)
            keep = ~dress
            keep[dress_at[keep_dress]] = True
            row, slot, tag, key, unit = take_where(keep, row, slot, tag, key, unit)
        seg_id = key >> 17
        starts = run_starts(seg_id)
        ends = np.append(starts[1:], len(seg_id))
        seg_unit = np.where(ends - starts == 1, unit[starts], -1)
        return tag, starts, ends, row[starts], slot[starts], seg_unit

    def _segment_results(
        self, tag: np.ndarray, starts: np.ndarray, ends: np.ndarray, seg_g: np.ndarray, seg_unit: np.ndarray
    ) -> np.ndarray:
        """Each segment's result id. Most segments are one unit (one tag of one item in one
        group): their results are kept per unit id in a table (one gather). The others, and
        one-unit segments never seen, are hashed and searched in the hash index; segments never
        seen are resolved once per distinct one (``_new_results``) and remembered."""
        res = self.unit_results.get(seg_unit)
        hashed = np.flatnonzero(res < 0)
        h1, h2 = _segment_hashes(*_segments_at(tag, starts[hashed], ends[hashed]), seg_g[hashed])
        res[hashed] = np.where(seg_unit[hashed] < 0, self.index.lookup(h1, h2), -1)
        new = np.flatnonzero(res[hashed] < 0)  # among ``hashed``
        if len(new):
            rep, inverse = _distinct(h1[new], h2[new])
            ids = self._new_results(hashed[new[rep]], tag, starts, ends, seg_g)
            res[hashed[new]] = ids[inverse]
            self.unit_results.set(seg_unit[hashed[new]], res[hashed[new]])
            rep_many = np.flatnonzero(seg_unit[hashed[new[rep]]] < 0)
            self.index.add(h1[new[rep[rep_many]]], h2[new[rep[rep_many]]], ids[rep_many])
        return res

    def _row_outcomes(
        self, res: np.ndarray, seg_row: np.ndarray, seg_g: np.ndarray, n: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per row from its segments' results: decision id per attribute, count (-1 unknown),
        rating id and safety tuple id."""
        r = self.results.columns()
        dids = np.zeros((len(ATTRIBUTES), n), np.int64)
        for aa, dd in ((r.a1[res], r.d1[res]), (r.a2[res], r.d2[res])):
            a_sel, row_sel, d_sel = take_where(aa >= 0, aa, seg_row, dd)
            dids[a_sel, row_sel] = d_sel
        count = np.full(n, -1, np.int64)
        g_row, g_res = take_where(seg_g == G_GENDER, seg_row, res)
        count[g_row] = r.count[g_res]
        rating = np.zeros(n, np.int64)
        r_row, r_res = take_where(seg_g == G_RATING, seg_row, res)
        rating[r_row] = r.rating[r_res]
        safety = np.zeros(n, np.int64)
        s_row, s_res = take_where(seg_g == G_SAFETY, seg_row, res)
        safety[s_row] = r.safety[s_res]
        return dids, count, rating, safety

    def _scale_unknown_counts(self, dids: np.ndarray, count: np.ndarray) -> None:
        """Rows with an unknown character count: every decision's confidence scaled, as
        ``TextExtractor._finish`` does (each scaled decision gets its own id, in place)."""
        unknown = count < 0
        for a in range(len(ATTRIBUTES)):
            sel = unknown & (dids[a] > 0)
            if sel.any():
                distinct, inv = dense_unique(dids[a][sel], len(self.decisions[a]))
                dids[a][sel] = np.array([self._scaled(a, int(d)) for d in distinct], np.int64)[inv]

    def _status(
        self, dids: np.ndarray, count: np.ndarray, rating: np.ndarray, safety: np.ndarray
    ) -> tuple[np.ndarray, pa.Array, pa.Array]:
        """The safety rule once per distinct (safety tags, age, rating); then each row's status
        (0 ok, 1 multi_character, 2 excluded), reason and rating name."""
        age_ids, age_inv = dense_unique(dids[self._age], len(self.decisions[self._age]))
        rating_ids, rating = dense_unique(rating, len(self.rating_names))
        rating_names = [self.rating_names[i] for i in rating_ids.tolist()]
        age_names = [self.decisions[self._age][int(d)].value if d else UNKNOWN for d in age_ids]
        combo = (safety * (len(age_ids) + 1) + age_inv) * (len(rating_names) + 1) + rating
        combos, combo_inv = np.unique(combo, return_inverse=True)
        reasons: list[str | None] = []
        for c in combos.tolist():
            rest, r = divmod(c, len(rating_names) + 1)
            sidx, aidx = divmod(rest, len(age_ids) + 1)
            reasons.append(self._safety(self.safety_tuples[sidx], age_names[aidx], rating_names[r]))
        excluded = np.array([r is not None for r in reasons], bool)[combo_inv.reshape(-1)]
        multi = count >= 2
        status = np.where(excluded, 2, np.where(multi, 1, 0))
        reason_text = pa.array(reasons, pa.string()).take(pa.array(combo_inv.reshape(-1)))
        if multi.any() and not excluded.all():
            counts_text = pa.array([f"{c} characters" if c >= 2 else None for c in count.tolist()], pa.string())
            reason_text = pc.if_else(pa.array(excluded), reason_text, counts_text)
        return status, reason_text, pa.array(rating_names, pa.string()).take(pa.array(rating))

    def _new_results(
        self, segs: np.ndarray, tag: np.ndarray, starts: np.ndarray, ends: np.ndarray, seg_g: np.ndarray
    ) -> np.ndarray:
        """Resolve the segments ``segs`` (never seen) from their tag strings -> their result ids.
        Only their own units' tags are converted to Python (not the whole batch's)."""
        lengths = ends[segs] - starts[segs]
        owner, k = expand_counts(lengths)
        tags = self.items.tags
        names = [tags[t] for t in tag[starts[segs][owner] + k].tolist()]
        ids = []
        at = 0
        for g, length in zip(seg_g[segs].tolist(), lengths.tolist()):
            ids.append(self._result(g, tuple(names[at : at + length])))
            at += length
        return np.array(ids, np.int64)

    def _lists(
        self, row: np.ndarray, slot: np.ndarray, unit: np.ndarray, arr: dict[str, np.ndarray], n: int
    ) -> dict[int, pa.Array]:
        """List attributes per row (``ListResolver``: the distinct values of the tags' list hits, in
        order; null without any), straight from the units' values."""
        owner, k = expand_counts(arr["u_vcount"][unit])
        value = arr["v_val"][arr["u_vstart"][unit][owner] + k]
        row, slot = row[owner], slot[owner]
        out: dict[int, pa.Array] = {}
        for g, key in self.list_groups.items():
            a = self.attr_index[key]
            out[a] = _list_column(
                *take_where(slot == g, row, value),
                self.items.values,
                n,
                self.schema.field(ATTRIBUTES[a].column).type,
                null_if_empty=True,
            )
        return out

    def _names(self, row: np.ndarray, slot: np.ndarray, tag: np.ndarray, n: int) -> list[pa.Array]:
        """Character / copyright / artist lists per row: first occurrences in caption order."""
        list_type = self.schema.field("characters").type
        ids, strings = self.items.tag_strings(tag)
        return [
            _list_column(*take_where(slot == k, row, ids), strings, n, list_type, null_if_empty=False)
            for k in (-1, -2, -3)
        ]

    def _build(self, cols: dict[str, Any], ids: Any, shard: Any, positions: Any) -> dict[str, _FastColumn]:
        """The rich columns of the columnar rows (``_FastColumn``s): attributes as their distinct
        decisions and each row's index among them, the rest one value per row."""
        dids = cols["dids"]
        n = dids.shape[1]
        schema = self.schema
        characters, copyrights, artists = cols["names"]
        count = cols["count"]
        arrays: dict[str, Any] = {
            "id": ids.cast(pa.string()) if isinstance(ids, pa.Array) else pa.array([str(i) for i in ids], pa.string()),
            "source_shard": (
                pa.nulls(n, pa.string())
                if shard is None
                else pa.array([shard] * n if isinstance(shard, str) else shard, pa.string())
            ),
            "source_position": (
                positions.cast(pa.int64()) if isinstance(positions, pa.Array) else pa.array(positions, pa.int64())
            ),
            "input_kind": pa.array(["tags"] * n, pa.string()),
            "status": (pa.array(["ok", "multi_character", "excluded"], pa.string()), cols["status"]),
            "reason": cols["reason"],
            "character_count": pa.array(count, pa.int32(), mask=count < 0),
            "multi_character": pa.array(cols["multi"], pa.bool_()),
            "characters": characters,
            "copyrights": copyrights,
            "artists": artists,
            "rating": cols["rating"],
            "negative_prompt": pa.nulls(n, pa.string()),  # generation text never takes this path
            "parameters": pa.nulls(n, pa.string()),
        }
        for a, spec in enumerate(ATTRIBUTES):
            distinct, take = dense_unique(dids[a], len(self.decisions[a]))
            ds = [self.decisions[a][j] for j in distinct.tolist()]
            col = spec.column
            if spec.is_list:
                arrays[col] = (
                    cols["lists"][a]
                    if a in cols["lists"]
                    else (pa.array([d.value if d is not None else None for d in ds], schema.field(col).type), take)
                )
                continue
            if spec.is_core:  # no decision: Unknown with confidence 0 (never null: no row here is invalid)
                values = [d.value if d is not None else UNKNOWN for d in ds]
                confs = [d.confidence if d is not None else 0.0 for d in ds]
                evs = [d.evidence if d is not None else [] for d in ds]
                confl = [d.conflict if d is not None else False for d in ds]
            else:
                values = [d.value if d is not None else None for d in ds]
                confs = [d.confidence if d is not None else None for d in ds]
                evs = [d.evidence if d is not None else None for d in ds]
                confl = [d.conflict if d is not None else None for d in ds]
            for name, vals in (
                (col, values),
                (col + "_confidence", confs),
                (col + "_evidence", evs),
                (col + "_conflict", confl),
            ):
                arrays[name] = (pa.array(vals, schema.field(name).type), take)
        return arrays


#: A column of the columnar rows: one value per row, or (values, each row's index into them).
_FastColumn = Union[pa.Array, tuple[pa.Array, np.ndarray]]  # noqa: UP007 (runtime alias)


def _merge(
    schema: pa.Schema, fast: dict[str, _FastColumn], fast_rows: np.ndarray, slow: pa.Table | None, slow_rows: np.ndarray
) -> pa.Table:
    """The batch's table in input order from the columnar rows' columns and the per-entry rows'
    table (or None): each column is one ``take``, from its fast values followed by the slow ones
    (a column of distinct decisions is never expanded to the fast rows first)."""
    n = len(fast_rows) + len(slow_rows)
    arrays = []
    for f in schema:
        col = fast[f.name]
        values, index = col if isinstance(col, tuple) else (col, None)
        if slow is None:
            arrays.append(values if index is None else values.take(pa.array(index)))
            continue
        at = np.empty(n, np.int64)
        at[fast_rows] = np.arange(len(values)) if index is None else index
        at[slow_rows] = np.arange(len(values), len(values) + len(slow_rows))
        arrays.append(pa.concat_arrays([values, *slow.column(f.name).chunks]).take(pa.array(at)))
    return pa.Table.from_arrays(arrays, schema=schema)


def _reduce_dress(seg: np.ndarray, tag: np.ndarray, arr: dict[str, np.ndarray]) -> np.ndarray:
    """Which dress units can change the dress decisions.

    Outfits are combinatorial, so a row's full dress tag tuple rarely repeats; but
    ``DressResolver`` only reads the nude tags (when any), else the primary garment
    (first tag of the lowest rank), the colour tags naming that garment's forms and
    the first dress-style tag. Replaying just those, in their original order, gives
    the same decisions, and those few tags repeat. ``seg`` (one id per row's dress
    group, ascending) and ``tag`` are in caption order; returns a keep mask.
    """
    starts = run_starts(seg)
    seg_of = np.cumsum(np.concatenate([[False], seg[1:] != seg[:-1]]))
    nude = arr["tag_nude"][tag].astype(bool)
    any_nude = np.maximum.reduceat(nude.astype(np.int64), starts).astype(bool)
    rank = arr["tag_rank"][tag]
    lowest = np.minimum.reduceat(rank, starts)
    primary = first_per_row(seg_of, (rank == lowest[seg_of]) & (rank < NO_GARMENT))
    style = first_per_row(seg_of, arr["tag_style"][tag].astype(bool))
    garment = np.full(len(starts), -1, np.int64)
    garment[seg_of[primary]] = arr["tag_garment"][tag[primary]]
    pair = tag * int(arr["n_garments"]) + garment[seg_of]
    colour = (garment[seg_of] >= 0) & np.isin(pair, arr["colour_pairs"])
    return np.where(any_nude[seg_of], nude, primary | style | colour)


def _list_column(
    row: np.ndarray, ids: np.ndarray, strings: list[str] | pa.Array, n: int, list_type: pa.DataType, null_if_empty: bool
) -> pa.Array:
    """One list per row from (row, string id) pairs in order, keeping each id's first occurrence
    within a row (``dict.fromkeys``: one id per string); rows without any get ``[]`` or null."""
    if len(row):
        # (row, id) as one int64 key (ids < 2**31, rows < 2**32): a stable argsort orders it as a
        # lexsort by row, id and then position would, at a fraction of the cost
        by = np.argsort(row * (int(ids.max()) + 1) + ids, kind="stable")
        rs, vs = row[by], ids[by]
        repeat = np.zeros(len(row), bool)
        repeat[by[1:]] = (rs[1:] == rs[:-1]) & (vs[1:] == vs[:-1])
        row, ids = row[~repeat], ids[~repeat]
    per_row = np.bincount(row, minlength=n)
    offsets = np.zeros(n + 1, np.int32)
    np.cumsum(per_row, out=offsets[1:])
    if isinstance(strings, pa.Array):
        values = strings.take(pa.array(ids))
    else:
        distinct, inv = dense_unique(ids, len(strings))
        values = pa.array([strings[i] for i in distinct.tolist()], pa.string()).take(pa.array(inv))
    mask = pa.array(per_row == 0) if null_if_empty else None
    return pa.ListArray.from_arrays(pa.array(offsets), values, type=list_type, mask=mask)


def _segment_hashes(
    tag: np.ndarray, starts: np.ndarray, ends: np.ndarray, group: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Two independent 64-bit polynomial hashes of each (group, tag sequence) segment."""
    if not len(starts):
        return np.zeros(0, np.uint64), np.zeros(0, np.uint64)
    with np.errstate(over="ignore"):
        length = ends - starts
        k = expand_counts(length)[1].astype(np.uint64)
        t = tag.astype(np.uint64)
        h1 = np.add.reduceat(_mix(t + np.uint64(1)) * _mix(k + np.uint64(0x9E37)), starts)
        h2 = np.add.reduceat(_mix(t ^ np.uint64(0x5851F42D4C957F2D)) * _mix(k * np.uint64(7) + np.uint64(3)), starts)
        h1 = h1 ^ _mix(group.astype(np.uint64) * np.uint64(0x100000001B3) + length.astype(np.uint64))
        h2 = h2 ^ _mix(length.astype(np.uint64) + np.uint64(0xC2B2AE3D27D4EB4F))
    return h1, h2


def _segments_at(tag: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The tags of some segments (``tag[starts[i]:ends[i]]``) packed one after another, with
    their new starts and ends (``_segment_hashes`` reads segments that tile its tag array)."""
    lengths = ends - starts
    owner, k = expand_counts(lengths)
    packed_starts = np.cumsum(lengths) - lengths
    return tag[starts[owner] + k], packed_starts, packed_starts + lengths


def _distinct(h1: np.ndarray, h2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Representatives of the distinct (h1, h2) pairs and each element's index among them;
    pairs whose first hash collides but second differs are told apart."""
    _, first, inverse = np.unique(h1, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    clash = h2 != h2[first[inverse]]
    if clash.any():
        extra = np.flatnonzero(clash)
        inverse[extra] = len(first) + np.arange(len(extra))
        first = np.concatenate([first, extra])
    return first, inverse


class SegmentIndex:
    """Sorted (hash, hash) -> result id, looked up for a whole batch with ``searchsorted``.

    Tag ids are per ``ItemTable`` generation, so the index is cleared with it.
    """

    def __init__(self) -> None:
        self.h1 = np.zeros(0, np.uint64)
        self.h2 = np.zeros(0, np.uint64)
        self.ids = np.zeros(0, np.int64)

    def __len__(self) -> int:
        return len(self.h1)

    def lookup(self, h1: np.ndarray, h2: np.ndarray) -> np.ndarray:
        """Result id per segment, -1 when unknown."""
        out = np.full(len(h1), -1, np.int64)
        if not len(self.h1) or not len(h1):
            return out
        # searched in ascending order: consecutive binary searches then touch nearby parts of the
        # index (cache-friendly), ~3x faster than in segment order even with the sort
        order = np.argsort(h1)
        at = np.empty(len(h1), np.int64)
        at[order] = np.searchsorted(self.h1, h1[order])
        at = np.minimum(at, len(self.h1) - 1)
        hit = (self.h1[at] == h1) & (self.h2[at] == h2)
        out[hit] = self.ids[at[hit]]
        return out

    def add(self, h1: np.ndarray, h2: np.ndarray, ids: np.ndarray) -> None:
        order = np.argsort(h1, kind="stable")
        h1, h2, ids = h1[order], h2[order], ids[order]
        at = np.searchsorted(self.h1, h1)
        self.h1 = np.insert(self.h1, at, h1)
        self.h2 = np.insert(self.h2, at, h2)
        self.ids = np.insert(self.ids, at, ids)


class _UnitResults:
    """The memo of one-unit segments: result id per unit id (``ItemTable`` units: one item's tag
    in one group), -1 when unknown. A gather instead of a search of the hash index.

    Unit ids are per ``ItemTable`` generation (bounded by its ``MAX_ITEMS``), so the table is
    replaced with it (``ColumnarTagPath._reset``)."""

    def __init__(self) -> None:
        self.ids = np.full(0, -1, np.int64)

    def get(self, units: np.ndarray) -> np.ndarray:
        """Result id per unit id; -1 for unknown ones and for -1 (no unit)."""
        out = np.full(len(units), -1, np.int64)
        at = np.flatnonzero((units >= 0) & (units < len(self.ids)))
        out[at] = self.ids[units[at]]
        return out

    def set(self, units: np.ndarray, ids: np.ndarray) -> None:
        """Remember ``ids`` for ``units`` (entries with unit -1 are left out)."""
        at = np.flatnonzero(units >= 0)
        if not len(at):
            return
        units, ids = units[at], ids[at]
        need = int(units.max()) + 1
        if need > len(self.ids):
            grown = np.full(max(need, 2 * len(self.ids), 1024), -1, np.int64)
            grown[: len(self.ids)] = self.ids
            self.ids = grown
        self.ids[units] = ids


class _ResultColumns(NamedTuple):
    """``_Results`` as numpy columns, one value per result id."""

    a1: np.ndarray
    d1: np.ndarray
    a2: np.ndarray
    d2: np.ndarray
    count: np.ndarray
    rating: np.ndarray
    safety: np.ndarray


class _Results:
    """Per resolved segment: up to two (attribute, decision id) pairs, count, rating, safety tags.

    Appended one result at a time as a tuple (setting seven numpy items costs more than
    that), read as numpy columns: ``columns`` moves the pending tuples in one block."""

    def __init__(self) -> None:
        self.n = 0
        self._pending: list[tuple[int, ...]] = []
        self._arrays = np.zeros((len(_ResultColumns._fields), 1024), np.int64)

    def append(self, values: tuple[int, ...]) -> int:
        self._pending.append(values)
        self.n += 1
        return self.n - 1

    def columns(self) -> _ResultColumns:
        if self._pending:
            start = self.n - len(self._pending)
            if self.n > self._arrays.shape[1]:
                grown = np.zeros((len(self._arrays), max(self.n, 2 * self._arrays.shape[1])), np.int64)
                grown[:, :start] = self._arrays[:, :start]
                self._arrays = grown
            self._arrays[:, start : self.n] = np.array(self._pending, np.int64).T
            self._pending = []
        return _ResultColumns(*self._arrays[:, : self.n])


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: spreads ids over 64 bits (wrapping arithmetic)."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _py(values: Any) -> Any:
    """Arrow / numpy values as a Python list (for the per-entry path's table builder)."""
    if isinstance(values, (pa.Array, pa.ChunkedArray, np.ndarray)):
        return values.tolist() if isinstance(values, np.ndarray) else values.to_pylist()
    return values


def _pick(values: Any, rows: np.ndarray) -> Any:
    """``values`` at ``rows``: a scalar / None stays as is, Arrow arrays by take, sequences by index."""
    if values is None or isinstance(values, str):
        return values
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return values.take(pa.array(rows))
    if isinstance(values, np.ndarray):
        return values[rows]
    return [values[i] for i in rows.tolist()]
