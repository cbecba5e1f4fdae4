"""What the validated_records checks need to know about one partition file, read once.

Why: five checks used to read every partition of their run on their own, and
``label_distribution`` every other partition too (its drift reference), so a
5M-row backfill read the validated files about ten times over (25 s of CPU at
5M). One Arrow pass per file - the columns the contract names, strings left
dictionary-encoded as Parquet stores them - gives everything the checks report.
The result is memoised by the file's identity (size, mtime, inode and a hash of
the Parquet footer; ``charmeta.file_identity``), in the process and on disk: the
worker that built a partition reads it once, right after writing it, and the
checks of its run (in the Dagster process) find the stored facts; the checks of a
run share one read, later runs reuse it for the drift reference, and a file that
changed is read again. Dagster-free: pool workers import it.
"""

from __future__ import annotations

import json
import os
import zlib
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from charmeta.contract import ATTRIBUTES, CleanRecord, rich_arrow_schema
from charmeta.file_identity import identity
from charmeta.pipeline.layout import CHECK_FACTS, Layout
from charmeta.pipeline.stages import contract_violations
from charmeta.tmpfiles import sweep_stale_tmp

#: Columns read: the contract's (values, confidences), id, status, position; not the evidence lists.
COLUMNS = (
    ["id", "status", "source_position", "multi_character", "input_kind", "character_count"]
    + [a.column for a in ATTRIBUTES]
    + [f"{a.column}_confidence" for a in ATTRIBUTES if not a.is_list]
)
#: Columns the Great Expectations suite reads (its sample).
GX_COLUMNS = ["id", "status", "source_position"] + [
    c for a in ATTRIBUTES if not a.is_list for c in (a.column, f"{a.column}_confidence")
]
_DICTIONARY = ["status"] + [a.column for a in ATTRIBUTES if not a.is_list]
CORE_COLUMNS = [a.column for a in ATTRIBUTES if a.is_core]
#: ``ok`` rows validated with the pydantic CleanRecord per partition (the edge model must agree).
CLEAN_SAMPLE = 20
#: Rows of each partition kept for the Great Expectations sample (a random, seeded subset).
GX_ROWS_PER_PARTITION = 2_000
_SAMPLES_KEPT = 64


@dataclass(frozen=True)
class PartitionFacts:
    """One validated_records file as the checks see it."""

    rows: int
    schema_problem: str | None = None  # set: the file does not have the contract's schema (nothing else read)
    violations: int = 0  # rows that break the contract (vocabularies, pattern, core keys, confidences)
    first_violation: str | None = None  # the reason of the first such row
    clean_record_problem: str | None = None  # the first sampled ok row CleanRecord rejects
    status_counts: dict[str, int] = field(default_factory=dict)
    multi_character: int = 0  # rows flagged multi_character
    value_counts: dict[str, dict[str, int]] = field(default_factory=dict)  # core column -> value -> non-invalid rows
    input_kinds: dict[str, int] = field(default_factory=dict)  # non-invalid rows per input kind (tags/prose/image)
    single_tag_rows: int = 0  # non-invalid tag captions of exactly one character (the contract's floors apply)
    single_tag_unknown: dict[str, int] = field(default_factory=dict)  # core column -> Unknown among those rows


_FACTS: dict[str, tuple[tuple, PartitionFacts]] = {}
_SAMPLES: OrderedDict[str, tuple[tuple, pa.Table]] = OrderedDict()
#: Facts kept on disk, next to the stage folders: ``<root>/check_facts/<key>.json``, the GX sample in
#: ``<key>.parquet`` (like every Parquet file of the output tree: its JSON says its ``rows``).
FACTS_DIR = CHECK_FACTS
#: Bump when PartitionFacts or the sample change: facts of another version are read again.
FACTS_VERSION = 3


