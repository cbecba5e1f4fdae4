"""What the validated_records checks need to know about one partition file, read once.

Why: five checks used to read every partition of their run on their own, and
``label_distribution`` every other partition too (its drift reference), so a
5M-row backfill read the validated files about ten times over (25 s of CPU at
5M). One Arrow pass per file - the columns the contract names, strings left
dictionary-encoded as Parquet stores them - gives everything the checks report.
The result is memoised by the file's identity (size, mtime, inode and a hash of
the Parquet footer): the checks of a run share one read, later runs in the same
process reuse it for the drift reference, and a file that changed is read again.
"""

from __future__ import annotations

import hashlib
import os
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from charmeta.contract import ATTRIBUTES, CleanRecord, rich_arrow_schema
from charmeta_dagster.stages import contract_violations

#: Columns read: the contract's (values, confidences), id, status, position; not the evidence lists.
COLUMNS = ["id", "status", "source_position", "multi_character"] + [a.column for a in ATTRIBUTES] + [
    f"{a.column}_confidence" for a in ATTRIBUTES if not a.is_list]
#: Columns the Great Expectations suite reads (its sample).
GX_COLUMNS = ["id", "status", "source_position"] + [c for a in ATTRIBUTES if not a.is_list
                                                    for c in (a.column, f"{a.column}_confidence")]
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
    schema_problem: Optional[str] = None  # set: the file does not have the contract's schema (nothing else read)
    violations: int = 0  # rows that break the contract (vocabularies, pattern, core keys, confidences)
    first_violation: Optional[str] = None  # the reason of the first such row
    clean_record_problem: Optional[str] = None  # the first sampled ok row CleanRecord rejects
    status_counts: dict[str, int] = field(default_factory=dict)
    multi_character: int = 0  # rows flagged multi_character
    value_counts: dict[str, dict[str, int]] = field(default_factory=dict)  # core column -> value -> non-invalid rows


_FACTS: dict[str, tuple[tuple, PartitionFacts]] = {}
_SAMPLES: OrderedDict[str, tuple[tuple, pa.Table]] = OrderedDict()


def identity(path: str) -> tuple:
    """Size, mtime, inode and a hash of the Parquet footer: any rewrite changes at least one."""
    st = os.stat(path)
    footer = b""
    with open(path, "rb") as fh:
        if st.st_size >= 12:
            fh.seek(-8, os.SEEK_END)
            n = int.from_bytes(fh.read(4), "little")
            if 0 < n <= st.st_size - 8:
                fh.seek(-(8 + n), os.SEEK_END)
                footer = fh.read(n)
    return st.st_size, st.st_mtime_ns, st.st_ino, hashlib.sha1(footer).hexdigest()


def partition_facts(path: str) -> PartitionFacts:
    """The facts of one validated_records file (memoised by its identity)."""
    ident = identity(path)
    hit = _FACTS.get(path)
    if hit and hit[0] == ident:
        return hit[1]
    facts, sample = _read_facts(path)
    _FACTS[path] = (ident, facts)
    if sample is not None:
        _SAMPLES[path] = (ident, sample)
        _SAMPLES.move_to_end(path)
        while len(_SAMPLES) > _SAMPLES_KEPT:
            _SAMPLES.popitem(last=False)
    return facts


def gx_sample(path: str) -> Optional[pa.Table]:
    """Up to ``GX_ROWS_PER_PARTITION`` random rows of the file (seeded by its name), in random
    order, so any prefix is a random subset too; None when the schema is not the contract's."""
    ident = identity(path)
    hit = _SAMPLES.get(path)
    if not (hit and hit[0] == ident):
        _FACTS.pop(path, None)
        partition_facts(path)
        hit = _SAMPLES.get(path)
    return hit[1] if hit else None


def _read_facts(path: str) -> tuple[PartitionFacts, Optional[pa.Table]]:
    pf = pq.ParquetFile(path, read_dictionary=_DICTIONARY)
    rows = pf.metadata.num_rows
    expected = rich_arrow_schema()
    got = pq.read_schema(path)
    if [(f.name, f.type) for f in got] != [(f.name, f.type) for f in expected]:
        missing = set(expected.names) - set(got.names)
        return PartitionFacts(rows, schema_problem=f"Parquet schema differs from the contract (missing: "
                                                   f"{sorted(missing)[:5]})"), None
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
    valid = core.filter(pc.fill_null(pc.not_equal(status, "invalid"), False)) if table.num_rows else core
    facts = PartitionFacts(
        rows=rows, violations=violations, first_violation=first, clean_record_problem=_clean_record_problem(table),
        status_counts=status_counts, multi_character=pc.sum(table.column("multi_character")).as_py() or 0,
        value_counts={c: _counts(valid.column(c)) for c in CORE_COLUMNS})
    return facts, _sample(table, os.path.basename(path))


def _counts(col: Any) -> dict[str, int]:
    """Rows per value (a null counts as ``"None"``, as ``str(None)``)."""
    out: dict[str, int] = {}
    for item in pc.value_counts(col).to_pylist():
        k = str(item["values"])
        out[k] = out.get(k, 0) + int(item["counts"])
    return out


def _clean_record_problem(table: pa.Table) -> Optional[str]:
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
