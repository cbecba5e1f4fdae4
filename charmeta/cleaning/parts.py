"""Each partition's share of the cleaning work, built once per validated file.

Why per partition: dedup and profiles are global, but everything expensive about them
depends on one partition alone - the tag sets, their MinHash band keys (the persisted
LSH index), the per-character value counts (partial aggregates that merge by addition).
Built by the pool worker right after the partition (``export_parts.ensure_part`` calls
``ensure_part`` here), the global steps only read small columns of these files, and a
new shard adds one part instead of recomputing the dataset.

A part is two Parquet files and a marker under ``<root>/cleaning_parts/``:

* ``<key>.rows.parquet`` - one row per non-invalid entry: position, id, status, folded
  character name (when the entry names exactly one), completeness, mean core confidence,
  ``sexual`` (sexual rating or sexual tag/word, contract section 4), the exact set hash,
  the tag count, the tags' 32-bit hashes, ascending within the row (for the exact Jaccard of
  candidate pairs: reading them costs a tenth of re-reading and re-splitting the texts, and
  sorted they merge instead of sorting), one LSH band key per band
  (null under ``min_tokens`` tags), image ``sha256`` / ``phash`` for image rows;
* ``<key>.profile.parquet`` - ``character, attribute, value, n``: the partial aggregate (plus
  one ``(entries)`` row per character: its entries, the denominator of coverage);
* ``<key>.json`` - written last: validated file identity, policy digest, counts.
"""

from __future__ import annotations

import json
import logging
import os
from functools import lru_cache
from importlib import resources
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from charmeta import duck
from charmeta.cleaning.config import CleaningPolicy, load_policy
from charmeta.cleaning.signatures import part_signatures, tag_codes
from charmeta.contract import ATTRIBUTES, UNKNOWN
from charmeta.duck import sql_string
from charmeta.file_identity import identity

log = logging.getLogger("charmeta.cleaning")

PART_DIR = "cleaning_parts"
#: Bump when a part's columns change meaning: parts of another version are rebuilt.
PART_VERSION = 5
_SCALARS = [a for a in ATTRIBUTES if not a.is_list]
_CORE = [a for a in ATTRIBUTES if a.is_core]
#: Columns of uniformly distributed hashes (plus the ``b<j>`` band keys).
_HASH_COLS = {"set_hash", "tokens", *(f"b{j}" for j in range(64))}


def part_paths(root: str, key: str) -> tuple[str, str, str]:
    """``(rows, profile, marker)`` paths of a partition's cleaning part."""
    base = os.path.join(root, PART_DIR, key)
    return base + ".rows.parquet", base + ".profile.parquet", base + ".json"


def _validated(root: str, key: str) -> str:
    return os.path.join(root, "validated_records", key + ".parquet")


def fold_name_sql(col: str, policy: CleaningPolicy) -> str:
    """DuckDB expression folding a character name: lower, ``_`` -> space, ``\\(`` -> ``(``,
    whitespace collapsed, then the policy's alias map."""
    base = f"trim(regexp_replace(replace(replace(lower({col}), '_', ' '), '\\', ''), '\\s+', ' ', 'g'))"
    if not policy.aliases:
        return base
    pairs = ", ".join(f"{sql_string(k)}: {sql_string(v)}" for k, v in sorted(policy.aliases.items()))
    return f"coalesce(MAP {{{pairs}}}[{base}], {base})"


@lru_cache(maxsize=1)
def _sexual_terms() -> pa.Array:
    """The safety rule's sexual tags and words, normalized like tags (contract section 4)."""
    raw = json.loads(resources.files("charmeta").joinpath("data/ontology/safety.json").read_text(encoding="utf-8"))
    terms = {t.replace("_", " ").lower() for t in [*raw.get("sexual_tags", []), *raw.get("sexual_words", [])]}
    return pa.array(sorted(terms), pa.string())


@lru_cache(maxsize=1)
def _sexual_ratings() -> list[str]:
    raw = json.loads(resources.files("charmeta").joinpath("data/ontology/safety.json").read_text(encoding="utf-8"))
    return list(raw.get("sexual_ratings", ["questionable", "explicit"]))


