"""Raw-row readers for the image containers: Arrow IPC, zip archives, HF ``imagefolder``.

Same contract as ``readers``: one ``RAW_SCHEMA`` row per input row, in source
order, a bad row carries its ``reason``. Image bytes are *not* read here; a row
names its image in ``image_member`` (an archive member, a ``file_name``, or
``<column>[<position>]``) and the image stage reads the bytes from the shard
(``charmeta.sources.image_bytes``), so the text path never holds pixels.
"""

from __future__ import annotations

import csv
import io
import json
import posixpath
import zipfile
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from charmeta.pathguard import unsafe_member_name
from charmeta.sources import arrowio
from charmeta.sources.archives import read_member, split_key, zip_samples
from charmeta.sources.readers import (
    _RATING_FIELD,
    MAX_TAR_TEXT_BYTES,
    TAR_IMAGE_EXTS,
    TAR_TEXT_EXTS,
    Row,
    _open,
    _parquet_batch,
    _pick,
    record_to_row,
)
from charmeta.sources.spec import ID_FIELD_CANDIDATES, TEXT_FIELD_CANDIDATES, ShardSpec


# -- Arrow IPC ----------------------------------------------------------------------
def iter_arrow(spec: ShardSpec, batch_rows: int) -> Iterator[pa.RecordBatch]:
    """Rows ``[start, stop)`` of an ``.arrow`` file, one record batch at a time."""
    stop = spec.stop
    with arrowio.open_ipc(spec.uri) as (schema, batches):
        names = schema.names
        text_col = _pick(names, spec.text_field, TEXT_FIELD_CANDIDATES)
        id_col = _pick(names, None, ID_FIELD_CANDIDATES)
        rating_col = _RATING_FIELD if _RATING_FIELD in names and text_col else None
        image_col = spec.image_field if spec.image_field in names else None
        cols = [c for c in (text_col, id_col, rating_col) if c]
        pos = 0
        for batch in batches:
            n = batch.num_rows
            lo, hi = max(spec.start - pos, 0), n if stop is None else min(stop - pos, n)
            first = pos
            pos += n
            if hi > lo:
                part = batch.select(cols).slice(lo, hi - lo)
                for s in range(0, part.num_rows, batch_rows):
                    chunk = part.slice(s, batch_rows)
                    yield _parquet_batch(
                        chunk, text_col, id_col, first + lo + s, spec, rating_col, n=chunk.num_rows, image_col=image_col
                    )
            if stop is not None and pos >= stop:
                break


# -- zip ------------------------------------------------------------------------------
def rows_zip(spec: ShardSpec) -> Iterator[Row]:
    """Samples ``[start, stop)`` of a zip: caption member read (size-limited), image named."""
    try:
        fh = _open(spec.uri)
    except Exception as exc:
        yield f"{spec.relpath}:0", None, 0, f"cannot open zip: {type(exc).__name__}: {exc}", None
        return
    with fh:
        try:
            zf = zipfile.ZipFile(fh)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            yield f"{spec.relpath}:0", None, 0, f"zip is truncated or corrupt: {exc}", None
            return
        with zf:
            samples = zip_samples(zf)
            stop = len(samples) if spec.stop is None else min(spec.stop, len(samples))
            for pos in range(spec.start, stop):
                yield _zip_row(zf, samples[pos], pos, spec)


