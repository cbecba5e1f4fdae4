"""The columnar path for ordered-tag captions: memoised decisions, Arrow columns by ``take``.

Why: a per-entry pass that builds ``Evidence``, runs every resolver and builds a
Python ``Extraction`` costs ~45 us per caption, most of it re-deciding the same
few thousand situations (``black hair`` -> Black, 0.95). Each resolver reads only
its own slice of the evidence, and that slice is fully determined by the ordered
tags that feed it. So the tags of a caption are split into *groups* (one per
attribute resolver, plus gender + count, dress, rating, safety), and each group's
outcome is looked up by its tag tuple; a miss replays exactly those tags through
the reference reader (``TextExtractor._apply``) and resolver, so the result is the
reference result by construction. Per caption what remains in Python is reading
its items (one cached dict lookup each) and one memo lookup per group; the Arrow
table is then built column by column with vectorised ``take`` from the few
distinct decisions of the batch.

Only the structured formats go this way (``v31``, ``v30`` and raw ``danbooru``
captions: no prose reading is involved in them); prose, prompt-style lists and
invalid rows keep the per-entry path, and the two tables are merged in input
order. ``tests/unit/test_columnar.py`` checks both paths give identical tables.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

import numpy as np
import pyarrow as pa

from charmeta.contract import ATTRIBUTES, UNKNOWN, rich_arrow_schema
from charmeta.evidence import Evidence
from charmeta.ontology import (
    ATTR, CGARMENT, COUNT, DSTYLE, EXCLUDE, GARMENT, GENDER, LIST, MINOR, MULTI, NAME, NUDE, RATING, SEXUAL, SOLO,
)
from charmeta.parsing import clean_item, danbooru_tokens, is_rating_item
from charmeta.records import Decision, Extraction, extractions_to_table
from charmeta.resolvers import UNKNOWN_COUNT_FACTOR

if TYPE_CHECKING:
    from charmeta.extractors.text import TextExtractor

#: Formats whose items are read without prose (see ``TextExtractor.extract``).
COLUMNAR_FORMATS = frozenset({"v31", "v30", "danbooru"})
#: Memo entries kept per group before the memo is cleared (bounded memory at any N).
MEMO_MAX = 100_000
_NAME_TARGETS = {"character": 0, "copyright": 1, "artist": 2}
_NO_ASSIGNS: tuple = ()

# Fixed groups; attribute groups are numbered after them.
G_GENDER, G_DRESS, G_RATING, G_SAFETY = 0, 1, 2, 3
_KIND_GROUP = {COUNT: G_GENDER, SOLO: G_GENDER, GENDER: G_GENDER,
               GARMENT: G_DRESS, CGARMENT: G_DRESS, NUDE: G_DRESS, DSTYLE: G_DRESS,
               RATING: G_RATING, MINOR: G_SAFETY, SEXUAL: G_SAFETY, EXCLUDE: G_SAFETY}


class ColumnarTagPath:
    """Turns a batch of captions into rich-schema Arrow columns (see module docstring)."""

    def __init__(self, extractor: "TextExtractor") -> None:
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
        #: The attributes whose decisions each group's memo holds.
        self.group_attributes: list[tuple[str, ...]] = [("Gender",), ("Dress", "Dress Style"), (), ()] + [
            (self.group_keys[g],) for g in range(4, self.n_groups)]
        self._garment_forms = [frozenset(g.tags) | frozenset(g.forms) for g in extractor.ont.garments]
        self._age = self.attr_index["Age"]
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
        self.memo: list[dict[tuple, Any]] = [{} for _ in range(self.n_groups)]
        self.safety_memo: dict[tuple, Optional[str]] = {}
        # per attribute: distinct decisions (index 0 = none) and their unknown-count variants
        self.decisions: list[list[Optional[Decision]]] = [[None] for _ in ATTRIBUTES]
        self.scaled: list[dict[int, int]] = [{} for _ in ATTRIBUTES]
        self.dress_info: dict[str, tuple] = {}
        self.comma_cache: dict[str, tuple[tuple, str, bool]] = {}

    def _trim(self) -> None:
        """Between batches: clear any memo past ``MEMO_MAX`` with the decisions only it refers to,
        so memory stays bounded whatever the dataset size while the common decisions stay warm."""
        for g, m in enumerate(self.memo):
            if len(m) > MEMO_MAX:
                m.clear()
                for key in self.group_attributes[g]:
                    a = self.attr_index.get(key)
                    if a is not None:
                        self.decisions[a] = [None]
                        self.scaled[a] = {}
        if len(self.safety_memo) > MEMO_MAX:
            self.safety_memo.clear()
        if len(self.dress_info) > MEMO_MAX:
            self.dress_info.clear()
        if len(self.comma_cache) > 2 * MEMO_MAX:
            self.comma_cache.clear()

    def _register(self, key: str, d: Optional[Decision]) -> tuple:
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
        lookup, apply = self.ex._lookup, self.ex._apply
        for t in tags:
            apply(lookup(t), t, ev)
        return ev

    def _solve(self, g: int, tags: tuple[str, ...]) -> Any:
        """A group's outcome from its tags, by the reference reader and resolvers."""
        ev = self._replay(tags)
        res = self.ex.resolvers
        if g == G_GENDER:
            count = sum(ev.count_groups.values()) if ev.counts else (1 if ev.solo else None)
            return self._register("Gender", res["Gender"].resolve(ev)), count
        if g == G_DRESS:
            out = self._register("Dress", res["Dress"].resolve(ev))
            if ev.garments or ev.nude or ev.dress_styles:
                out += self._register("Dress Style", self.ex.dress.style(ev))
            return out
        if g == G_RATING:
            severity = self.ex._severity
            return max(ev.ratings, key=lambda r: severity.get(r, 0)) if ev.ratings else None
        key = self.group_keys[g]
        return self._register(key, res[key].resolve(ev))

    def _dress_tag(self, t: str) -> tuple:
        """What one dress tag contributes: (nude?, its primary garment entry or None, the garment
        forms its colour hits name, has a dress-style hit?) - read off the reference reader."""
        info = self.dress_info.get(t)
        if info is None:
            ev = self._replay((t,))
            best = None
            for entry in ev.garments:  # the first entry of the lowest rank, as DressResolver picks
                if best is None or entry[0] < best[0]:
                    best = entry
            info = self.dress_info[t] = (bool(ev.nude), best, frozenset(f for _, f, _ in ev.garment_colors),
                                         bool(ev.dress_styles))
        return info

    def _dress_signature(self, tags: list[str]) -> tuple[str, ...]:
        """The dress group's tags that can change its outcome, in order.

        Outfits are combinatorial, so the full tag tuple rarely repeats; but
        ``DressResolver`` only reads the nude tags (when any), else the primary
        garment (first tag of the lowest rank), the colour tags naming that
        garment's forms, and the first dress-style tag. Replaying just those,
        in their original order, gives the same decisions.
        """
        infos = [self._dress_tag(t) for t in tags]
        nude = [t for t, i in zip(tags, infos) if i[0]]
        if nude:
            return tuple(nude)
        primary = best = None
        first_style = None
        for j, info in enumerate(infos):
            entry = info[1]
            if entry is not None and (best is None or entry[0] < best[0]):
                primary, best = j, entry
            if first_style is None and info[3]:
                first_style = j
        forms = self._garment_forms[best[1]] if best is not None else frozenset()
        return tuple(t for j, (t, info) in enumerate(zip(tags, infos))
                     if j == primary or j == first_style or (info[2] and not info[2].isdisjoint(forms)))

    def _safety(self, tags: tuple[str, ...], age: str, rating: Optional[str]) -> Optional[str]:
        key = (tags, age, rating)
        reason = self.safety_memo.get(key, key)
        if reason is key:
            reason = self.safety_memo[key] = self.ex.safety.reason(self._replay(tags), age, rating)
        return reason

    # -- batch ------------------------------------------------------------------------------

    def table(self, ids: Sequence[Any], texts: Sequence[Any], source_shard: Any, positions: Optional[Sequence[Any]],
              preset_invalid: Optional[Sequence[Optional[str]]],
              guard: Callable[[Any], tuple[Optional[str], Optional[str]]],
              extract_one: Callable[[Any], Extraction]) -> pa.Table:
        """One batch -> one rich table, rows in input order (see module docstring)."""
        self._trim()
        n = len(texts)
        fast_rows: list[int] = []
        slow_rows: list[int] = []
        slow_ex: list[Extraction] = []
        cols = _FastColumns(len(ATTRIBUTES))
        read = self._read
        for i in range(n):
            if preset_invalid is not None and preset_invalid[i]:
                slow_rows.append(i)
                slow_ex.append(Extraction.invalid(preset_invalid[i]))
                continue
            value = texts[i]
            text, reason = guard(value)
            try:
                fast = reason is None and read(text, cols)
            except Exception:  # the per-entry path turns it into an invalid record with the reason
                fast = False
            if fast:
                fast_rows.append(i)
            else:
                slow_rows.append(i)
                slow_ex.append(extract_one(value))
        pos = list(range(n)) if positions is None else list(positions)
        shard = source_shard if source_shard is None or isinstance(source_shard, str) else list(source_shard)
        parts: list[pa.Table] = []
        if fast_rows:
            parts.append(self._build(cols, [ids[i] for i in fast_rows], _pick(shard, fast_rows),
                                     [pos[i] for i in fast_rows]))
        if slow_rows:
            parts.append(extractions_to_table(slow_ex, [ids[i] for i in slow_rows], _pick(shard, slow_rows),
                                              [pos[i] for i in slow_rows]))
        if len(parts) == 1:
            return parts[0]
        if not parts:
            return extractions_to_table([], [], None, [])
        order = np.empty(n, dtype=np.int64)
        order[np.asarray(fast_rows + slow_rows, dtype=np.int64)] = np.arange(n, dtype=np.int64)
        return pa.concat_tables(parts).take(pa.array(order))

    def _comma_item(self, raw: str) -> tuple[tuple, str, bool]:
        """A raw comma-separated item (as split, spaces included) -> (its units, the item as
        read ("" = none), starts a v3.0 body?). Cached: captions repeat the same items."""
        item = clean_item(raw)
        if not item:
            out: tuple[tuple, str, bool] = ((), "", False)
        else:
            entry = self.ex._item_cache.get(item) or self.ex._cache_item(item)
            out = (entry[3] or (), item, is_rating_item(item))
        self.comma_cache[raw] = out
        return out

    def _units(self, text: str) -> Optional[list[tuple[int, str]]]:
        """The caption's units in reading order (header first), or None when it is not an
        ordered-tags caption (prose, prompt lists: the per-entry path). Mirrors ``split_caption``."""
        ex = self.ex
        cc = self.comma_cache
        header: list[str]
        if "|||" in text:
            head, _, body = text.partition("|||")
            header = [info[1] for info in (cc.get(r) or self._comma_item(r) for r in head.split(",")) if info[1]]
            units = [u for r in body.split(",") for u in (cc.get(r) or self._comma_item(r))[0]]
        elif "\n" in text:
            return None
        elif "," in text:
            infos = [cc.get(r) or self._comma_item(r) for r in text.split(",")]
            for j, info in enumerate(infos):
                if info[2]:
                    break
            else:
                return None  # no rating item: a prompt-style list or prose
            header = [info[1] for info in infos[:j] if info[1]]
            units = [u for info in infos[j:] for u in info[0]]
        else:
            tokens, danbooru = danbooru_tokens(text)
            if not danbooru:
                return None
            cache = ex._item_cache
            return [u for r in tokens for u in ((cache.get(r) or ex._cache_item(r))[3] or ())]
        if header:
            units = [u for t, hits in ex._header_units(header) for u in self.units_of(hits, t)] + units
        return units

    def _read(self, text: str, cols: "_FastColumns") -> bool:
        """Read one caption into ``cols``; False (nothing appended) when it needs the per-entry path."""
        units = self._units(text)
        if units is None:
            return False
        sigs: dict[int, list[str]] = {}
        for g, t in units:
            s = sigs.get(g)
            if s is None:
                sigs[g] = [t]
            else:
                s.append(t)
        memo = self.memo
        count = rating = None
        assigns: list[tuple] = []
        safety_tags: tuple = ()
        for g, tags_list in sigs.items():
            if g < 0:  # name lists
                continue
            if g == G_SAFETY:
                safety_tags = tuple(tags_list)
                continue
            tags = self._dress_signature(tags_list) if g == G_DRESS else tuple(tags_list)
            m = memo[g]
            out = m.get(tags)
            if out is None:
                out = m[tags] = self._solve(g, tags)
            if g == G_GENDER:
                assigns.append(out[0])
                count = out[1]
            elif g == G_RATING:
                rating = out
            else:
                assigns.append(out)
        final: list[tuple[int, int]] = []
        age_id = 0
        for pairs in assigns:
            for a, did in pairs:
                if count is None:
                    did = self._scaled(a, did)
                final.append((a, did))
                if a == self._age:
                    age_id = did
        age = self.decisions[self._age][age_id].value if age_id else UNKNOWN
        reason = self._safety(safety_tags, age, rating)
        multi = bool(count and count >= 2)
        if reason is not None:
            status = "excluded"
        elif multi:
            status, reason = "multi_character", f"{count} characters"
        else:
            status = "ok"
        # Nothing above wrote to ``cols``: a caption that raised fell back whole to the per-entry path.
        k = cols.n
        for a, did in final:
            cols.rows[a].append(k)
            cols.ids[a].append(did)
        cols.status.append(status)
        cols.reason.append(reason)
        cols.count.append(count)
        cols.multi.append(multi)
        cols.rating.append(rating)
        cols.characters.append(_unique(sigs.get(-1, [])))
        cols.copyrights.append(_unique(sigs.get(-2, [])))
        cols.artists.append(_unique(sigs.get(-3, [])))
        cols.n = k + 1
        return True

    def _build(self, cols: "_FastColumns", ids: list[Any], shard: Any, positions: list[Any]) -> pa.Table:
        """The rich table of the columnar rows: per attribute, ``take`` from its distinct decisions."""
        n = cols.n
        schema = self.schema
        arrays: dict[str, Any] = {
            "id": pa.array([str(i) for i in ids], pa.string()),
            "source_shard": (pa.nulls(n, pa.string()) if shard is None
                             else pa.array([shard] * n if isinstance(shard, str) else shard, pa.string())),
            "source_position": pa.array(positions, pa.int64()),
            "input_kind": pa.array(["tags"] * n, pa.string()),
            "status": pa.array(cols.status, pa.string()),
            "reason": pa.array(cols.reason, pa.string()),
            "character_count": pa.array(cols.count, pa.int32()),
            "multi_character": pa.array(cols.multi, pa.bool_()),
            "characters": pa.array(cols.characters, schema.field("characters").type),
            "copyrights": pa.array(cols.copyrights, schema.field("copyrights").type),
            "artists": pa.array(cols.artists, schema.field("artists").type),
            "rating": pa.array(cols.rating, pa.string()),
        }
        for a, spec in enumerate(ATTRIBUTES):
            did = np.zeros(n, dtype=np.int64)
            if cols.rows[a]:
                did[np.asarray(cols.rows[a], dtype=np.int64)] = np.asarray(cols.ids[a], dtype=np.int64)
            distinct, inverse = np.unique(did, return_inverse=True)
            ds = [self.decisions[a][j] for j in distinct.tolist()]
            take = pa.array(inverse.reshape(-1).astype(np.int32))
            col = spec.column
            if spec.is_list:
                arrays[col] = pa.array([d.value if d is not None else None for d in ds],
                                       schema.field(col).type).take(take)
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
            for name, vals in ((col, values), (col + "_confidence", confs), (col + "_evidence", evs),
                               (col + "_conflict", confl)):
                arrays[name] = pa.array(vals, schema.field(name).type).take(take)
        return pa.Table.from_arrays([arrays[f.name] for f in schema], schema=schema)


class _FastColumns:
    """Per-row outputs of the columnar rows of one batch (attribute decisions stored sparsely)."""

    __slots__ = ("n", "rows", "ids", "status", "reason", "count", "multi", "rating", "characters", "copyrights",
                 "artists")

    def __init__(self, n_attributes: int) -> None:
        self.n = 0
        self.rows: list[list[int]] = [[] for _ in range(n_attributes)]
        self.ids: list[list[int]] = [[] for _ in range(n_attributes)]
        self.status: list[str] = []
        self.reason: list[Optional[str]] = []
        self.count: list[Optional[int]] = []
        self.multi: list[bool] = []
        self.rating: list[Optional[str]] = []
        self.characters: list[list[str]] = []
        self.copyrights: list[list[str]] = []
        self.artists: list[list[str]] = []


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items)) if len(items) > 1 else items


def _pick(shard: Any, rows: list[int]) -> Any:
    return shard if shard is None or isinstance(shard, str) else [shard[i] for i in rows]
