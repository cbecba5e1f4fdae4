"""The Batch tab: a small uploaded file (JSONL / JSON / CSV / Parquet, or a zip of images) -> records.

Why the pipeline's readers: an uploaded file is read by ``charmeta.sources``
(the shard readers of ``raw_shards``) and extracted by ``Engine.process_batch``,
so a row that would be ``invalid`` in ``charmeta run`` is ``invalid`` here with the
same reason, and the clean JSONL lines are rendered by the export's own SQL
(``export_lines.clean_json_sql``). Limits keep the app responsive: at most
``MAX_RECORDS`` records and ``MAX_UPLOAD_BYTES`` per file; bigger datasets belong
to ``charmeta run``.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from charmeta.app.analyze import IMAGE_EXTS, NO_MODEL, AppCore
from charmeta.contract import CORE_KEYS
from charmeta.records import Extraction, extractions_to_table

MAX_RECORDS = 50
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
#: Sum of the uncompressed sizes of a zip's images: a zip bomb is refused before reading.
MAX_ZIP_UNCOMPRESSED = 200 * 1024 * 1024
TEXT_EXTS = (".jsonl", ".ndjson", ".json", ".csv", ".tsv", ".parquet", ".pq")
STATUSES = ("ok", "multi_character", "excluded", "invalid")
TABLE_HEADERS = ["id", "status", "reason", *CORE_KEYS]


class BatchError(ValueError):
    """The upload as a whole cannot be used; the message says why and what to upload instead."""


@dataclass
class BatchResult:
    """What the Batch tab shows: a message, status counts, a table, two downloads."""

    message: str
    counts: dict[str, int] = field(default_factory=dict)
    rows: list[list[Any]] = field(default_factory=list)
    clean_path: str | None = None
    parquet_path: str | None = None
    table: pa.Table | None = None


def run_batch(
    path: str | Path | None,
    core: AppCore,
    out_dir: str | None = None,
    model: str = NO_MODEL,
    counter: str = "auto",
    max_records: int = MAX_RECORDS,
) -> BatchResult:
    """Extract every record of one upload; a bad upload gives a message, never an exception."""
    try:
        table, note = _extract(path, core, model, counter, max_records)
    except BatchError as exc:
        return BatchResult(f"**error:** {exc}")
    out = Path(out_dir or tempfile.mkdtemp(prefix="charmeta-batch-"))
    out.mkdir(parents=True, exist_ok=True)
    parquet_path, clean_path = out / "records_rich.parquet", out / "records_clean.jsonl"
    import pyarrow.parquet as pq

    pq.write_table(table, parquet_path, compression="zstd")
    clean_path.write_text(clean_jsonl(table), "utf-8")
    counts = Counter(table.column("status").to_pylist())
    counts_all = {s: counts.get(s, 0) for s in STATUSES}
    name = Path(str(path)).name
    msg = f"**{table.num_rows} records** from `{name}`: " + " · ".join(f"{s} {n}" for s, n in counts_all.items())
    if note:
        msg += f"  \n{note}"
    if table.num_rows and counts_all["invalid"] == table.num_rows:
        first = table.column("reason")[0].as_py()
        msg += f"  \n**no usable record in this file** (first reason: {first})"
    return BatchResult(msg, counts_all, _rows(table), str(clean_path), str(parquet_path), table)


def clean_jsonl(table: pa.Table) -> str:
    """The clean export lines of the ``ok`` rows, by the export's SQL (same bytes as ``records.jsonl``)."""
    from charmeta.duck import connect
    from charmeta.export_lines import clean_json_sql

    con = connect()
    try:
        con.register("batch", table)
        lines = con.sql(f"SELECT {clean_json_sql()} AS j FROM batch WHERE status = 'ok'").fetchall()
    finally:
        con.close()
    return "".join(line + "\n" for (line,) in lines)


def _rows(table: pa.Table) -> list[list[Any]]:
    from charmeta.contract import ATTRIBUTES

    cols = {a.key: a.column for a in ATTRIBUTES}
    data = table.select(["id", "status", "reason", *(cols[k] for k in CORE_KEYS)]).to_pylist()
    return [[r["id"], r["status"], r["reason"] or "", *(r[cols[k]] for k in CORE_KEYS)] for r in data]


