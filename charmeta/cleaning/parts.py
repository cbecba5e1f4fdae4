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
from importlib import resources
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from charmeta import duck
from charmeta.cleaning.config import CleaningPolicy, load_policy
from charmeta.cleaning.signatures import band_keys, minhash, set_hashes, sorted_token_lists, token_hashes
from charmeta.contract import ATTRIBUTES, UNKNOWN
from charmeta.duck import sql_ident, sql_string
from charmeta.export_lines import in_position_order
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


def _sexual_terms() -> pa.Array:
    """The safety rule's sexual tags and words, normalized like tags (contract section 4)."""
    raw = json.loads(resources.files("charmeta").joinpath("data/ontology/safety.json").read_text(encoding="utf-8"))
    terms = {t.replace("_", " ").lower() for t in [*raw.get("sexual_tags", []), *raw.get("sexual_words", [])]}
    return pa.array(sorted(terms), pa.string())


def _sexual_ratings() -> list[str]:
    raw = json.loads(resources.files("charmeta").joinpath("data/ontology/safety.json").read_text(encoding="utf-8"))
    return list(raw.get("sexual_ratings", ["questionable", "explicit"]))


def texts_at(norm_path: str, positions: np.ndarray) -> pa.Array:
    """The normalized texts of a partition at ``positions`` (null where the file or row is missing).
    The stage files are in position order, so this is a searchsorted + take, no join."""
    if not os.path.exists(norm_path):
        return pa.nulls(len(positions), pa.string())
    t = pq.read_table(norm_path, columns=["source_position", "text"])
    pos = t.column("source_position").to_numpy()
    if len(pos) == len(positions) and np.array_equal(pos, positions):
        return t.column("text").combine_chunks()  # the usual case: no invalid row left out
    order = None
    if len(pos) > 1 and not bool(np.all(pos[1:] >= pos[:-1])):
        order = np.argsort(pos, kind="stable")
        pos = pos[order]
    at = np.searchsorted(pos, positions)
    found = (at < len(pos)) & (pos[np.minimum(at, max(len(pos) - 1, 0))] == positions) if len(pos) else at < 0
    idx = at if order is None else order[np.minimum(at, len(order) - 1)]
    texts = t.column("text").combine_chunks().take(pa.array(np.where(found, idx, 0))) if len(pos) else None
    if texts is None:
        return pa.nulls(len(positions), pa.string())
    return pc.if_else(pa.array(found), texts, pa.scalar(None, pa.string()))


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


def ensure_part(root: str, key: str, policy: CleaningPolicy | None = None, con: Any = None) -> dict[str, Any]:
    """The current part's marker, building it first when missing or stale."""
    policy = policy or load_policy()
    meta = read_part(root, key, policy)
    return meta if meta is not None else build_part(root, key, policy, con)


def build_part(root: str, key: str, policy: CleaningPolicy | None = None, con: Any = None) -> dict[str, Any]:
    """Build the cleaning part of ``key`` from its validated (+ normalized, image) files."""
    policy = policy or load_policy()
    own = con is None
    if own:
        con = duck.connect()
        con.execute("SET threads = 1")
    try:
        return _build(root, key, policy, con)
    finally:
        if own:
            con.close()