def texts_at(norm_path: str, positions: np.ndarray) -> pa.Array | pa.ChunkedArray:
    """The normalized texts of a partition at ``positions`` (null where the file or row is missing)."""
    if not os.path.exists(norm_path):
        return pa.nulls(len(positions), pa.string())
    t = pq.read_table(norm_path, columns=["source_position", "text"], use_threads=False)  # 0.04 s of CPU, 0.11 threaded
    return align_texts(t.column("source_position").to_numpy(), t.column("text"), positions)


def align_texts(pos: np.ndarray, text: pa.Array | pa.ChunkedArray, positions: np.ndarray) -> pa.Array | pa.ChunkedArray:
    """``text`` (one per ``pos``) at ``positions``, null where a position has no text."""
    if len(pos) == len(positions) and np.array_equal(pos, positions):
        return text  # the usual case: no invalid row left out (chunks kept: tag_codes takes from them)
    return take_found(text, *index_of(pos, positions))


def index_of(keys: np.ndarray, at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(index into keys, found)`` of each value of ``at`` among ``keys`` (the first of equal keys;
    any order). Why not a join: the stage files are in position order, so this is usually one
    searchsorted, no sort."""
    if not len(keys):
        return np.zeros(len(at), np.int64), np.zeros(len(at), bool)
    order = None
    if len(keys) > 1 and not bool(np.all(keys[1:] > keys[:-1])):
        order = np.argsort(keys, kind="stable")
        keys = keys[order]
    i = np.minimum(np.searchsorted(keys, at), len(keys) - 1)
    found = keys[i] == at
    return (i if order is None else order[i]), found


def take_found(values: pa.Array | pa.ChunkedArray, idx: np.ndarray, found: np.ndarray) -> pa.Array:
    """``values[idx]`` where ``found``, null elsewhere (``index_of``'s answer)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    return values.take(pa.array(idx, mask=~found)) if len(values) else pa.nulls(len(idx), values.type)


def read_part(root: str, key: str, policy: CleaningPolicy | None = None) -> dict[str, Any] | None:
    """The marker when the part is current for the partition's validated file and policy, else None."""
    policy = policy or load_policy()
    rows, prof, marker = part_paths(root, key)
    try:
        with open(marker, encoding="utf-8") as fh:
            meta = json.load(fh)
        if meta.get("version") != PART_VERSION or meta.get("policy") != policy.digest:
            return None
        if meta.get("duckdb") != duckdb.__version__:  # token hashes are DuckDB's hash()
            return None
        if meta.get("validated") != list(identity(_validated(root, key))):
            return None
        if not (os.path.exists(rows) and os.path.exists(prof)):
            return None
    except (OSError, ValueError):
        return None
    return meta


#: A partition's normalized ``(source_position, text)`` columns, held by the pass that wrote them.
Texts = tuple[np.ndarray, "pa.Array | pa.ChunkedArray"]


def ensure_part(
    root: str, key: str, policy: CleaningPolicy | None = None, con: Any = None, texts: Texts | None = None
) -> dict[str, Any]:
    """The current part's marker, building it first when missing or stale."""
    policy = policy or load_policy()
    meta = read_part(root, key, policy)
    return meta if meta is not None else build_part(root, key, policy, con, texts)


def build_part(
    root: str, key: str, policy: CleaningPolicy | None = None, con: Any = None, texts: Texts | None = None
) -> dict[str, Any]:
    """Build the cleaning part of ``key`` from its validated (+ normalized, image) files.

    ``texts``: the normalized ``(source_position, text)`` columns when the caller holds them -
    the pool worker that has just written normalized_records (``pipeline.chain``); else they
    are read from that file (0.04 s of CPU per 100k rows)."""
    policy = policy or load_policy()
    own = con is None
    if own:
        con = duck.connect()
        con.execute("SET threads = 1")
    try:
        return _build(root, key, policy, con, texts)
    finally:
        if own:
            con.close()


def _build(root: str, key: str, policy: CleaningPolicy, con: Any, texts: Texts | None = None) -> dict[str, Any]:
    src = _validated(root, key)
    ident = identity(src)
    v = _validated_rows(src)
    n = v.num_rows
    pos = v.column("source_position").to_numpy()
    character = _characters(v.column("characters"), policy, con)
    sha256, phash = _image_hashes(os.path.join(root, "normalized_images", key + ".parquet"), pos)
    norm = os.path.join(root, "normalized_records", key + ".parquet")
    codes = tag_codes(texts_at(norm, pos) if texts is None else align_texts(texts[0], texts[1], pos), con)
    sexual_tag = np.asarray(pc.is_in(codes.dictionary, value_set=_sexual_terms()).to_numpy(zero_copy_only=False), bool)
    sig = part_signatures(codes, policy.num_perm, policy.bands, sexual_tag)
    sexual = sig.flagged | _is_in(v.column("rating"), _sexual_ratings())
    near = sig.ntok >= policy.min_tokens
    status = v.column("status").cast(pa.string())
    cols: dict[str, Any] = {
        "pos": pa.array(pos),
        "id": v.column("id"),
        "status": status,
        "character": character,
        "completeness": pa.array(_completeness(v)),
        "confidence": pa.array(_confidence(v)),
        "sexual": pa.array(sexual),
        "set_hash": pa.array(sig.set_hash),
        "ntok": pa.array(sig.ntok),
        "tokens": sig.tokens,
        "sha256": sha256,
        "phash": phash,
    }
    for j in range(policy.bands):
        cols[f"b{j}"] = pa.array(sig.keys[:, j], mask=~near)
    rows_tbl = pa.table(cols)
    profile = _profile(character, status, v, policy)
    rows_path, prof_path, marker = part_paths(root, key)
    os.makedirs(os.path.dirname(rows_path), exist_ok=True)
    tmp = f".tmp-{os.getpid()}"
    try:
        pq.write_table(
            rows_tbl,
            rows_path + tmp,
            # hashes do not compress and are all distinct: no dictionary / zstd attempt on them
            # (the part's write took 0.16 of 1.3 s CPU per 100k rows with zstd + dictionary on all);
            # ids are distinct too (no dictionary) and positions ascend (delta-encoded, not zstd:
            # 0.9 ms instead of 6.5 ms per 100k rows, and smaller)
            compression={c: ("none" if c in _HASH_COLS or c == "pos" else "zstd") for c in rows_tbl.column_names},
            use_dictionary=[c for c in rows_tbl.column_names if c not in _HASH_COLS and c not in ("pos", "id")],
            column_encoding={"pos": "DELTA_BINARY_PACKED"},
        )
        pq.write_table(profile, prof_path + tmp, compression="zstd")
        meta = {
            "version": PART_VERSION,
            "key": key,
            "validated": list(ident),
            "policy": policy.digest,
            "duckdb": duckdb.__version__,
            "rows": rows_tbl.num_rows,
            "named": int(n - character.null_count),
            "profile_rows": profile.num_rows,
        }
        with open(marker + tmp, "w", encoding="utf-8") as fh:
            json.dump(meta, fh)
        os.replace(rows_path + tmp, rows_path)
        os.replace(prof_path + tmp, prof_path)
        os.replace(marker + tmp, marker)
    except BaseException:
        for p in (rows_path, prof_path, marker):
            if os.path.exists(p + tmp):
                os.remove(p + tmp)
        raise
    return meta


def _validated_rows(src: str) -> pa.Table:
    """The columns the part needs of the partition's non-invalid rows, in position order; the scalar
    attributes, status and rating as dictionary columns with one dictionary each (the per-row work
    below is then numpy over small int codes: 0.03 s of CPU per 100k rows where the former DuckDB
    query - name folding per row, UNPIVOT for the profile - took 0.28 s)."""
    dict_cols = ["status", "rating", *(a.column for a in _SCALARS)]
    cols = [
        "source_position",
        "id",
        *dict_cols,
        "characters",
        *(a.column for a in ATTRIBUTES if a.is_list),
        *(a.column + "_confidence" for a in _CORE),
    ]
    t = pq.read_table(src, columns=cols, read_dictionary=dict_cols, use_threads=False)
    t = t.unify_dictionaries().combine_chunks()
    status = t.column("status").chunk(0) if t.num_rows else None
    if status is not None:
        invalid = np.asarray(pc.equal(status.dictionary, "invalid").to_numpy(zero_copy_only=False), bool)
        if invalid.any():
            t = t.filter(pa.array(~invalid[status.indices.to_numpy(zero_copy_only=False)]))
    pos = t.column("source_position").to_numpy()
    if len(pos) > 1 and not bool(np.all(pos[1:] >= pos[:-1])):
        t = t.take(pa.array(np.argsort(pos, kind="stable")))
    return t.combine_chunks()


def _codes(col: pa.ChunkedArray) -> tuple[np.ndarray, pa.Array]:
    """``(codes, dictionary)`` of a one-chunk dictionary column; a null is code ``len(dictionary)``."""
    if col.num_chunks == 0:
        return np.zeros(0, np.int64), pa.array([], pa.string())
    arr = col.chunk(0)
    d = arr.dictionary
    codes = arr.indices.fill_null(len(d)).to_numpy(zero_copy_only=False).astype(np.int64)
    return codes, d


def _is_in(col: pa.ChunkedArray, values: list[str]) -> np.ndarray:
    """Per row: the (dictionary) value is one of ``values`` (null: False)."""
    codes, d = _codes(col)
    hit = np.asarray(pc.is_in(d, value_set=pa.array(values, pa.string())).to_numpy(zero_copy_only=False), bool)
    return np.append(hit, False)[codes]


def _known(col: pa.ChunkedArray) -> np.ndarray:
    """Per row: a scalar attribute carries a value (not null, not ``Unknown``)."""
    codes, d = _codes(col)
    return _known_values(d)[codes]


def _known_values(dictionary: pa.Array) -> np.ndarray:
    """Per ``_codes`` code: the value is known (not ``Unknown``); the null code last, False."""
    known = np.asarray(pc.not_equal(dictionary, UNKNOWN).fill_null(False).to_numpy(zero_copy_only=False), bool)
    return np.append(known, False)


def _completeness(v: pa.Table) -> np.ndarray:
    """Core attributes known + optional keys present (scalars not null / ``Unknown``, lists non-empty)."""
    out = np.zeros(v.num_rows, np.int8)
    for a in ATTRIBUTES:
        col = v.column(a.column)
        if a.is_list:
            out += np.asarray(pc.fill_null(pc.greater(pc.list_value_length(col), 0), False), bool)
        else:
            out += _known(col)
    return out


def _confidence(v: pa.Table) -> np.ndarray:
    """Mean core confidence (null counts 0), float32 and summed left to right in float32, as the
    former SQL did (``FLOAT + FLOAT`` is ``FLOAT`` in DuckDB): the keep rule's tie-break stays the same."""
    acc: np.ndarray | None = None
    for a in _CORE:
        col = v.column(a.column + "_confidence")
        c = np.asarray((col.fill_null(0.0) if col.null_count else col).to_numpy(), np.float32)
        acc = c.copy() if acc is None else acc + c
    if acc is None:
        return np.zeros(v.num_rows, np.float32)
    return (acc / np.float32(len(_CORE))).astype(np.float32)


def _characters(chars: pa.ChunkedArray, policy: CleaningPolicy, con: Any) -> pa.Array:
    """The folded name of each row that names exactly one character (else null): the distinct
    names go through ``fold_name_sql`` (a few thousand per partition, not one regex per row)."""
    arr = chars.combine_chunks() if isinstance(chars, pa.ChunkedArray) else chars
    n = len(arr)
    if n == 0:
        return pa.array([], pa.string())
    one = np.asarray(pc.fill_null(pc.equal(pc.list_value_length(arr), 1), False), bool)
    offsets = arr.offsets.to_numpy()[:-1]
    first = arr.values.take(pa.array(offsets[one]))
    enc = pc.dictionary_encode(first)
    names = pa.table({"n": enc.dictionary})  # noqa: F841 - read by DuckDB below
    folded = con.sql(f"SELECT {fold_name_sql('n', policy)} AS f FROM names").to_arrow_table().column(0)
    out = pa.nulls(n, pa.string())
    if len(first):
        idx = np.full(n, -1, np.int64)
        codes = enc.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
        idx[one] = codes
        taken = folded.combine_chunks().take(pa.array(np.maximum(idx, 0)))
        out = pc.if_else(pa.array(idx >= 0), taken, pa.scalar(None, pa.string()))
    return out


def _image_hashes(imgs: str, pos: np.ndarray) -> tuple[pa.Array, pa.Array]:
    """``sha256, phash`` of each row's ok image (null for text rows), aligned by source position."""
    n = len(pos)
    if not os.path.exists(imgs) or not pq.ParquetFile(imgs).metadata.num_rows:
        return pa.nulls(n, pa.string()), pa.nulls(n, pa.string())
    t = pq.read_table(imgs, columns=["source_position", "sha256", "phash", "status"], use_threads=False)
    t = t.filter(pc.equal(t.column("status"), "ok"))
    idx, found = index_of(t.column("source_position").to_numpy(), pos)
    return (
        take_found(t.column("sha256").cast(pa.string()), idx, found),
        take_found(t.column("phash").cast(pa.string()), idx, found),
    )


def _count_pairs(keys: np.ndarray, space: int) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(keys, return_counts=True)``: a bincount when the key space is small (the usual
    case: characters x values of one attribute; 12 sorts of ~60k keys were 0.03 s per 100k rows)."""
    if space <= 4 * len(keys) + (1 << 20):
        counts = np.bincount(keys, minlength=space)
        pair = np.flatnonzero(counts)
        return pair, counts[pair]
    return np.unique(keys, return_counts=True)


def _profile(character: pa.Array, status: pa.Array, v: pa.Table, policy: CleaningPolicy) -> pa.Table:
    """``character, attribute, value, n`` over the part's single-character entries whose status
    counts (``profiles.statuses``), known values only (``Unknown`` / absent carry nothing), plus
    one ``(entries)`` row per character; sorted by all columns. Counted with numpy over the
    columns' dictionary codes (the former DuckDB UNPIVOT + GROUP BY: 0.12 s per 100k rows)."""
    attrs = [a for a in _SCALARS if a.key in policy.profile_attributes]
    if not attrs:
        return pa.table({"character": pa.array([], pa.string())})
    counted = np.asarray(
        pc.and_(
            pc.is_valid(character), pc.is_in(status, value_set=pa.array(list(policy.profile_statuses), pa.string()))
        )
        .fill_null(False)
        .to_numpy(zero_copy_only=False),
        bool,
    )
    enc = pc.dictionary_encode(character.filter(pa.array(counted)))
    names = enc.dictionary
    ch = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    # rows as (character, attribute, value, n) codes, sorted by (character, attribute, value) ranks:
    # one take per column at the end instead of a table per attribute and a sort of strings
    labels = sorted([a.key for a in attrs] + ["(entries)"])  # str order = UTF-8 byte order
    values: list[pa.Array] = [pa.array([""], pa.string())]  # the (entries) rows' value
    cols: dict[str, list[np.ndarray]] = {"ch": [], "attr": [], "val": [], "rank": [], "n": []}
    base = 1
    for a in attrs:
        codes, d = _codes(v.column(a.column))
        codes = codes[counted]
        sel = _known_values(d)[codes]
        pair, n = _count_pairs(ch[sel] * (len(d) + 1) + codes[sel], len(names) * (len(d) + 1))
        code = pair % (len(d) + 1)
        rank = np.empty(len(d), np.int64)
        rank[pc.sort_indices(d).to_numpy()] = np.arange(len(d))
        cols["ch"].append(pair // (len(d) + 1))
        cols["attr"].append(np.full(len(pair), labels.index(a.key)))
        cols["val"].append(base + code)
        cols["rank"].append(rank[code])
        cols["n"].append(n)
        values.append(d.cast(pa.string()))
        base += len(d)
    per = np.bincount(ch, minlength=len(names))
    has = np.flatnonzero(per)
    cols["ch"].append(has)
    cols["attr"].append(np.full(len(has), labels.index("(entries)")))
    cols["val"].append(np.zeros(len(has), np.int64))
    cols["rank"].append(np.zeros(len(has), np.int64))
    cols["n"].append(per[has])
    c, at, va, vr, n = (np.concatenate(cols[k]).astype(np.int64) for k in ("ch", "attr", "val", "rank", "n"))
    name_rank = np.empty(len(names), np.int64)
    name_rank[pc.sort_indices(names).to_numpy()] = np.arange(len(names))
    order = np.lexsort((vr, at, name_rank[c]))  # (character, attribute, value) unique: n never decides
    return pa.table(
        {
            "character": names.take(pa.array(c[order])),
            "attribute": pa.array(labels, pa.string()).take(pa.array(at[order])),
            "value": pa.concat_arrays(values).take(pa.array(va[order])),
            "n": pa.array(n[order]),
        }
    )
