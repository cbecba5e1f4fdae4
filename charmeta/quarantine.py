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
from typing import Any, Iterable, Optional

import pyarrow as pa
import pyarrow.parquet as pq

from charmeta import duck

QUARANTINE_FILE = "quarantine.parquet"
QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("partition", pa.string(), nullable=False),
        pa.field("source_shard", pa.string()),
        pa.field("source_position", pa.int64()),
        pa.field("id", pa.string()),
        pa.field("reason", pa.string()),
    ]
)


def _q(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _rows(path: str) -> Optional[int]:
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
    out: list[dict[str, Any]] = []
    con = duck.connect()
    try:
        for k in keys:
            raw = os.path.join(root, "raw_shards", k + ".parquet")
            val = os.path.join(root, "validated_records", k + ".parquet")
            n_in = _rows(raw)
            if not os.path.exists(val):
                out.append({"partition": k, "status": "missing", "input_rows": n_in, "output_rows": None,
                            "records_lost": None, "invalid": None, "invalid_rate": None})
                continue
            n_out, invalid = con.execute(
                f"SELECT count(*), count(*) FILTER (status = 'invalid') FROM read_parquet({_q(val)})").fetchone()
            n_out, invalid = int(n_out), int(invalid)
            lost = (n_in - n_out) if n_in is not None else None
            out.append({"partition": k, "status": "done", "input_rows": n_in, "output_rows": n_out,
                        "records_lost": lost, "invalid": invalid,
                        "invalid_rate": round(invalid / n_out, 6) if n_out else 0.0})
    finally:
        con.close()
    return out


def write_quarantine(root: str, keys: Iterable[str], out_path: str) -> dict[str, Any]:
    """Write every ``invalid`` record (partition, shard, position, id, reason) to ``out_path``.

    Returns ``{"records": n, "by_reason": {reason prefix: n}}`` (top 50 reasons, the
    part before the first ``:`` so per-record details do not explode the counts).
    """
    root = os.path.realpath(root)
    tmp = f"{out_path}.tmp-{os.getpid()}"
    writer = pq.ParquetWriter(tmp, QUARANTINE_SCHEMA, compression="zstd")
    n = 0
    by_reason: dict[str, int] = {}
    con = duck.connect()
    try:
        for k in keys:
            val = os.path.join(root, "validated_records", k + ".parquet")
            if not os.path.exists(val):
                continue
            tbl = con.sql(
                f"SELECT source_shard, source_position, id, reason FROM read_parquet({_q(val)}) "
                "WHERE status = 'invalid' ORDER BY source_position, id").to_arrow_table()
            if not tbl.num_rows:
                continue
            tbl = tbl.add_column(0, "partition", pa.array([k] * tbl.num_rows, pa.string()))
            writer.write_table(tbl.cast(QUARANTINE_SCHEMA))
            n += tbl.num_rows
            for r in tbl.column("reason").to_pylist():
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
