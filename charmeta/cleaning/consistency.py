"""One consistent identity per character in the export, and one entry per duplicate cluster.

Per partition, Arrow kernels line the validated rows up with the partition's cleaning part
(folded character, ``sexual``, by position), the character consensus (``character_profiles``,
one wide row per character) and the duplicate clusters, and decide per row:

* **fill** - an ``ok`` entry's ``Unknown`` (or absent optional) stable trait (policy
  ``traits: fill``) takes its character's consensus value;
* **identity_conflict** - an entry whose own known value of a stable trait differs from a
  *strong* consensus (``conflicts`` thresholds) is flagged and keeps its value;
* **identity_excluded** - an ``ok`` entry with sexual content whose Age is ``Unknown`` and
  whose character's Age consensus is Child or Teen moves INTO ``excluded`` (whether or not
  Age is a fill trait; the safety rule errs on the side of exclusion). Filling touches
  ``ok`` entries only, so no filled value can ever move an entry out of ``excluded``;
* **dropped** - an ``ok`` entry with a ``duplicate_of`` (another member is kept).

Outputs under ``<root>/cleaning/``: ``identity/<key>.parquet`` (long form: one row per
fill or conflict with the entry's value, the consensus value, its support and agreement
and ``source = 'identity'``; excluded / dropped rows with their reason) and, when a
partition has any decision, ``export/<key>.jsonl`` - its clean lines with the fills
applied and the dropped / excluded rows left out - rebuilt only when the partition's
decisions change (their digest is in ``export/<key>.json``). A partition without
decisions exports its ``export_parts`` lines as they are.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from charmeta import duck
from charmeta.cleaning.config import CleaningPolicy, load_policy
from charmeta.cleaning.parts import index_of, part_paths, take_found
from charmeta.cleaning.profiles import CLEAN_DIR
from charmeta.contract import ATTRIBUTES, UNKNOWN
from charmeta.duck import sql_ident, sql_string
from charmeta.export_lines import clean_json_sql, in_position_order, write_lines
from charmeta.file_identity import identity

_BY_KEY = {a.key: a for a in ATTRIBUTES}
MINOR_AGES = ("Child", "Teen")
#: Bump when the decisions or lines change meaning.
DECISION_VERSION = 2


def consensus_wide(profiles: pa.Table, policy: CleaningPolicy) -> pa.Table:
    """One row per character: per fill trait its consensus value / support / agreement and its
    strong value; plus the Age consensus (for the safety re-check)."""
    con = duck.connect()
    try:
        cols = []
        for key in policy.fill_attributes:
            c = _BY_KEY[key].column
            k = sql_string(key)
            cols += [
                f"any_value(canonical) FILTER (WHERE attribute = {k} AND consensus) AS {sql_ident('c_' + c)}",
                f"any_value(support) FILTER (WHERE attribute = {k} AND consensus) AS {sql_ident('s_' + c)}",
                f"any_value(agreement) FILTER (WHERE attribute = {k} AND consensus) AS {sql_ident('a_' + c)}",
                f"any_value(canonical) FILTER (WHERE attribute = {k} AND strong) AS {sql_ident('k_' + c)}",
                f"any_value(support) FILTER (WHERE attribute = {k} AND strong) AS {sql_ident('ks_' + c)}",
                f"any_value(agreement) FILTER (WHERE attribute = {k} AND strong) AS {sql_ident('ka_' + c)}",
            ]
        cols += [
            "any_value(canonical) FILTER (WHERE attribute = 'Age' AND consensus) AS age_consensus",
            "any_value(support) FILTER (WHERE attribute = 'Age' AND consensus) AS age_support",
            "any_value(agreement) FILTER (WHERE attribute = 'Age' AND consensus) AS age_agreement",
        ]
        return con.sql(
            f"SELECT character, {', '.join(cols)} FROM profiles WHERE consensus OR strong GROUP BY character"
        ).to_arrow_table()
    finally:
        con.close()


def decide_partition(root: str, key: str, consensus: pa.Table, dups: pa.Table, policy: CleaningPolicy) -> Decisions:
    """The partition's per-row decisions (in the validated file's row order) and its identity rows.

    Arrow kernels over the validated rows: the part's character / ``sexual`` aligned by
    position, the character's consensus row found once (``index_in``), then per fill trait
    its fill, conflict, and the consensus values gathered for the rows that carry a decision
    only. Before, one DuckDB query joined everything into a 58-column row per entry (the
    consensus' 6 values of each trait for every row) and a second one unpivoted it: 0.18-0.19 s
    of CPU a 100k-row partition, 0.08-0.09 s now (3M synthetic set, 10 partitions, 2 rounds; the
    attribute columns read as dictionaries and compared per distinct value, not per row),
    the same identity table (``NULL`` logic kept: a comparison with a null is null,
    ``CASE WHEN null`` gives null, ``AND`` is Kleene's)."""
    path = os.path.join(root, "validated_records", key + ".parquet")
    cols = [_BY_KEY[k].column for k in policy.fill_attributes]
    coded = list(dict.fromkeys(["status", "age", *cols]))
    # the attribute columns as dictionaries: a few distinct values, compared and mapped once per
    # distinct value (reading them so halved the read: 0.010 vs 0.019 s CPU per 100k rows)
    v = pq.read_table(path, columns=["source_position", "id", *coded], read_dictionary=coded)
    part = pq.read_table(part_paths(root, key)[0], columns=["pos", "character", "sexual"])
    pos = v.column("source_position").to_numpy()
    at, found = index_of(part.column("pos").to_numpy(), pos)
    character = take_found(part.column("character"), at, found)
    sexual = pc.fill_null(take_found(part.column("sexual"), at, found), False)
    ci = pc.index_in(character, value_set=consensus.column("character").combine_chunks(), skip_nulls=True)
    has = np.asarray(pc.is_valid(ci).to_numpy(zero_copy_only=False), bool)
    ci_np = np.asarray(ci.fill_null(0).to_numpy(zero_copy_only=False), np.int64)
    di, dfound = index_of(dups.column("source_position").to_numpy(), pos)
    duplicate_of = take_found(dups.column("duplicate_of"), di, dfound)
    ok = pc.equal(v.column("status").combine_chunks(), "ok")

    def per_row(per_character: np.ndarray, missing: Any) -> np.ndarray:
        """A per-character value for each row (``missing`` where the row has no consensus row)."""
        if not len(per_character):
            return np.full(len(pos), missing, per_character.dtype)
        return np.where(has, per_character[ci_np], missing)

    age_fill = "age" in cols
    if policy.recheck_minor_consensus or age_fill:
        minor_char = pc.fill_null(pc.is_in(consensus.column("age_consensus"), value_set=pa.array(MINOR_AGES)), False)
        minor_age = pa.array(per_row(np.asarray(minor_char.to_numpy(zero_copy_only=False), bool), False))
    else:
        minor_age = pa.array(np.zeros(len(pos), bool))
    excluded = pc.and_kleene(
        pc.and_kleene(pc.and_kleene(ok, pc.equal(v.column("age").combine_chunks(), UNKNOWN)), sexual), minor_age
    )
    out: dict[str, Any] = {
        "pos": v.column("source_position"),
        "duplicate_of": duplicate_of,
        "identity_excluded": excluded,
    }
    ok_np = np.asarray(ok.to_numpy(zero_copy_only=False), bool)
    pieces: list[tuple[str | None, str, np.ndarray, Any, Any, Any, Any]] = []
    for k, c in zip(policy.fill_attributes, cols):
        own = v.column(c).combine_chunks()  # dictionary<string>
        cons, strong = consensus.column("c_" + c).combine_chunks(), consensus.column("k_" + c).combine_chunks()
        vocab = pc.unique(pa.concat_arrays([cons, strong]).drop_null())
        cons_code = per_row(_codes(cons, vocab), -1)
        strong_code = per_row(_codes(strong, vocab), -1)
        own_idx = np.asarray(own.indices.fill_null(-1).to_numpy(zero_copy_only=False), np.int64)
        own_code = np.where(own_idx >= 0, np.append(_codes(own.dictionary, vocab), -1)[own_idx], -1)
        unknown_value = np.append(
            np.asarray(pc.equal(own.dictionary, UNKNOWN).to_numpy(zero_copy_only=False), bool), True
        )
        unknown = unknown_value[own_idx]  # null (index -1) or 'Unknown'
        fill_rows = np.flatnonzero(ok_np & unknown & (cons_code >= 0))
        codes = np.zeros(len(pos), np.int64)
        codes[fill_rows] = cons_code[fill_rows]
        mask = np.ones(len(pos), bool)
        mask[fill_rows] = False
        fill = vocab.take(pa.array(codes, mask=mask)) if len(vocab) else pa.nulls(len(pos), pa.string())
        out["fill_" + c] = fill
        pieces.append((k, "fill", fill_rows, own, fill, "s_" + c, "a_" + c))
        conflict_rows = np.flatnonzero(~unknown & (strong_code >= 0) & (own_code != strong_code))
        pieces.append((k, "identity_conflict", conflict_rows, own, "k_" + c, "ks_" + c, "ka_" + c))
    rows = np.flatnonzero(np.asarray(pc.fill_null(excluded, False).to_numpy(zero_copy_only=False), bool))
    pieces.append(("Age", "identity_excluded", rows, None, "age_consensus", "age_support", "age_agreement"))
    dropped = pc.and_kleene(pc.and_kleene(pc.is_valid(duplicate_of), ok), pc.invert(excluded))
    rows = np.flatnonzero(np.asarray(pc.fill_null(dropped, False).to_numpy(zero_copy_only=False), bool))
    pieces.append((None, "duplicate", rows, None, None, None, None))
    return Decisions(pa.table(out), _identity_table(key, v, character, pieces, consensus, ci_np, duplicate_of))


def _identity_table(
    key: str,
    v: pa.Table,
    character: pa.Array,
    pieces: list[tuple[str | None, str, np.ndarray, Any, Any, Any, Any]],
    consensus: pa.Table,
    ci: np.ndarray,
    duplicate_of: pa.Array,
) -> pa.Table:
    """Long form: one row per fill / conflict / identity exclusion / duplicate drop, ordered by
    position, attribute (nulls last), action - as the SQL ``ORDER BY`` that wrote it before."""
    ids = v.column("id").combine_chunks()
    pos = v.column("source_position").combine_chunks()
    cols: dict[str, list[Any]] = {c: [] for c in ("source_position", "id", "character", "attribute", "action")}
    cols.update(entry_value=[], consensus_value=[], support=[], agreement=[])
    for attribute, action, rows, own, value, support, agreement in pieces:
        n = len(rows)
        take = pa.array(rows, pa.int64())
        cols["source_position"].append(pos.take(take))
        cols["id"].append(ids.take(take))
        cols["character"].append(character.take(take))
        cols["attribute"].append(pa.array([attribute] * n, pa.string()) if attribute else pa.nulls(n, pa.string()))
        cols["action"].append(pa.array([action] * n, pa.string()))
        if own is not None:
            cols["entry_value"].append(own.take(take))
        else:
            cols["entry_value"].append(pa.array([UNKNOWN] * n if attribute else [None] * n, pa.string()))
        gather = pa.array(ci[rows], pa.int64())
        if value is None:  # a duplicate: the kept entry's id
            cols["consensus_value"].append(duplicate_of.take(take))
            cols["support"].append(pa.nulls(n, pa.int64()))
            cols["agreement"].append(pa.nulls(n, pa.float64()))
            continue
        cols["consensus_value"].append(
            value.take(take) if isinstance(value, pa.Array) else consensus[value].take(gather)
        )
        cols["support"].append(consensus[support].take(gather).cast(pa.int64()))
        cols["agreement"].append(consensus[agreement].take(gather).cast(pa.float64()))
    types = {"source_position": pa.int64(), "support": pa.int64(), "agreement": pa.float64()}
    table = pa.table(
        {
            c: pa.chunked_array([_as(x, types.get(c, pa.string())) for x in parts], types.get(c, pa.string()))
            for c, parts in cols.items()
        }
    )
    order = pc.sort_indices(
        table,
        sort_keys=[
            ("source_position", "ascending", "at_end"),
            ("attribute", "ascending", "at_end"),
            ("action", "ascending", "at_end"),
        ],
    )
    table = table.take(order)
    n = table.num_rows
    return pa.table(
        {
            "partition": pa.array([key] * n, pa.string()),
            **{c: table.column(c) for c in table.column_names},
            "source": pa.array(["identity"] * n, pa.string()),
        }
    )


def _as(values: pa.Array, type_: pa.DataType) -> pa.Array:
    return values if values.type == type_ else values.cast(type_)


def _codes(values: pa.Array, vocab: pa.Array) -> np.ndarray:
    """Each value's place in ``vocab``, -1 for a null or a value not in it."""
    if not len(values):
        return np.zeros(0, np.int64)
    at = pc.index_in(values, value_set=vocab) if len(vocab) else pa.nulls(len(values), pa.int32())
    return np.asarray(at.fill_null(-1).to_numpy(zero_copy_only=False), np.int64)


class Decisions:
    """A partition's per-row decisions (``rows``: ``pos, duplicate_of, identity_excluded,
    fill_<column>``, in the validated file's row order) and its identity rows."""

    def __init__(self, rows: pa.Table, identity: pa.Table) -> None:
        self.rows = rows
        self.identity = identity


def identity_dir(root: str) -> str:
    return os.path.join(root, CLEAN_DIR, "identity")


def export_dir(root: str) -> str:
    return os.path.join(root, CLEAN_DIR, "export")


def apply_partition(
    root: str, key: str, consensus: pa.Table, dups: pa.Table, policy: CleaningPolicy, con: Any
) -> dict[str, Any]:
    """Decide one partition, write its identity table, (re)build its cleaned lines when its
    decisions changed. Returns counts and the lines file to export."""
    decisions = decide_partition(root, key, consensus, dups, policy)
    ident = decisions.identity
    os.makedirs(identity_dir(root), exist_ok=True)
    ipath = os.path.join(identity_dir(root), key + ".parquet")
    tmp = f".tmp-{os.getpid()}"
    pq.write_table(ident, ipath + tmp, compression="zstd")
    os.replace(ipath + tmp, ipath)
    counts = _value_counts(ident.column("action"))
    fills = _value_counts(ident.filter(pc.equal(ident["action"], "fill")).column("attribute"))
    result = {"key": key, "counts": counts, "fills": fills, "lines_path": None}
    changed = ident.num_rows > 0 and any(a != "identity_conflict" for a in counts)
    if not changed:
        return result
    lines, marker = os.path.join(export_dir(root), key + ".jsonl"), os.path.join(export_dir(root), key + ".json")
    digest = _digest(root, key, ident, policy)
    try:
        with open(marker, encoding="utf-8") as fh:
            meta = json.load(fh)
        if meta.get("digest") == digest and os.path.getsize(lines) == meta.get("bytes"):
            return {**result, "lines_path": lines, "lines": meta["lines"], "bytes": meta["bytes"]}
    except (OSError, ValueError):
        pass
    n, size = _build_lines(root, key, decisions.rows, policy, con, lines)
    with open(marker + tmp, "w", encoding="utf-8") as fh:
        json.dump({"version": DECISION_VERSION, "digest": digest, "lines": n, "bytes": size}, fh)
    os.replace(marker + tmp, marker)
    return {**result, "lines_path": lines, "lines": n, "bytes": size}


def _digest(root: str, key: str, ident: pa.Table, policy: CleaningPolicy) -> str:
    h = hashlib.sha256()
    h.update(
        json.dumps(
            [DECISION_VERSION, policy.digest, list(identity(os.path.join(root, "validated_records", key + ".parquet")))]
        ).encode()
    )
    # the decisions' columns as one Arrow IPC stream (no Python per row: 2M identity rows at 5M)
    cols = ident.select(["source_position", "attribute", "action", "consensus_value"]).combine_chunks()
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, cols.schema) as w:
        w.write_table(cols)
    h.update(memoryview(sink.getvalue()))
    return h.hexdigest()


def _value_counts(col: pa.ChunkedArray) -> dict[str, int]:
    vc = pc.value_counts(col.combine_chunks()) if len(col) else None
    if vc is None:
        return {}
    return {str(v): int(n) for v, n in zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist())}