def _build(root: str, key: str, policy: CleaningPolicy, con: Any) -> dict[str, Any]:
    src = _validated(root, key)
    ident = identity(src)
    norm = os.path.join(root, "normalized_records", key + ".parquet")
    imgs = os.path.join(root, "normalized_images", key + ".parquet")
    img_cols, img_join = "NULL::VARCHAR AS sha256, NULL::VARCHAR AS phash", ""
    if os.path.exists(imgs) and pq.ParquetFile(imgs).metadata.num_rows:
        img_cols = "i.sha256, i.phash"
        img_join = (
            f"LEFT JOIN (SELECT source_position, sha256, phash FROM read_parquet({sql_string(imgs)}) "
            "WHERE status = 'ok') i USING (source_position)"
        )
    known = [
        f"({sql_ident(a.column)} IS NOT NULL AND {sql_ident(a.column)} <> '{UNKNOWN}')::INT"
        if not a.is_list
        else f"(coalesce(len({sql_ident(a.column)}), 0) > 0)::INT"
        for a in ATTRIBUTES
    ]
    conf = " + ".join(f"coalesce({sql_ident(a.column + '_confidence')}, 0)" for a in _CORE)
    ratings = ", ".join(sql_string(r) for r in _sexual_ratings())
    name = fold_name_sql("v.characters[1]", policy)
    attr_cols = ", ".join(f"v.{sql_ident(a.column)}" for a in _SCALARS)
    con.execute("SET preserve_insertion_order = true")
    rows_in = con.sql(
        f"""
        SELECT v.source_position AS pos, v.id, v.status,
               CASE WHEN len(v.characters) = 1 THEN {name} END AS character,
               ({" + ".join(known)})::TINYINT AS completeness,
               (({conf}) / {len(_CORE)})::FLOAT AS confidence,
               coalesce(v.rating IN ({ratings}), false) AS sexual_rating,
               {img_cols}, {attr_cols}
        FROM read_parquet({sql_string(src)}) v {img_join}
        WHERE v.status <> 'invalid'{"" if in_position_order(src) else " ORDER BY v.source_position"}
        """
    ).to_arrow_table()
    n = rows_in.num_rows
    rows, hashes, dictionary, idx = token_hashes(texts_at(norm, rows_in["pos"].to_numpy()), con)
    sexual_tok = np.asarray(pc.is_in(dictionary, value_set=_sexual_terms()).to_numpy(zero_copy_only=False), bool)
    sexual = np.bincount(rows, weights=sexual_tok[idx], minlength=n) > 0 if len(rows) else np.zeros(n, bool)
    sexual |= np.asarray(rows_in.column("sexual_rating").to_numpy(), dtype=bool)
    ntok = np.bincount(rows, minlength=n).astype(np.int32) if len(rows) else np.zeros(n, np.int32)
    sig = minhash(rows, hashes, n, policy.num_perm)
    keys = band_keys(sig, policy.bands)
    near = ntok >= policy.min_tokens
    cols: dict[str, Any] = {
        "pos": rows_in["pos"],
        "id": rows_in["id"],
        "status": rows_in["status"],
        "character": rows_in["character"],
        "completeness": rows_in["completeness"],
        "confidence": rows_in["confidence"],
        "sexual": pa.array(sexual),
        "set_hash": pa.array(set_hashes(rows, hashes, n)),
        "ntok": pa.array(ntok),
        "tokens": sorted_token_lists(rows, hashes, n),
        "sha256": rows_in["sha256"],
        "phash": rows_in["phash"],
    }
    for j in range(policy.bands):
        cols[f"b{j}"] = pa.array(keys[:, j], mask=~near)
    rows_tbl = pa.table(cols)
    profile = _profile(con, rows_in, policy)
    rows_path, prof_path, marker = part_paths(root, key)
    os.makedirs(os.path.dirname(rows_path), exist_ok=True)
    tmp = f".tmp-{os.getpid()}"
    try:
        pq.write_table(
            rows_tbl,
            rows_path + tmp,
            # hashes do not compress and are all distinct: no dictionary / zstd attempt on them
            # (the part's write took 0.16 of 1.3 s CPU per 100k rows with zstd + dictionary on all)
            compression={c: ("none" if c in _HASH_COLS else "zstd") for c in rows_tbl.column_names},
            use_dictionary=[c for c in rows_tbl.column_names if c not in _HASH_COLS],
        )
        pq.write_table(profile, prof_path + tmp, compression="zstd")
        meta = {
            "version": PART_VERSION,
            "key": key,
            "validated": list(ident),
            "policy": policy.digest,
            "duckdb": duckdb.__version__,
            "rows": rows_tbl.num_rows,
            "named": int(rows_in.num_rows - rows_in["character"].null_count),
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


def _profile(con: Any, rows_in: pa.Table, policy: CleaningPolicy) -> pa.Table:
    """``character, attribute, value, n`` over the part's single-character entries whose status
    counts (``profiles.statuses``), known values only (``Unknown`` / absent carry nothing)."""
    attrs = [a for a in _SCALARS if a.key in policy.profile_attributes]
    statuses = ", ".join(sql_string(s) for s in policy.profile_statuses)
    if not attrs:
        return pa.table({"character": pa.array([], pa.string())})
    cols = ", ".join(sql_ident(a.column) for a in attrs)
    names = ", ".join(f"{sql_string(a.column)}: {sql_string(a.key)}" for a in attrs)
    con.register("rows_in", rows_in)
    try:
        return _profile_query(con, cols, names, statuses)
    finally:
        con.unregister("rows_in")


def _profile_query(con: Any, cols: str, names: str, statuses: str) -> pa.Table:
    return con.sql(
        f"""
        SELECT character, MAP {{{names}}}[col] AS attribute, value, count(*)::BIGINT AS n
        FROM (UNPIVOT (SELECT character, {cols} FROM rows_in
                       WHERE character IS NOT NULL AND status IN ({statuses}))
              ON {cols} INTO NAME col VALUE value)
        WHERE value IS NOT NULL AND value <> '{UNKNOWN}'
        GROUP BY ALL
        UNION ALL
        SELECT character, '(entries)' AS attribute, '' AS value, count(*)::BIGINT AS n FROM rows_in
        WHERE character IS NOT NULL AND status IN ({statuses}) GROUP BY ALL
        ORDER BY ALL
        """
    ).to_arrow_table()
