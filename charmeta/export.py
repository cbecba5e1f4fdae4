"""The dataset export: clean JSON Lines, a DuckDB catalog and ``manifest.json``.

Everything is computed by DuckDB over the per-partition ``validated_records``
Parquet files, one partition at a time for the JSONL (bounded memory, no global
sort: output order is partition order, then source position), with no per-row
Python: DuckDB builds each line and its Arrow value buffer is written as is; the
counts and distributions come from one scan with a ``histogram`` per attribute.
Files are built under temp names and renamed into place, so a killed export
never leaves a half-written dataset behind.

Layout under ``<root>/export/``:

* ``records.jsonl`` - only ``ok`` records; ``id`` plus the contract keys (Title
  Case); optional keys only when evidenced (same rule as ``records.to_clean``);
* ``catalog.duckdb`` - one view per stage over exactly the current partitions,
  plus ``export_records`` and ``status_counts``;
* ``manifest.json`` - schema version + JSON Schema, counts per status, value
  distributions per attribute, code / ontology / backend versions, partitions.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import subprocess
from importlib import resources
from typing import Any, Iterable, Optional

import charmeta
from charmeta import duck
from charmeta.contract import ATTRIBUTES, SCHEMA_VERSION, STATUSES, clean_json_schema

log = logging.getLogger("charmeta.export")

EXPORT_DIR = "export"
STAGE_VIEWS = ("raw_shards", "normalized_records", "embeddings", "attribute_predictions", "validated_records")


def _q(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _ident(s: str) -> str:
    return '"' + s.replace('"', '""') + '"'


def clean_json_sql(newline: bool = False) -> str:
    """SQL expression turning a rich row into its clean JSON line (``newline``: with its ``\\n``).

    ``id``, then the contract keys in contract order; a key whose value is null or an
    empty list is left out (optional keys only when evidenced). One ``concat`` of
    ``to_json`` of each column: the same bytes as ``to_json`` of the whole struct with
    those members cut out afterwards by a regex, at a third of the cost (the regex pass
    over every line was the most expensive part of the export, and a chain of ``||``
    copies the growing line once per member).
    """
    parts = ["'{\"id\":'", "coalesce(to_json(\"id\")::VARCHAR, 'null')"]
    for a in ATTRIBUTES:
        col = _ident(a.column)
        empty = f"{col} IS NULL" + (f" OR len({col}) = 0" if a.is_list else "")
        parts.append(f"CASE WHEN {empty} THEN '' ELSE ',{json.dumps(a.key)}:' || to_json({col}) END")
    parts.append("'}' || chr(10)" if newline else "'}'")
    return "concat(" + ", ".join(parts) + ")"


#: Partitions whose lines are built concurrently (DuckDB releases the GIL; the file is written in order).
JSONL_THREADS = 2


def write_jsonl(con: Any, files: list[str], path: str) -> int:
    """``records.jsonl``: the ok rows of each file in order, by source position within a file.

    Two partitions are turned into lines at a time (one DuckDB cursor each) while the main
    thread writes the previous one, at most ``JSONL_THREADS + 1`` partitions in memory."""
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    expr = clean_json_sql(newline=True)

    def lines(f: str) -> Any:
        order = "" if _in_position_order(f) else " ORDER BY source_position"
        cur = con.cursor()
        try:
            return cur.sql(f"SELECT {expr} AS j FROM read_parquet({_q(f)}) WHERE status = 'ok'{order}").to_arrow_table()
        finally:
            cur.close()

    tmp = path + f".tmp-{os.getpid()}"
    exported = 0
    try:
        with open(tmp, "wb") as fh, ThreadPoolExecutor(JSONL_THREADS) as pool:
            pending: deque = deque()
            for f in files:
                pending.append(pool.submit(lines, f))
                if len(pending) > JSONL_THREADS:
                    exported += _write_lines(fh, pending.popleft().result().to_batches())
            while pending:
                exported += _write_lines(fh, pending.popleft().result().to_batches())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return exported


def _in_position_order(path: str) -> bool:
    """Whether the file's rows are already in source-position order (the stages write them so):
    then DuckDB streams them in file order (``preserve_insertion_order``) and skips the sort."""
    import numpy as np
    import pyarrow.parquet as pq

    pos = pq.read_table(path, columns=["source_position"]).column(0).to_numpy()
    return bool(np.all(pos[1:] >= pos[:-1])) if len(pos) > 1 else True


def _write_lines(fh: Any, reader: Any) -> int:
    """Write a one-column string Arrow stream whose values end in a newline: each batch's
    value buffer is the bytes of its lines, written as is (no Python string per line)."""
    import numpy as np
    import pyarrow as pa

    n = 0
    for rb in reader:
        col = rb.column(0)
        if not len(col):
            continue
        if col.null_count or not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
            lines = col.to_pylist()  # not expected: clean_json_sql never yields null
            fh.write("".join(x for x in lines if x is not None).encode("utf-8"))
            n += len(col) - col.null_count
            continue
        _, offsets, data = col.buffers()
        off = np.frombuffer(offsets, dtype=np.int32 if pa.types.is_string(col.type) else np.int64)
        fh.write(memoryview(data)[int(off[col.offset]):int(off[col.offset + len(col)])])
        n += len(col)
    return n


def _distribution_sql(src: str) -> str:
    """One scan: counts per status over every row, value counts per scalar attribute over ok rows."""
    aggs = ["histogram(status)"] + [f"histogram(coalesce({_ident(a.column)}, '(absent)')) FILTER (WHERE status = 'ok')"
                                    for a in ATTRIBUTES if not a.is_list]
    return f"SELECT {', '.join(aggs)} FROM {src}"


def _top(counts: dict[Any, int], limit: int) -> dict[str, int]:
    """``ORDER BY count DESC, value LIMIT n`` (nulls last among equal counts), keys as strings."""
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0] is None, "" if kv[0] is None else kv[0]))
    return {str(v): int(n) for v, n in ranked[:limit]}


def _distributions(con: Any, src: str) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    """Counts per status and the top values per attribute (200 scalar, 50 list values)."""
    row = con.execute(_distribution_sql(src)).fetchone()
    status_counts = {str(k): int(v) for k, v in (row[0] or {}).items()}
    scalars = iter(row[1:])
    distributions: dict[str, dict[str, int]] = {}
    for a in ATTRIBUTES:
        if a.is_list:
            hist, nulls = con.execute(f"SELECT histogram(v), count(*) - count(v) FROM (SELECT unnest({_ident(a.column)}) "
                                      f"AS v FROM {src} WHERE status = 'ok')").fetchone()
            counts: dict[Any, int] = dict(hist or {})
            if nulls:
                counts[None] = int(nulls)
            distributions[a.key] = _top(counts, 50)
        else:
            distributions[a.key] = _top(dict(next(scalars) or {}), 200)
    return status_counts, distributions


def _files(root: str, stage: str, keys: Iterable[str]) -> list[str]:
    out = []
    for k in keys:
        p = os.path.join(root, stage, k + ".parquet")
        if os.path.exists(p):
            out.append(p)
    return out


def _read(files: list[str]) -> str:
    return "read_parquet([" + ", ".join(_q(f) for f in files) + "])"


def code_version() -> dict[str, Optional[str]]:
    """Package version + git commit (when run from a checkout) for the manifest."""
    commit = None
    try:
        here = os.path.dirname(os.path.abspath(charmeta.__file__))
        commit = subprocess.run(["git", "-C", here, "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        pass
    return {"package": charmeta.__version__, "git_commit": commit}


def ontology_version() -> str:
    """Hash of the contract and the reference vocabularies the extractors read."""
    h = hashlib.sha256()
    base = resources.files("charmeta").joinpath("data")
    names = []

    def walk(node, prefix=""):  # noqa: ANN001
        for child in sorted(node.iterdir(), key=lambda c: c.name):
            if child.is_dir():
                walk(child, prefix + child.name + "/")
            else:
                names.append((prefix + child.name, child))

    walk(base)
    for name, node in names:
        h.update(name.encode())
        h.update(node.read_bytes())
    return h.hexdigest()[:16]


def _created_at() -> str:
    """Now (UTC), or ``$SOURCE_DATE_EPOCH`` when set, so a rebuild can be byte-identical."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = (_dt.datetime.fromtimestamp(int(epoch), _dt.timezone.utc) if epoch and epoch.isdigit()
            else _dt.datetime.now(_dt.timezone.utc))
    return when.isoformat(timespec="seconds")