def partition_facts(path: str) -> PartitionFacts:
    """The facts of one validated_records file, memoised by its identity: in this process, then
    on disk (the worker that built the partition reads it once, right after writing it; the
    checks of its run, in another process, find the result), else read now and kept."""
    ident = identity(path)
    hit = _FACTS.get(path)
    if hit and hit[0] == ident:
        return hit[1]
    meta = _stored_meta(path, ident)
    if meta is None:
        return _read_and_keep(path, ident)[0]
    # the sample stays on disk until gx_sample asks (the drift reference never does)
    _FACTS[path] = (ident, meta["facts"])
    return meta["facts"]


def gx_sample(path: str) -> pa.Table | None:
    """Up to ``GX_ROWS_PER_PARTITION`` random rows of the file (seeded by its name), in random
    order, so any prefix is a random subset too; None when the schema is not the contract's."""
    ident = identity(path)
    hit = _SAMPLES.get(path)
    if hit and hit[0] == ident:
        return hit[1]
    meta = _stored_meta(path, ident)
    if meta is not None and meta.get("rows") is None:
        return None  # stored facts say: not the contract's schema
    sample = _stored_sample(path, meta) if meta is not None else None
    if sample is None:
        return _read_and_keep(path, ident)[1]
    _keep_sample(path, ident, sample)
    return sample


def _read_and_keep(path: str, ident: tuple) -> tuple[PartitionFacts, pa.Table | None]:
    """Read the file's facts and sample, store them on disk and memoise both."""
    facts, sample = _read_facts(path)
    _save(path, ident, facts, sample)
    _FACTS[path] = (ident, facts)
    if sample is not None:
        _keep_sample(path, ident, sample)
    return facts, sample


def _keep_sample(path: str, ident: tuple, sample: pa.Table) -> None:
    _SAMPLES[path] = (ident, sample)
    _SAMPLES.move_to_end(path)
    while len(_SAMPLES) > _SAMPLES_KEPT:
        _SAMPLES.popitem(last=False)


def _stored_paths(path: str) -> tuple[str, str]:
    """Where the facts of a ``<root>/validated_records/<key>.parquet`` file are kept (the layout's)."""
    layout, _, key = Layout.of_stage_file(path)
    return layout.facts_paths(key)


def _stored_meta(path: str, ident: tuple) -> dict[str, Any] | None:
    """The stored facts' JSON (its ``facts`` as a PartitionFacts) when they were computed from
    this exact file (same identity)."""
    meta_path, _ = _stored_paths(path)
    try:
        with open(meta_path, encoding="utf-8") as fh:
            meta = json.load(fh)
        if meta.get("version") != FACTS_VERSION or meta.get("identity") != list(ident):
            return None
        meta["facts"] = PartitionFacts(**meta["facts"])  # a JSON of another shape is not ours
        return meta
    except (OSError, ValueError, TypeError, KeyError):
        return None


def _stored_sample(path: str, meta: dict[str, Any]) -> pa.Table | None:
    """The stored GX sample, when it has the row count its facts recorded."""
    _, sample_path = _stored_paths(path)
    try:
        sample = pq.read_table(sample_path)
    except (OSError, pa.ArrowException):
        return None
    return sample if sample.num_rows == meta["rows"] else None


def _save(path: str, ident: tuple, facts: PartitionFacts, sample: pa.Table | None) -> None:
    """Store the facts (sample first, the JSON last, each renamed into place); a folder that
    cannot be written only costs the next process a read."""
    meta_path, sample_path = _stored_paths(path)
    suffix = f".tmp-{os.getpid()}"
    try:
        os.makedirs(os.path.dirname(meta_path), exist_ok=True)
        for p in (meta_path, sample_path):
            sweep_stale_tmp(p)  # a killed writer's
        if sample is not None:
            pq.write_table(sample, sample_path + suffix)
            os.replace(sample_path + suffix, sample_path)
        with open(meta_path + suffix, "w", encoding="utf-8") as fh:
            json.dump(
                {
                    "version": FACTS_VERSION,
                    "identity": list(ident),
                    "facts": asdict(facts),
                    "rows": None if sample is None else sample.num_rows,
                },
                fh,
            )
        os.replace(meta_path + suffix, meta_path)
    except OSError:
        for p in (sample_path + suffix, meta_path + suffix):
            if os.path.exists(p):
                os.remove(p)


