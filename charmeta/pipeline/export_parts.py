"""Each partition's share of the dataset export, built once per validated file.

Why: ``records.jsonl`` and the manifest's counts are functions of every partition's
``validated_records``, but a partition's lines and counts depend on that partition
alone. Built right after the partition, on the worker that built it and in parallel
with the others, the export itself only concatenates files and adds counts: the ~1 s
per million rows of line building leaves the single-process end of ``charmeta run``,
and adding 10 shards to a 5M dataset builds 10 parts, not 5M lines again.

A part is two files under ``<root>/export_parts/``:

* ``<key>.jsonl`` - the partition's ``ok`` records as clean JSON lines, in source
  position order (``clean_json_sql``);
* ``<key>.json`` - written last, the part's commit marker: the identity of the
  validated file it was built from (``charmeta.file_identity``), its line and byte
  counts, the partition's status counts and full value histograms.

A part whose recorded identity is not the validated file's current one (the file was
rebuilt) or whose lines file does not have the recorded size is stale: the export
rebuilds it. Both files are written under temp names and renamed.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from charmeta import duck
from charmeta.contract import ATTRIBUTES
from charmeta.duck import sql_ident, sql_string
from charmeta.export_lines import clean_json_sql, in_position_order, write_lines
from charmeta.file_identity import identity
from charmeta.pipeline.graph import VALIDATED
from charmeta.pipeline.layout import EXPORT_PARTS, Layout
from charmeta.tmpfiles import sweep_stale_tmp

log = logging.getLogger("charmeta.export")

PART_DIR = EXPORT_PARTS
#: Bump when a part's contents change meaning: parts of another version are rebuilt.
PART_VERSION = 1


def validated_path(root: str, key: str) -> str:
    return Layout(root).path(VALIDATED, key)


def part_paths(root: str, key: str) -> tuple[str, str]:
    """``(lines, marker)`` paths of a partition's part."""
    return Layout(root).part_paths(key)


def read_part(root: str, key: str) -> dict[str, Any] | None:
    """The part's marker when the part is current for the partition's validated file, else None."""
    lines, marker = part_paths(root, key)
    try:
        with open(marker, encoding="utf-8") as fh:
            meta = json.load(fh)
        if meta.get("version") != PART_VERSION or meta.get("validated") != list(identity(validated_path(root, key))):
            return None
        if os.path.getsize(lines) != meta.get("bytes"):
            return None
    except (OSError, ValueError):
        return None
    return meta


def build_part(root: str, key: str, con: Any = None) -> dict[str, Any]:
    """Build (or rebuild) the part of ``key`` from its validated file; returns its marker.

    ``con``: a DuckDB connection or cursor to use (default: this process's one-thread
    connection, for a pool worker that already keeps one core busy)."""
    if con is None:
        con = _worker_connection()
    src = validated_path(root, key)
    ident = identity(src)  # taken before reading: a file rewritten meanwhile leaves the part stale
    lines_path, marker = part_paths(root, key)
    os.makedirs(os.path.dirname(lines_path), exist_ok=True)
    sweep_stale_tmp(lines_path)  # a killed builder's temp files (lines and marker)
    tmp_lines, tmp_marker = f"{lines_path}.tmp-{os.getpid()}", f"{marker}.tmp-{os.getpid()}"
    try:
        con.execute("SET preserve_insertion_order = true")
        order = "" if in_position_order(src) else " ORDER BY source_position"
        table = con.sql(
            f"SELECT {clean_json_sql(newline=True)} AS j FROM read_parquet({sql_string(src)}) "
            f"WHERE status = 'ok'{order}"
        ).to_arrow_table()
        with open(tmp_lines, "wb") as fh:
            n_lines = write_lines(fh, table.to_batches())
        del table
        meta = {
            "version": PART_VERSION,
            "key": key,
            "validated": list(ident),
            "lines": n_lines,
            "bytes": os.path.getsize(tmp_lines),
            **_histograms(con, src),
        }
        with open(tmp_marker, "w", encoding="utf-8") as fh:
            json.dump(meta, fh)
        os.replace(tmp_lines, lines_path)
        os.replace(tmp_marker, marker)
    except BaseException:
        for p in (tmp_lines, tmp_marker):
            if os.path.exists(p):
                os.remove(p)
        raise
    return meta


_WORKER_CON: tuple[int, Any] = (0, None)


def _worker_connection() -> Any:
    """This process's one-thread DuckDB connection for building parts (a pool worker builds one
    part per partition; opening a database each time cost ~30 ms)."""
    global _WORKER_CON
    pid, con = _WORKER_CON
    if con is None or pid != os.getpid():
        con = duck.connect()
        con.execute("SET threads = 1")
        _WORKER_CON = (os.getpid(), con)
    return con


def ensure_part(root: str, key: str, texts: tuple[Any, Any] | None = None) -> bool:
    """Build the part of ``key`` unless it is current; True when it was built. ``texts``: the
    partition's normalized ``(source_position, text)`` when the caller still holds them (the
    cleaning part then does not read normalized_records back)."""
    built = read_part(root, key) is None
    if built:
        build_part(root, key)
    from charmeta.cleaning.config import cleaning_enabled
    from charmeta.cleaning.parts import ensure_part as ensure_cleaning_part

    if cleaning_enabled():
        # the dataset cleaning's share, while the file is hot (charmeta.cleaning), on this process's
        # connection (a connection per partition was ~12 ms)
        ensure_cleaning_part(root, key, con=_worker_connection(), texts=texts)
    return built