def _extract(
    path: str | Path | None, core: AppCore, model: str, counter: str, max_records: int
) -> tuple[pa.Table, str | None]:
    if path is None:
        raise BatchError("no file: upload a JSONL, JSON, CSV or Parquet file, or a .zip of images")
    p = Path(str(path))
    if not p.is_file():
        raise BatchError(f"file not found: {p.name}")
    size = p.stat().st_size
    if size > MAX_UPLOAD_BYTES:
        raise BatchError(
            f"{p.name} is {size / 1e6:.1f} MB; the app takes files up to {MAX_UPLOAD_BYTES / 1e6:.0f} MB "
            f"(use `charmeta run --source FILE` for datasets)"
        )
    if size == 0:
        raise BatchError(f"{p.name} is empty")
    ext = p.suffix.lower()
    if ext == ".zip":
        return _extract_zip(p, core, model, counter, max_records)
    if ext in TEXT_EXTS:
        return _extract_text_file(p, core, max_records)
    raise BatchError(
        f"unsupported file type {ext or '(none)'!r}: upload JSONL, JSON, CSV/TSV or Parquet, or a .zip of images"
    )


def _extract_text_file(p: Path, core: AppCore, max_records: int) -> tuple[pa.Table, str | None]:
    """Rows through the pipeline's shard readers, then ``Engine.process_batch`` (first ``max_records``)."""
    from charmeta.errors import CharmetaError
    from charmeta.sources import Source, iter_shard

    try:
        specs = Source(str(p)).discover()
    except CharmetaError as exc:
        raise BatchError(str(exc)) from exc
    ids: list[str] = []
    texts: list[str | None] = []
    reasons: list[str | None] = []
    positions: list[int] = []
    more = False
    for spec in specs:
        for batch in iter_shard(spec, batch_rows=max_records + 1):
            d = batch.to_pydict()
            for rid, text, pos, reason in zip(d["id"], d["text"], d["source_position"], d["reason"]):
                if len(ids) >= max_records:
                    more = True
                    break
                ids.append(rid)
                texts.append(text)
                reasons.append(reason)
                positions.append(pos)
            if more:
                break
        if more:
            break
    if not ids:
        raise BatchError(f"{p.name} holds no records")
    table = core.engine.process_batch(ids, texts, source_shard=p.name, positions=positions, preset_invalid=reasons)
    note = f"only the first {max_records} records were processed (app limit)" if more else None
    return table, note


def _extract_zip(p: Path, core: AppCore, model: str, counter: str, max_records: int) -> tuple[pa.Table, str | None]:
    """Each image of the zip (+ its ``.txt`` sidecar of the same stem) as one fused image record."""
    try:
        zf = zipfile.ZipFile(p)
    except (zipfile.BadZipFile, OSError) as exc:
        raise BatchError(f"{p.name} is not a readable zip file ({exc})") from exc
    with zf:
        infos = [
            i
            for i in zf.infolist()
            if not i.is_dir() and not any(part.startswith((".", "__MACOSX")) for part in i.filename.split("/"))
        ]
        images = sorted((i for i in infos if os.path.splitext(i.filename)[1].lower() in IMAGE_EXTS), key=_name)
        sidecars = {os.path.splitext(i.filename)[0]: i for i in infos if i.filename.lower().endswith(".txt")}
        if not images:
            raise BatchError(f"{p.name} holds no images ({', '.join(IMAGE_EXTS)}); for captions upload a JSONL/CSV")
        note = None
        if len(images) > max_records:
            note = f"only the first {max_records} of {len(images)} images were processed (app limit)"
            images = images[:max_records]
        total = sum(i.file_size for i in images)
        if total > MAX_ZIP_UNCOMPRESSED:
            raise BatchError(
                f"{p.name} unpacks to {total / 1e6:.0f} MB of images (limit {MAX_ZIP_UNCOMPRESSED / 1e6:.0f} MB)"
            )
        cfg = core.image_config(model, counter)
        exs: list[Extraction] = []
        ids: list[str] = []
        for info in images:
            ids.append(info.filename)
            if info.file_size > cfg.max_bytes:
                exs.append(
                    Extraction.invalid(f"image too large ({info.file_size} bytes > limit {cfg.max_bytes})", "image")
                )
                continue
            try:
                data = zf.read(info)
            except Exception as exc:  # a corrupt member: one invalid record, the rest go on
                exs.append(Extraction.invalid(f"cannot read zip member: {type(exc).__name__}: {exc}", "image"))
                continue
            side = sidecars.get(os.path.splitext(info.filename)[0])
            caption = zf.read(side).decode("utf-8", errors="replace") if side is not None else None
            try:
                ex, _shown, _boxes, _backends = core.extract_image(data, caption, model, counter)
            except ValueError as exc:
                raise BatchError(str(exc)) from exc
            exs.append(ex)
    return extractions_to_table(exs, ids, p.name), note


def _name(info: zipfile.ZipInfo) -> str:
    return info.filename