def _read_facts(path: str) -> tuple[PartitionFacts, pa.Table | None]:
    pf = pq.ParquetFile(path, read_dictionary=_DICTIONARY)
    rows = pf.metadata.num_rows
    expected = rich_arrow_schema()
    got = pq.read_schema(path)
    if [(f.name, f.type) for f in got] != [(f.name, f.type) for f in expected]:
        missing = set(expected.names) - set(got.names)
        return PartitionFacts(
            rows, schema_problem=f"Parquet schema differs from the contract (missing: {sorted(missing)[:5]})"
        ), None
    table = pf.read(columns=COLUMNS).combine_chunks()
    batch = table.to_batches()[0] if table.num_rows else None
    violations, first = 0, None
    if batch is not None:
        bad, reasons = contract_violations(batch)
        violations = pc.sum(pc.cast(bad, pa.int64())).as_py() or 0
        first = next((r for r in reasons if r), None)
    status = table.column("status")
    status_counts = _counts(status)
    core = table.select(CORE_COLUMNS)  # filtering dictionary columns copies only their indices
    not_invalid = pc.fill_null(pc.not_equal(status, "invalid"), False)
    valid = core.filter(not_invalid) if table.num_rows else core
    # single-character tag captions: where 1girl / 1boy decide Gender (the drift check's contract floors)
    single_tags = pc.and_(
        not_invalid,
        pc.and_(
            pc.fill_null(pc.equal(table.column("input_kind"), "tags"), False),
            pc.fill_null(pc.equal(table.column("character_count"), 1), False),
        ),
    )
    single = core.filter(single_tags) if table.num_rows else core
    facts = PartitionFacts(
        rows=rows,
        violations=violations,
        first_violation=first,
        clean_record_problem=_clean_record_problem(table),
        status_counts=status_counts,
        multi_character=pc.sum(table.column("multi_character")).as_py() or 0,
        value_counts={c: _counts(valid.column(c)) for c in CORE_COLUMNS},
        input_kinds=_counts(table.column("input_kind").filter(not_invalid)) if table.num_rows else {},
        single_tag_rows=single.num_rows,
        single_tag_unknown={c: _counts(single.column(c)).get("Unknown", 0) for c in CORE_COLUMNS},
    )
    return facts, _sample(table, os.path.basename(path))


def _counts(col: Any) -> dict[str, int]:
    """Rows per value (a null counts as ``"None"``, as ``str(None)``)."""
    out: dict[str, int] = {}
    for item in pc.value_counts(col).to_pylist():
        k = str(item["values"])
        out[k] = out.get(k, 0) + int(item["counts"])
    return out


def _clean_record_problem(table: pa.Table) -> str | None:
    ok = pc.indices_nonzero(pc.fill_null(pc.equal(table.column("status"), "ok"), False)).slice(0, CLEAN_SAMPLE)
    for row in table.take(ok).to_pylist():
        clean = {}
        for a in ATTRIBUTES:
            v = row.get(a.column)
            if a.is_core or v not in (None, [], ""):
                clean[a.key] = v
        try:
            CleanRecord.model_validate(clean)
        except Exception as exc:  # pydantic.ValidationError
            return f"record {row.get('id')!r} fails CleanRecord: {str(exc).splitlines()[0]}"
    return None


def _sample(table: pa.Table, name: str) -> pa.Table:
    rng = np.random.default_rng(zlib.crc32(name.encode("utf-8")))
    idx = rng.permutation(table.num_rows)[:GX_ROWS_PER_PARTITION]
    return table.select(GX_COLUMNS).take(pa.array(idx, pa.int64()))
