"""The encoded image of each raw row, read from the shard itself, for the image stages.

Why here and not in the image stage: how to get at the bytes is a property of
the container - a tar member (one streaming pass), a zip member (a ranged read
by the central directory's offset), a Parquet / Arrow cell (the image column of
the row groups / record batches that cover the rows), a file beside a sidecar or
named by an imagefolder ``file_name``. The image stage only sees
``ImageBytes(row, data, reason, ext)`` in source order, whatever the container,
and holds one batch of them at a time, so memory stays flat in the shard's size:
a tar streams; a zip reads one member; Parquet hands out 64 rows of the image
column at a time, though pyarrow holds the column chunk of the current row group
(``datasets`` writes image Parquet in row groups of ~100 rows, ~10-50 MB); Arrow
holds one record batch.

A row whose image cell is null (``data`` and ``reason`` both None) has no image:
the caller leaves its caption-only record as it is.
"""

from __future__ import annotations

import posixpath
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import fsspec
import pyarrow as pa

from charmeta.pathguard import is_inside, unsafe_member_name
from charmeta.sources.spec import REMOTE_BLOCK_SIZE, ShardSpec

#: Largest encoded image read into memory (same limit as tar members in ``images.ingest``).
MAX_IMAGE_BYTES = 64 * 1024 * 1024
#: Rows of the image column read at once from Parquet (an HF image row is ~50-500 kB).
COLUMN_BATCH_ROWS = 64


@dataclass
class ImageBytes:
    row: dict[str, Any]
    data: bytes | None
    reason: str | None = None
    ext: str | None = None


def _ext(name: str | None) -> str | None:
    if not name:
        return None
    return posixpath.splitext(name)[1].lstrip(".").lower() or None


def _read_uri(uri: str, root_uri: str, limit: int) -> tuple[bytes | None, str | None]:
    fs, path = fsspec.core.url_to_fs(uri)
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)
    if ("file" in protocols or "local" in protocols) and root_uri:
        root = fsspec.core.url_to_fs(root_uri)[1]
        if not is_inside(root, path):
            return None, f"image {posixpath.basename(path)!r} is a link that escapes the source folder: refused"
    try:
        with fs.open(path, "rb", block_size=REMOTE_BLOCK_SIZE) as fh:
            data = fh.read(limit + 1)
    except Exception as exc:
        return None, f"cannot read image file: {type(exc).__name__}: {exc}"
    if len(data) > limit:
        return None, f"image file too large (> {limit} bytes)"
    return data, None


def iter_image_bytes(spec: ShardSpec, rows: list[dict[str, Any]], limit: int = MAX_IMAGE_BYTES) -> Iterator[ImageBytes]:
    """``ImageBytes`` for every row that names an image (``image_member`` set), source order."""
    rows = sorted((r for r in rows if r.get("image_member")), key=lambda r: r["source_position"])
    if not rows:
        return
    if spec.fmt == "tar":
        yield from _tar(spec, rows, limit)
    elif spec.fmt == "zip":
        yield from _zip(spec, rows, limit)
    elif spec.fmt == "parquet" or spec.fmt == "arrow":
        yield from _column(spec, rows, limit)
    elif spec.fmt == "txt":
        yield from _sidecar_images(spec, rows, limit)
    elif spec.fmt == "imagefolder":
        for r in rows:
            name = r["image_member"]
            why = unsafe_member_name(name, "file_name")
            if why is not None:
                yield ImageBytes(r, None, why, _ext(name))
                continue
            data, why = _read_uri(posixpath.join(spec.root_uri, name), spec.root_uri, limit)
            yield ImageBytes(r, data, why, _ext(name))
    else:
        for r in rows:
            yield ImageBytes(r, None, f"format {spec.fmt!r} holds no images", None)


def _sidecar_images(spec: ShardSpec, rows: list[dict[str, Any]], limit: int) -> Iterator[ImageBytes]:
    for r in rows:
        i = r["source_position"] - spec.start
        rel = r["image_member"]
        if not 0 <= i < len(spec.members):
            yield ImageBytes(r, None, "image member outside the shard's member list", _ext(rel))
            continue
        caption_uri = spec.members[i][0]
        if caption_uri:  # the image sits beside its caption sidecar
            uri = posixpath.join(posixpath.dirname(caption_uri), posixpath.basename(rel))
        else:
            uri = posixpath.join(spec.root_uri, rel)
        data, why = _read_uri(uri, spec.root_uri, limit)
        yield ImageBytes(r, data, why, _ext(rel))


def _tar(spec: ShardSpec, rows: list[dict[str, Any]], limit: int) -> Iterator[ImageBytes]:
    """One streaming pass (plain, gzip, bzip2, xz); each wanted member is yielded as it passes."""
    wanted = {r["image_member"]: r for r in rows}
    err: str | None = None
    try:
        fs, path = fsspec.core.url_to_fs(spec.uri)
        with fs.open(path, "rb", block_size=REMOTE_BLOCK_SIZE) as fh, tarfile.open(fileobj=fh, mode="r|*") as tar:
            for m in tar:
                r = wanted.pop(m.name, None)
                if r is None:
                    continue
                if not m.isfile():
                    yield ImageBytes(r, None, f"tar member {m.name} is not a regular file", _ext(m.name))
                elif m.size > limit:
                    yield ImageBytes(r, None, f"tar member {m.name} too large ({m.size} bytes > {limit})", _ext(m.name))
                else:
                    f = tar.extractfile(m)
                    yield ImageBytes(r, f.read() if f is not None else None, None, _ext(m.name))
                if not wanted:
                    break
    except (tarfile.TarError, OSError, EOFError) as exc:
        err = f"tar is truncated or corrupt: {exc}"
    for name, r in wanted.items():
        yield ImageBytes(r, None, err or "image member not found in the tar", _ext(name))


