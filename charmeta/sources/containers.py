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
            plan = zip_plan(zf)
            stop = plan.rows if spec.stop is None else min(spec.stop, plan.rows)
            if plan.metadata is not None and spec.start < plan.lines:
                for pos, obj in plan.records(zf):
                    if pos >= stop:
                        break
                    if pos >= spec.start:
                        yield metadata_row(obj, pos, spec, plan.base)
            for pos in range(max(spec.start, plan.lines), stop):
                yield _zip_row(zf, plan.samples[pos - plan.lines], pos, spec)


#: Largest ``metadata.jsonl`` / ``.csv`` read from inside a zip (it is parsed in each shard's pass).
MAX_ZIP_METADATA_BYTES = 256 * 1024 * 1024


class ZipPlan:
    """How a zip's rows are numbered: the lines of its imagefolder metadata file (if it has one)
    first, then every sample whose image no metadata line names (WebDataset key grouping)."""

    def __init__(self, metadata: zipfile.ZipInfo | None, lines: int, samples: list[Any]) -> None:
        self.metadata = metadata
        self.lines = lines
        self.samples = samples
        self.base = posixpath.dirname(metadata.filename) if metadata is not None else ""

    @property
    def rows(self) -> int:
        return self.lines + len(self.samples)

    def records(self, zf: zipfile.ZipFile) -> Iterator[tuple[int, Any]]:
        if self.metadata is None:
            return
        is_csv = self.metadata.filename.lower().endswith(".csv")
        with zf.open(self.metadata) as fh:
            for pos, _off, obj in parse_metadata(fh, is_csv):
                yield pos, obj


def zip_plan(zf: zipfile.ZipFile) -> ZipPlan:
    """The row plan of an archive, from its central directory (+ its metadata file, if any)."""
    from charmeta.sources.layouts import METADATA_NAMES

    samples = zip_samples(zf)
    metas = [
        i
        for s in samples
        for i in s.members.values()
        if posixpath.basename(i.filename).lower() in METADATA_NAMES and s.refused is None
    ]
    if not metas:
        return ZipPlan(None, 0, samples)
    meta = min(metas, key=lambda i: (i.filename.count("/"), i.filename))
    if meta.file_size > MAX_ZIP_METADATA_BYTES:
        return ZipPlan(None, 0, samples)  # read as plain samples: the metadata sample becomes an invalid row
    plan = ZipPlan(meta, 0, [])
    named: set[str] = set()
    lines = 0
    for pos, obj in plan.records(zf):
        lines = pos + 1
        name = obj.get("file_name") if isinstance(obj, dict) else None
        if isinstance(name, str) and name and unsafe_member_name(name) is None:
            named.add(posixpath.normpath(posixpath.join(plan.base, name)) if plan.base else posixpath.normpath(name))
    rest = []
    for s in samples:
        if any(i is meta for i in s.members.values()) and len(s.members) == 1:
            continue  # the metadata file itself
        if any(i.filename in named for i in s.members.values()):
            continue  # an image a metadata line names: that line is its row
        rest.append(s)
    plan.lines, plan.samples = lines, rest
    return plan


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
        yield from parse_metadata(fh, relpath.lower().endswith(".csv"), byte_start, start)


def parse_metadata(
    fh: Any, is_csv: bool, byte_start: int | None = None, start: int = 0
) -> Iterator[tuple[int, int, Any]]:
    """``metadata_rows`` over an open binary file (a local / remote file or a zip member)."""
    if is_csv:
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


def metadata_row(obj: Any, pos: int, spec: ShardSpec, base: str = "") -> Row:
    """One imagefolder metadata record as a raw row; ``image_member`` = ``file_name`` joined
    to ``base`` (the metadata file's folder inside a zip; "" for a folder on disk)."""
    if isinstance(obj, BadLine):
        return f"{spec.relpath}:{pos}", None, pos, obj.reason, None
    if not isinstance(obj, dict):
        return f"{spec.relpath}:{pos}", None, pos, "metadata record must be an object", None
    name = obj.get("file_name")
    rid, text, _, reason, _ = record_to_row(obj, pos, spec)
    if not isinstance(name, str) or not name:
        return rid, text, pos, reason or "metadata record has no file_name", None
    why = unsafe_member_name(name, "file_name")
    if not any(obj.get(k) is not None for k in ID_FIELD_CANDIDATES):
        # no id of its own: the image path up to the first dot (the WebDataset key)
        rid = split_key(posixpath.normpath(name))[0] if why is None else f"{spec.relpath}:{pos}"
    if why is not None:
        return rid, None, pos, why, None
    return rid, text, pos, reason, posixpath.normpath(posixpath.join(base, name)) if base else name


def rows_imagefolder(spec: ShardSpec) -> Iterator[Row]:
    """Rows of an imagefolder metadata file: caption from the record, image = ``file_name``."""
    for pos, _offset, obj in metadata_rows(spec.uri, spec.relpath, spec.byte_start, spec.start):
        if pos < spec.start:
            continue
        if spec.stop is not None and pos >= spec.stop:
            break
        yield metadata_row(obj, pos, spec)