def export_dataset(root: str, keys: list[str], extra_manifest: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """Write ``records.jsonl``, ``catalog.duckdb`` and ``manifest.json`` for ``keys``."""
    root = os.path.realpath(root)
    out_dir = os.path.join(root, EXPORT_DIR)
    os.makedirs(out_dir, exist_ok=True)
    files = _files(root, "validated_records", keys)
    missing = len(keys) - len(files)
    con = duck.connect()
    try:
        con.execute("SET preserve_insertion_order = true")
        # 1. JSONL, partition by partition
        jsonl = os.path.join(out_dir, "records.jsonl")
        exported = write_jsonl(con, files, jsonl)

        # 2. counts + distributions over the validated records
        status_counts = {s: 0 for s in STATUSES}
        distributions: dict[str, dict[str, int]] = {}
        if files:
            counts, distributions = _distributions(con, _read(files))
            status_counts.update(counts)
        total = sum(status_counts.values())
    finally:
        con.close()

    # 2b. quarantine table (every invalid record: shard + position + reason) and per-partition accounting
    from charmeta.quarantine import QUARANTINE_FILE, partition_report, write_quarantine

    quarantine_path = os.path.join(out_dir, QUARANTINE_FILE)
    quarantine = write_quarantine(root, keys, quarantine_path)
    per_partition = partition_report(root, keys)
    done = [p for p in per_partition if p["status"] == "done"]
    records_lost = sum(int(p["records_lost"] or 0) for p in done)

    # 3. the catalog: views over exactly the current partitions (absolute paths)
    catalog = os.path.join(out_dir, "catalog.duckdb")
    tmp_cat = catalog + f".tmp-{os.getpid()}"
    for p in (tmp_cat, tmp_cat + ".wal"):
        if os.path.exists(p):
            os.remove(p)
    cat = duck.connect(tmp_cat)
    try:
        for stage in STAGE_VIEWS:
            sf = _files(root, stage, keys)
            if sf:
                cat.execute(f"CREATE VIEW {stage} AS SELECT * FROM {_read(sf)}")
        if files:
            cat.execute("CREATE VIEW status_counts AS SELECT status, count(*) AS n FROM validated_records GROUP BY 1")
        cat.execute(f"CREATE VIEW quarantine AS SELECT * FROM read_parquet({_q(quarantine_path)})")
        cat.execute(f"CREATE VIEW export_records AS SELECT * FROM read_json_auto({_q(jsonl)}, format='newline_delimited')"
                    if exported else "CREATE VIEW export_records AS SELECT NULL::VARCHAR AS id WHERE false")
    finally:
        cat.close()
    os.replace(tmp_cat, catalog)

    manifest = {
        "schema_version": SCHEMA_VERSION,
        "created_at": _created_at(),
        "records": total,
        "exported_records": exported,
        "status_counts": status_counts,
        "partitions": len(files),
        "partitions_missing": missing,
        "attribute_distributions": distributions,
        "code_version": code_version(),
        "ontology_version": ontology_version(),
        "files": {"records": "records.jsonl", "catalog": "catalog.duckdb", "quarantine": QUARANTINE_FILE},
        "quarantine": quarantine,
        "records_lost": records_lost,
        "invalid_rate": round(status_counts.get("invalid", 0) / total, 6) if total else 0.0,
        "partitions_report": per_partition,
        "json_schema": clean_json_schema(),
        **(extra_manifest or {}),
    }
    mpath = os.path.join(out_dir, "manifest.json")
    with open(mpath + ".tmp", "w", encoding="utf-8") as fh:
        json.dump(manifest, fh, indent=2, sort_keys=False)
    os.replace(mpath + ".tmp", mpath)
    log.info("export: %d records (%d ok exported) from %d partitions -> %s", total, exported, len(files), out_dir)
    return manifest