def _zip(spec: ShardSpec, rows: list[dict[str, Any]], limit: int) -> Iterator[ImageBytes]:
    """Member by member through the central directory (ranged reads on remote files)."""
    from charmeta.sources.archives import read_member

    try:
        fs, path = fsspec.core.url_to_fs(spec.uri)
        fh = fs.open(path, "rb", block_size=REMOTE_BLOCK_SIZE)
    except Exception as exc:
        for r in rows:
            yield ImageBytes(r, None, f"cannot open zip: {type(exc).__name__}: {exc}", _ext(r["image_member"]))
        return
    with fh:
        try:
            zf = zipfile.ZipFile(fh)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            for r in rows:
                yield ImageBytes(r, None, f"zip is truncated or corrupt: {exc}", _ext(r["image_member"]))
            return
        with zf:
            for r in rows:
                name = r["image_member"]
                try:
                    info = zf.getinfo(name)
                except KeyError:
                    yield ImageBytes(r, None, "image member not found in the zip", _ext(name))
                    continue
                data, why = read_member(zf, info, limit)
                yield ImageBytes(r, data, why, _ext(name))


# -- Parquet / Arrow image columns ---------------------------------------------------
def _cell(value: Any, spec: ShardSpec, limit: int) -> tuple[bytes | None, str | None, str | None]:
    """``(bytes, reason, ext)`` of one image cell: HF ``{bytes, path}`` struct or plain binary.

    A struct with only a ``path`` (``datasets`` keeps paths for images left on disk) is read
    relative to the shard's folder, under the same path rules as archive members."""
    if value is None:
        return None, None, None
    if isinstance(value, dict):
        data, path = value.get("bytes"), value.get("path")
        ext = _ext(path) if isinstance(path, str) else None
        if data is None and isinstance(path, str) and path:
            why = unsafe_member_name(path, "image path")
            if why is not None:
                return None, why, ext
            root = posixpath.dirname(spec.uri)
            data, why = _read_uri(posixpath.join(root, path), root, limit)
            return data, why, ext
        value = data
        if value is None:
            return None, None, ext
    else:
        ext = None
    data = bytes(value)
    if len(data) > limit:
        return None, f"image cell too large ({len(data)} bytes > {limit})", ext
    return data, None, ext


def _table_batches(spec: ShardSpec, first: int, last: int) -> Iterator[tuple[int, pa.RecordBatch]]:
    """``(position of first row, batch of the image column)`` covering rows ``first..last``."""
    col = spec.image_field
    if spec.fmt == "arrow":
        from charmeta.sources import arrowio

        with arrowio.open_ipc(spec.uri) as (_schema, batches):
            pos = 0
            for b in batches:
                if pos + b.num_rows > first:
                    yield pos, b.select([col])
                pos += b.num_rows
                if pos > last:
                    return
        return
    import pyarrow.parquet as pq

    from charmeta.sources.readers import open_uri

    with open_uri(spec.uri, exact=True) as fh:
        pf = pq.ParquetFile(fh)
        md = pf.metadata
        groups, start, row = [], None, 0
        for i in range(md.num_row_groups):
            n = md.row_group(i).num_rows
            if row + n > first and row <= last:
                groups.append(i)
                start = row if start is None else start
            row += n
        if not groups:
            return
        pos = start or 0
        for b in pf.iter_batches(batch_size=COLUMN_BATCH_ROWS, row_groups=groups, columns=[col]):
            yield pos, b
            pos += b.num_rows
            if pos > last:
                return


def _column(spec: ShardSpec, rows: list[dict[str, Any]], limit: int) -> Iterator[ImageBytes]:
    by_pos = {r["source_position"]: r for r in rows}
    first, last = rows[0]["source_position"], rows[-1]["source_position"]
    col = spec.image_field
    if not col:
        for r in rows:
            yield ImageBytes(r, None, "shard has no image column", None)
        return
    try:
        for pos0, batch in _table_batches(spec, first, last):
            hit = [p for p in range(pos0, pos0 + batch.num_rows) if p in by_pos]
            if not hit:
                continue
            arr = batch.column(0)
            for p in hit:
                data, why, ext = _cell(arr[p - pos0].as_py(), spec, limit)
                yield ImageBytes(by_pos.pop(p), data, why, ext)
    except Exception as exc:  # a corrupt file: the rows not read yet are invalid, never lost
        for r in by_pos.values():
            yield ImageBytes(r, None, f"cannot read image column {col!r}: {type(exc).__name__}: {exc}", None)
        return
    for r in by_pos.values():
        yield ImageBytes(r, None, "row not found in the image column", None)
