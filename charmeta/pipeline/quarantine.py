"""The quarantine table and the per-partition accounting of the export.

Why: on a 5M-entry overnight job the first questions in the morning are "what
was rejected, and why?" and "did we lose anything?". Every ``invalid`` record
already carries its source shard, position and reason; this module gathers them
into ``export/quarantine.parquet`` (deterministic order: partition order, then
source position) and computes, per partition, input rows (``raw_shards``),
output rows (``validated_records``), records lost (input - output, must be 0)
and the invalid rate, for ``manifest.json`` and the Dagster checks.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from charmeta import duck
from charmeta.duck import sql_string
from charmeta.pipeline.graph import RAW, VALIDATED
from charmeta.pipeline.layout import QUARANTINE, Layout

QUARANTINE_FILE = QUARANTINE
QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("partition", pa.string(), nullable=False),
        pa.field("source_shard", pa.string()),
        pa.field("source_position", pa.int64()),
        pa.field("id", pa.string()),
        pa.field("reason", pa.string()),
    ]
)


def _rows(path: str) -> int | None:
    try:
        return pq.ParquetFile(path).metadata.num_rows
    except (OSError, ValueError, pa.ArrowException):
        return None


def partition_report(root: str, keys: Iterable[str]) -> list[dict[str, Any]]:
    """Per partition: input rows, output rows, records lost, invalid count and rate.

    ``input_rows`` are the rows the reader produced for the shard (one per source
    row, bad ones included); ``records_lost`` is ``input_rows - output_rows`` and
    is None while a partition is unfinished (``status: missing``).
    """
    root = os.path.realpath(root)
    keys = list(keys)
    done = [k for k in keys if os.path.exists(_validated(root, k))]
    by_key = dict(zip(done, _counts([_validated(root, k) for k in done])))
    out: list[dict[str, Any]] = []
    for k in keys:
        n_in = _rows(Layout(root).path(RAW, k))
        if k not in by_key:
            out.append(
                {
                    "partition": k,
                    "status": "missing",
                    "input_rows": n_in,
                    "output_rows": None,
                    "records_lost": None,
                    "invalid": None,
                    "invalid_rate": None,
                }
            )
            continue
        n_out, invalid = by_key[k]
        lost = (n_in - n_out) if n_in is not None else None
        out.append(
            {
                "partition": k,
                "status": "done",
                "input_rows": n_in,
                "output_rows": n_out,
                "records_lost": lost,
                "invalid": invalid,
                "invalid_rate": round(invalid / n_out, 6) if n_out else 0.0,
            }
        )
    return out


def _validated(root: str, key: str) -> str:
    return Layout(root).path(VALIDATED, key)


def _counts(files: list[str]) -> list[tuple[int, int]]:
    """(rows, invalid rows) per file, in order: one DuckDB scan of the ``status`` column of all
    of them (``file_index``), not one query per partition."""
    if not files:
        return []
    con = duck.connect()
    try:
        rows = con.execute(
            f"SELECT file_index, count(*), count(*) FILTER (status = 'invalid') FROM "
            f"read_parquet([{', '.join(sql_string(f) for f in files)}]) GROUP BY ALL"
        ).fetchall()
    finally:
        con.close()
    found = {int(i): (int(n), int(bad)) for i, n, bad in rows}
    return [found.get(i, (0, 0)) for i in range(len(files))]  # a 0-row file has no group


def write_quarantine(root: str, keys: Iterable[str], out_path: str) -> dict[str, Any]:
    """Write every ``invalid`` record (partition, shard, position, id, reason) to ``out_path``.

    Returns ``{"records": n, "by_reason": {reason prefix: n}}`` (top 50 reasons, the
    part before the first ``:`` so per-record details do not explode the counts).
    """
    root = os.path.realpath(root)
    tmp = f"{out_path}.tmp-{os.getpid()}"
    keys = [k for k in keys if os.path.exists(_validated(root, k))]
    writer = pq.ParquetWriter(tmp, QUARANTINE_SCHEMA, compression="zstd")
    n = 0
    by_reason: dict[str, int] = {}
    con = duck.connect()
    try:
        if keys:  # one scan of all partitions (file_index = partition order); only invalid rows are sorted
            reader = con.sql(
                f"SELECT file_index, source_shard, source_position, id, reason FROM "
                f"read_parquet([{', '.join(sql_string(_validated(root, k)) for k in keys)}]) "
                "WHERE status = 'invalid' ORDER BY file_index, source_position, id"
            ).to_arrow_reader(65_536)
            names = pa.array(keys, pa.string())
            for rb in reader:
                if not rb.num_rows:
                    continue
                part = names.take(rb.column(0).cast(pa.int64()))
                writer.write_table(pa.Table.from_arrays([part, *rb.columns[1:]], schema=QUARANTINE_SCHEMA))
                n += rb.num_rows
                for r in rb.column("reason").to_pylist():
                    head = (r or "invalid").split(":", 1)[0][:120]
                    by_reason[head] = by_reason.get(head, 0) + 1
        writer.close()
        os.replace(tmp, out_path)
    except BaseException:
        writer.close()
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    finally:
        con.close()
    top = dict(sorted(by_reason.items(), key=lambda kv: (-kv[1], kv[0]))[:50])
    return {"records": n, "file": os.path.basename(out_path), "by_reason": top}