#: Stale parts the export rebuilds concurrently (DuckDB releases the GIL).
BUILD_THREADS = 2


def current_parts(root: str, keys: Iterable[str]) -> list[dict[str, Any]]:
    """The markers of the parts of ``keys`` (those with a validated file), in ``keys`` order,
    building the missing or stale ones first (``BUILD_THREADS`` at a time, one connection)."""
    keys = [k for k in keys if os.path.exists(validated_path(root, k))]
    metas = {k: read_part(root, k) for k in keys}
    stale = [k for k in keys if metas[k] is None]
    if stale:
        log.info("export: building %d partition parts", len(stale))
        con = duck.connect()
        try:

            def build(k: str) -> dict[str, Any]:
                cur = con.cursor()
                try:
                    return build_part(root, k, cur)
                finally:
                    cur.close()

            with ThreadPoolExecutor(BUILD_THREADS) as pool:
                for k, meta in zip(stale, pool.map(build, stale)):
                    metas[k] = meta
        finally:
            con.close()
    return [m for k in keys if (m := metas[k]) is not None]


def concatenate(root: str, metas: list[dict[str, Any]], out_fh: Any) -> int:
    """Append the parts' lines to ``out_fh`` in order (in-kernel copies where the OS has them);
    returns the number of lines written."""
    n = 0
    for meta in metas:
        lines_path, _ = part_paths(root, meta["key"])
        with open(lines_path, "rb") as src:
            _copy(src, out_fh, meta["bytes"])
        n += int(meta["lines"])
    return n


def concatenate_files(sources: list[tuple[str, int, int]], out_fh: Any) -> int:
    """Append ``(path, bytes, lines)`` files to ``out_fh`` in order; returns the lines written."""
    n = 0
    for path, size, lines in sources:
        with open(path, "rb") as src:
            _copy(src, out_fh, size)
        n += int(lines)
    return n


def _copy(src: Any, dst: Any, size: int) -> None:
    dst.flush()
    left = size
    try:
        while left > 0:
            done = os.copy_file_range(src.fileno(), dst.fileno(), left)
            if done == 0:
                break
            left -= done
    except (AttributeError, OSError):  # no copy_file_range here: copy through user space
        pass
    if left:
        src.seek(size - left)
        dst.seek(0, os.SEEK_END)
        while left > 0:
            chunk = src.read(min(left, 1 << 24))
            if not chunk:
                break
            dst.write(chunk)
            left -= len(chunk)
    if left:
        raise OSError(f"{src.name}: {left} bytes short of its recorded size")


def merged_counts(metas: list[dict[str, Any]]) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    """Counts per status and the top values per attribute (200 scalar, 50 list values) of the
    parts together: the full per-part histograms added up, then ranked (exact)."""
    status: dict[str, int] = {}
    totals: dict[str, dict[Any, int]] = {a.key: {} for a in ATTRIBUTES}
    for meta in metas:
        _add(status, meta["status_counts"])
        for a in ATTRIBUTES:
            if a.is_list:
                entry = meta["lists"][a.key]
                _add(totals[a.key], entry["values"])
                if entry["nulls"]:
                    totals[a.key][None] = totals[a.key].get(None, 0) + int(entry["nulls"])
            else:
                _add(totals[a.key], meta["scalars"][a.key])
    return status, {a.key: _top(totals[a.key], 50 if a.is_list else 200) for a in ATTRIBUTES}


def _add(into: dict[Any, int], counts: dict[str, int]) -> None:
    for k, v in counts.items():
        into[k] = into.get(k, 0) + int(v)


def _top(counts: dict[Any, int], limit: int) -> dict[str, int]:
    """``ORDER BY count DESC, value LIMIT n`` (nulls last among equal counts), keys as strings."""
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0] is None, "" if kv[0] is None else kv[0]))
    return {str(v): int(n) for v, n in ranked[:limit]}


def _histograms(con: Any, path: str) -> dict[str, Any]:
    """One partition's counts per status (every row) and full value histograms over its ok rows:
    scalars with a null as ``(absent)``, list values with their null elements counted apart."""
    src = f"read_parquet({sql_string(path)})"
    scalar = [a for a in ATTRIBUTES if not a.is_list]
    aggs = ["histogram(status)"] + [
        f"histogram(coalesce({sql_ident(a.column)}, '(absent)')) FILTER (WHERE status = 'ok')" for a in scalar
    ]
    # fetchall, not fetchone: a result left unfinished keeps the (reused) connection from
    # running the next partition's query
    (row,) = con.execute(f"SELECT {', '.join(aggs)} FROM {src}").fetchall()
    out: dict[str, Any] = {
        "status_counts": {str(k): int(v) for k, v in (row[0] or {}).items()},
        "scalars": {a.key: {str(k): int(v) for k, v in (h or {}).items()} for a, h in zip(scalar, row[1:])},
        "lists": {},
    }
    for a in ATTRIBUTES:
        if a.is_list:
            ((hist, nulls),) = con.execute(
                f"SELECT histogram(v), count(*) - count(v) FROM (SELECT unnest("
                f"{sql_ident(a.column)}) AS v FROM {src} WHERE status = 'ok')"
            ).fetchall()
            out["lists"][a.key] = {
                "values": {str(k): int(v) for k, v in (hist or {}).items()},
                "nulls": int(nulls or 0),
            }
    return out
