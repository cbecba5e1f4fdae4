"""Readers that turn image sources into a stream of ``ImageRecord`` (bytes + caption).

Three layouts, one record type, so everything downstream is source-agnostic:

* WebDataset tars: ``<key>.<jpg|jpeg|png|webp|gif|bmp>`` plus optional ``<key>.txt``
  (the caption); members of one sample are adjacent, as WebDataset requires;
* folders: image files with an optional ``<stem>.txt`` sidecar;
* Parquet: a bytes column (plain binary or the HF ``{bytes, path}`` struct) or a
  path column (relative to the Parquet file), plus an optional caption column.

Readers never raise on one bad sample: a missing file or an oversized member
becomes a record with ``preset_reason`` set, which ``normalize`` turns into an
``invalid`` row.
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from charmeta.errors import SourceError, UnsafeInputError
from charmeta.pathguard import unsafe_tar_member

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff")
CAPTION_EXTS = ("txt", "caption", "tags")
BYTES_COLUMNS = ("image", "image_bytes", "bytes", "jpg", "png", "webp")
PATH_COLUMNS = ("image_path", "path", "file", "filename")
CAPTION_COLUMNS = ("caption", "text", "tags", "txt")
ID_COLUMNS = ("id", "key", "__key__")
#: Largest tar member read into memory; larger ones become invalid records.
MAX_MEMBER_BYTES = 64 * 1024 * 1024


@dataclass
class ImageRecord:
    """One image entry: raw bytes (not decoded yet) and the caption that travels with it."""

    id: str
    data: bytes | None
    caption: str | None = None
    ext: str | None = None
    source: str | None = None
    position: int = 0
    preset_reason: str | None = None


def _decode_caption(raw: bytes | None) -> str | None:
    if raw is None:
        return None
    try:
        return raw.decode("utf-8").strip() or None
    except UnicodeDecodeError:
        return raw.decode("utf-8", errors="replace").strip() or None


def _split_key(name: str) -> tuple[str, str]:
    """WebDataset convention: the key is the path up to the first dot of the basename."""
    d, base = os.path.split(name)
    stem, _, ext = base.partition(".")
    return (f"{d}/{stem}" if d else stem), ext.lower()


def read_webdataset(path: str | Path) -> Iterator[ImageRecord]:
    """Stream samples from one WebDataset tar (plain or gz), grouping adjacent members by key."""
    path = Path(path)
    pos = 0
    cur_key: str | None = None
    parts: dict[str, bytes | None] = {}
    oversize: dict[str, str] = {}

    def flush() -> Iterator[ImageRecord]:
        nonlocal pos
        if cur_key is None:
            return
        img_ext = next((e for e in IMAGE_EXTS if e in parts or e in oversize), None)
        cap = next((parts.get(e) for e in CAPTION_EXTS if e in parts), None)
        if "<refused>" in oversize:
            yield ImageRecord(cur_key, None, None, img_ext, str(path), pos, oversize["<refused>"])
        elif img_ext is None:
            reason = "sample has no image member (only: " + ",".join(sorted(parts)) + ")"
            yield ImageRecord(cur_key, None, _decode_caption(cap), None, str(path), pos, reason)
        else:
            yield ImageRecord(
                cur_key, parts.get(img_ext), _decode_caption(cap), img_ext, str(path), pos, oversize.get(img_ext)
            )
        pos += 1

    try:
        tf = tarfile.open(path, mode="r|*")
    except (tarfile.TarError, OSError, EOFError) as exc:  # garbage or empty file: one visible invalid record
        yield ImageRecord(
            f"{path.name}#unreadable",
            None,
            None,
            None,
            str(path),
            0,
            f"cannot open WebDataset tar (garbage or empty file): {exc}",
        )
        return
    with tf:
        try:
            for m in tf:
                if m.isdir():
                    continue
                key, ext = _split_key(m.name)
                if key != cur_key:
                    yield from flush()
                    cur_key, parts, oversize = key, {}, {}
                why = unsafe_tar_member(m)
                if why is not None:  # links, absolute or '..' paths: the whole sample is refused
                    oversize.setdefault("<refused>", why)
                    continue
                if m.size > MAX_MEMBER_BYTES:
                    oversize[ext] = f"tar member {m.name} too large ({m.size} bytes > {MAX_MEMBER_BYTES})"
                    continue
                f = tf.extractfile(m)
                parts[ext] = f.read() if f is not None else None
        except (tarfile.TarError, OSError, EOFError) as exc:
            yield from flush()
            cur_key = None
            yield ImageRecord(
                f"{path.name}#truncated",
                None,
                None,
                None,
                str(path),
                pos,
                f"tar is truncated or corrupt after {pos} samples: {exc}",
            )
            return
        yield from flush()


def read_folder(root: str | Path) -> Iterator[ImageRecord]:
    """Image files under ``root`` (sorted, recursive) with their ``<stem>.txt`` sidecars."""
    root = Path(root).resolve()
    if not root.is_dir():
        raise SourceError(f"not a folder: {root}")
    pos = 0
    for p in sorted(root.rglob("*")):
        ext = p.suffix.lower().lstrip(".")
        if ext not in IMAGE_EXTS or not p.is_file():
            continue
        rid = str(p.relative_to(root).with_suffix(""))
        real = p.resolve()
        if root not in real.parents:
            yield ImageRecord(rid, None, None, ext, str(root), pos, f"symlink escapes the source folder: {p.name}")
            pos += 1
            continue
        cap = None
        for cext in CAPTION_EXTS:
            side = p.with_suffix("." + cext)
            if side.is_file():
                cap = _decode_caption(side.read_bytes())
                break
        size = real.stat().st_size
        if size > MAX_MEMBER_BYTES:
            yield ImageRecord(rid, None, cap, ext, str(root), pos, f"file too large ({size} bytes)")
        else:
            yield ImageRecord(rid, real.read_bytes(), cap, ext, str(root), pos)
        pos += 1


def _pick(names: list[str], wanted: tuple[str, ...]) -> str | None:
    lower = {n.lower(): n for n in names}
    return next((lower[w] for w in wanted if w in lower), None)


def _safe_join(base: Path, rel: str) -> Path:
    p = (base / rel).resolve()
    if base.resolve() not in p.parents:
        raise UnsafeInputError(f"image path escapes the Parquet file's folder: {rel}")
    return p


def read_parquet(path: str | Path, batch_size: int = 256) -> Iterator[ImageRecord]:
    """Rows of a Parquet file with image bytes or relative paths, plus optional captions."""
    import pyarrow.parquet as pq

    path = Path(path)
    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:
        raise SourceError(f"cannot open Parquet {path}: {exc}") from exc
    names = pf.schema_arrow.names
    bcol, pcol = _pick(names, BYTES_COLUMNS), _pick(names, PATH_COLUMNS)
    ccol, icol = _pick(names, CAPTION_COLUMNS), _pick(names, ID_COLUMNS)
    if bcol is None and pcol is None:
        raise SourceError(f"{path}: no image column (looked for {BYTES_COLUMNS + PATH_COLUMNS}); columns: {names}")
    cols = [c for c in (bcol, pcol, ccol, icol) if c]
    pos = 0
    for batch in pf.iter_batches(batch_size=batch_size, columns=cols):
        d = batch.to_pydict()
        for i in range(batch.num_rows):
            rid = str(d[icol][i]) if icol else f"{path.stem}:{pos}"
            cap = d[ccol][i] if ccol else None
            cap = cap.decode("utf-8", "replace") if isinstance(cap, bytes) else cap
            data, ext, reason = None, None, None
            if bcol:
                v = d[bcol][i]
                if isinstance(v, dict):  # HF datasets Image feature: {bytes, path}
                    data, rel = v.get("bytes"), v.get("path")
                    ext = Path(rel).suffix.lstrip(".").lower() if rel else None
                else:
                    data = v
            if data is None and pcol and d[pcol][i]:
                rel = str(d[pcol][i])
                ext = Path(rel).suffix.lstrip(".").lower()
                try:
                    p = _safe_join(path.parent, rel)
                    data = p.read_bytes() if p.is_file() else None
                    reason = None if data is not None else f"image file not found: {rel}"
                except UnsafeInputError as exc:
                    reason = str(exc)
            yield ImageRecord(rid, data, cap, ext, str(path), pos, reason)
            pos += 1


def read_source(path: str | Path) -> Iterator[ImageRecord]:
    """Dispatch on the path: a folder, a ``.tar``/``.tar.gz`` WebDataset shard, or ``.parquet``."""
    p = Path(path)
    if p.is_dir():
        return read_folder(p)
    name = p.name.lower()
    if name.endswith((".tar", ".tar.gz", ".tgz")):
        return read_webdataset(p)
    if name.endswith(".parquet"):
        return read_parquet(p)
    raise SourceError(f"unsupported image source {p}: expected a folder, a .tar WebDataset shard or a .parquet file")