def _zip_row(zf: zipfile.ZipFile, sample: Any, pos: int, spec: ShardSpec) -> Row:
    key = sample.key
    image = next((sample.members[e].filename for e in TAR_IMAGE_EXTS if e in sample.members), None)
    if image is None:  # double extensions (``x.seg.png``): the last part decides
        image = next(
            (i.filename for e, i in sample.members.items() if e.rsplit(".", 1)[-1] in TAR_IMAGE_EXTS),
            None,
        )
    if sample.refused:
        return key, None, pos, sample.refused, None
    for ext in TAR_TEXT_EXTS:
        info = sample.members.get(ext)
        if info is None:
            continue
        data, why = read_member(zf, info, MAX_TAR_TEXT_BYTES)
        if why is not None:
            return key, None, pos, why, image
        try:
            text = data.decode("utf-8")  # type: ignore[union-attr]
        except UnicodeDecodeError as exc:
            return key, None, pos, f"zip member {info.filename} is not valid UTF-8 (byte {exc.start})", image
        if ext == "json":
            try:
                obj = json.loads(text)
            except ValueError as exc:
                return key, None, pos, f"zip member {info.filename} is broken JSON: {exc}", image
            _rid, t, _, reason, _ = record_to_row(obj, pos, spec)
            return key, t, pos, reason, image
        return key, text.strip("\r\n"), pos, None, image
    return key, None, pos, "zip sample has no text member (.txt/.caption/.tags/.json)", image


# -- imagefolder metadata ---------------------------------------------------------------
class BadLine:
    """A metadata line that could not be parsed (kept so it becomes an ``invalid`` row)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


def metadata_rows(
    uri: str, relpath: str, byte_start: int | None = None, start: int = 0
) -> Iterator[tuple[int, int, Any]]:
    """``(position, byte offset, record | BadLine)`` for each row of a ``metadata.jsonl`` /
    ``metadata.csv`` (blank lines are not rows; positions count lines like the JSON Lines reader)."""
    with _open(uri) as fh:
        if relpath.lower().endswith(".csv"):
            text = io.TextIOWrapper(fh, encoding="utf-8-sig", errors="replace", newline="")
            reader = csv.reader(text)
            header = next(reader, None)
            if header is None:
                return
            for pos, values in enumerate(reader):
                if len(values) != len(header):
                    if any(v.strip() for v in values):
                        yield pos, 0, BadLine(f"CSV row has {len(values)} fields, header has {len(header)}")
                    continue
                yield pos, 0, dict(zip(header, values))
            return
        pos, offset = 0, 0
        if byte_start:
            fh.seek(byte_start)
            pos, offset = start, byte_start
        for raw in fh:
            line_pos, line_offset = pos, offset
            pos += 1
            offset += len(raw)
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as exc:
                yield line_pos, line_offset, BadLine(f"line is not valid UTF-8 (byte {exc.start})")
                continue
            except ValueError as exc:
                yield line_pos, line_offset, BadLine(f"broken JSON line: {exc}")
                continue
            yield line_pos, line_offset, obj


def rows_imagefolder(spec: ShardSpec) -> Iterator[Row]:
    """Rows of an imagefolder metadata file: caption from the record, image = ``file_name``."""
    for pos, _offset, obj in metadata_rows(spec.uri, spec.relpath, spec.byte_start, spec.start):
        if pos < spec.start:
            continue
        if spec.stop is not None and pos >= spec.stop:
            break
        if isinstance(obj, BadLine):
            yield f"{spec.relpath}:{pos}", None, pos, obj.reason, None
            continue
        if not isinstance(obj, dict):
            yield f"{spec.relpath}:{pos}", None, pos, "metadata record must be an object", None
            continue
        name = obj.get("file_name")
        if not isinstance(name, str) or not name:
            rid, text, _, reason, _ = record_to_row(obj, pos, spec)
            yield rid, text, pos, reason or "metadata record has no file_name", None
            continue
        why = unsafe_member_name(name, "file_name")
        # id: the record's own id, else the image path up to the first dot (the WebDataset key)
        has_id = any(obj.get(k) is not None for k in ID_FIELD_CANDIDATES)
        rid, text, _, reason, _ = record_to_row(obj, pos, spec)
        if not has_id:
            rid = split_key(posixpath.normpath(name))[0] if why is None else f"{spec.relpath}:{pos}"
        if why is not None:
            yield rid, None, pos, why, None
            continue
        yield rid, text, pos, reason, name