def _build_lines(
    root: str, key: str, decisions: pa.Table, policy: CleaningPolicy, con: Any, out: str
) -> tuple[int, int]:
    """The partition's clean lines with fills applied, dropped / identity-excluded rows out.

    The decisions (one per validated row) line up with a validated file in position order:
    a ``POSITIONAL JOIN`` then needs neither a hash join nor a sort of the wide rows (0.175 ->
    0.13 s CPU per 100k rows); otherwise a join on the position, sorted. (Copying the unchanged
    lines from the partition's export part and rebuilding only the ~24% rows with a fill was
    tried: 10-15% less CPU for these lines, +220 MB peak RSS for the apply step at 3M rows -
    the part's bytes, its line index and the merged lines per thread - so not kept.)"""
    path = os.path.join(root, "validated_records", key + ".parquet")
    src = sql_string(path)
    fill_cols = ["fill_" + _BY_KEY[k].column for k in policy.fill_attributes]
    replace = ", ".join(
        f"coalesce(d.{sql_ident(f)}, v.{sql_ident(_BY_KEY[k].column)}) AS {sql_ident(_BY_KEY[k].column)}"
        for f, k in zip(fill_cols, policy.fill_attributes)
    )
    cols = f"v.* REPLACE ({replace})" if replace else "v.*"
    keep = "v.status = 'ok' AND d.duplicate_of IS NULL AND NOT d.identity_excluded"
    slim = decisions.select(["pos", "duplicate_of", "identity_excluded", *fill_cols])
    pos = slim["pos"].to_numpy()
    if not bool(np.all(pos[1:] > pos[:-1])):
        slim = slim.take(pc.sort_indices(slim["pos"]))
        pos = slim["pos"].to_numpy()
    aligned = (
        slim.num_rows == pq.ParquetFile(path).metadata.num_rows
        and bool(np.all(pos[1:] > pos[:-1]))
        and in_position_order(path)
    )
    if aligned:
        inner = f"SELECT {cols} FROM read_parquet({src}) v POSITIONAL JOIN decisions d WHERE {keep}"
    else:
        inner = (
            f"SELECT {cols} FROM read_parquet({src}) v JOIN decisions d ON d.pos = v.source_position "
            f"WHERE {keep} ORDER BY v.source_position"
        )
    con.register("decisions", slim)
    try:
        con.execute("SET preserve_insertion_order = true")
        table = con.sql(f"SELECT {clean_json_sql(newline=True)} AS j FROM ({inner})").to_arrow_table()
    finally:
        con.unregister("decisions")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    tmp = out + f".tmp-{os.getpid()}"
    with open(tmp, "wb") as fh:
        n = write_lines(fh, table.to_batches())
    size = os.path.getsize(tmp)
    os.replace(tmp, out)
    return n, size


def load_inputs(root: str, policy: CleaningPolicy | None = None) -> tuple[pa.Table, pa.Table]:
    """The consensus table and the clusters' rows with a ``duplicate_of`` (for ``apply_partition``)."""
    from charmeta.cleaning.dedup import read_clusters
    from charmeta.cleaning.profiles import read_profiles

    policy = policy or load_policy()
    return consensus_wide(read_profiles(root), policy), read_clusters(root)


def partition_dups(clusters: pa.Table, key: str) -> pa.Table:
    """The cluster rows of one partition that are not kept: ``source_position, duplicate_of``."""
    t = clusters.filter(pc.and_(pc.equal(clusters["partition"], key), pc.is_valid(clusters["duplicate_of"])))
    return t.select(["source_position", "duplicate_of"])
