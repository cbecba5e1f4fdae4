"""Find the files of a source and cut them into fixed-size row shards.

A source is a local directory, a local file or glob, or any fsspec URL -
notably the Hugging Face form ``hf://datasets/<org>/<name>/<path or glob>``,
which ``huggingface_hub``'s ``HfFileSystem`` serves with ranged HTTP reads, so
discovery reads only Parquet footers and listings, never whole files.

Sharding rules (``shard_rows`` rows per partition):

* Parquet: row groups are packed into shards from the footer; a row group much
  larger than ``shard_rows`` is split by row range.
* JSON Lines (local): one newline-counting pass records the byte offset of every
  ``shard_rows``-th line, so a shard seeks straight to its first line. Remote
  JSON Lines files are one shard each (counting would download them).
* CSV / JSON array (local): rows are counted once; each shard re-reads the file
  and skips to its range (prefer Parquet or JSON Lines at scale).
* ``.txt`` sidecars: ``shard_rows`` caption files of one folder per shard.
* WebDataset ``.tar``: one shard per tar (tars already are shards).

A file that cannot even be opened becomes a ``broken`` shard that yields one
``invalid`` record naming the error, so the problem is visible in the dataset
instead of crashing discovery.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import posixpath
from dataclasses import dataclass
from typing import Any

import fsspec

from charmeta.errors import SourceError
from charmeta.sources.spec import DEFAULT_SHARD_ROWS, ShardSpec, partition_key

log = logging.getLogger("charmeta.sources")

FORMAT_BY_EXT = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "txt",
    ".tar": "tar",
}
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")
_GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class SourceFile:
    uri: str
    path: str  # path inside the filesystem
    relpath: str
    fmt: str
    fingerprint: str


def _fs_fingerprint(info: dict[str, Any]) -> str:
    parts = [str(info.get("size"))]
    for k in ("mtime", "LastModified", "last_modified", "etag", "ETag", "blob_id", "oid"):
        v = info.get(k)
        if v is not None:
            parts.append(f"{k}={v}")
            if k in ("blob_id", "oid", "etag", "ETag"):
                break
    last_commit = info.get("last_commit")
    if last_commit is not None and len(parts) == 1:
        parts.append(str(getattr(last_commit, "oid", last_commit)))
    return "|".join(parts)


class Source:
    """A dataset location plus reader settings; ``discover()`` returns its shards."""

    def __init__(
        self,
        uri: str,
        shard_rows: int = DEFAULT_SHARD_ROWS,
        text_field: str | None = None,
        fs: fsspec.AbstractFileSystem | None = None,
    ) -> None:
        if shard_rows < 1:
            raise SourceError(f"shard_rows must be >= 1, got {shard_rows}")
        self.uri = str(uri)
        self.shard_rows = int(shard_rows)
        self.text_field = text_field or None
        if fs is None:
            try:
                fs, path = fsspec.core.url_to_fs(self.uri)
            except (ImportError, ValueError) as exc:
                raise SourceError(f"cannot open source {self.uri!r}: {exc}") from exc
        else:
            path = fs._strip_protocol(self.uri)
        self.fs = fs
        self.path = path.rstrip("/") if len(path) > 1 else path

    @property
    def is_local(self) -> bool:
        protocol = self.fs.protocol
        protocols = (protocol,) if isinstance(protocol, str) else tuple(protocol)
        return "file" in protocols or "local" in protocols

    # -- listing -----------------------------------------------------------
    def files(self) -> list[SourceFile]:
        """Readable files of the source, sorted by relative path (deterministic keys)."""
        path = self.path
        if any(c in path for c in _GLOB_CHARS):
            base = path
            while any(c in posixpath.basename(base) for c in _GLOB_CHARS) or any(c in base for c in _GLOB_CHARS):
                base = posixpath.dirname(base)
            infos = self.fs.glob(path, detail=True)
        elif self.fs.isdir(path):
            base = path
            infos = self.fs.find(path, detail=True)
        elif self.fs.exists(path):
            base = posixpath.dirname(path)
            infos = {path: self.fs.info(path)}
        else:
            raise SourceError(
                f"source {self.uri!r} does not exist (expected a folder, a file, a glob or hf://datasets/...)"
            )
        out: list[SourceFile] = []
        for p, info in sorted(infos.items()):
            if info.get("type") == "directory":
                continue
            rel = posixpath.relpath(p, base) if base else p
            name = posixpath.basename(p)
            if name.startswith(".") or any(part.startswith(".") for part in rel.split("/")[:-1]):
                continue
            ext = posixpath.splitext(name)[1].lower()
            fmt = FORMAT_BY_EXT.get(ext)
            if fmt is None:
                if ext not in IMAGE_EXTS and name.lower() not in ("readme.md", "license"):
                    log.debug("skipping %s: unknown extension %r", rel, ext)
                continue
            out.append(SourceFile(self.fs.unstrip_protocol(p), p, rel, fmt, _fs_fingerprint(info)))
        return out

    # -- sharding ----------------------------------------------------------
    def discover(self) -> list[ShardSpec]:
        """All shards of the source, in a stable order."""
        files = self.files()
        shards: list[ShardSpec] = []
        txt_by_dir: dict[str, list[SourceFile]] = {}
        for f in files:
            if f.fmt == "txt":
                txt_by_dir.setdefault(posixpath.dirname(f.relpath), []).append(f)
                continue
            try:
                shards.extend(self._shard_file(f))
            except Exception as exc:  # unreadable file -> one visible invalid record
                log.warning("cannot read %s: %s", f.relpath, exc)
                shards.append(self._broken(f, f"cannot read {f.fmt} file: {type(exc).__name__}: {exc}"))
        if txt_by_dir:
            images = self._image_index()
            for d, group in sorted(txt_by_dir.items()):
                for i in range(0, len(group), self.shard_rows):
                    chunk = group[i : i + self.shard_rows]
                    members = tuple((m.uri, images.get(posixpath.splitext(m.relpath)[0], "")) for m in chunk)
                    rel = (d + "/" if d else "") + "*.txt"
                    shards.append(
                        ShardSpec(
                            key=partition_key(rel, i),
                            uri=chunk[0].uri,
                            relpath=rel,
                            fmt="txt",
                            start=i,
                            stop=i + len(chunk),
                            file_fingerprint="|".join(m.fingerprint for m in chunk)[:4000],
                            members=members,
                        )
                    )
        return shards

    def _image_index(self) -> dict[str, str]:
        path = self.path
        try:
            base = path if self.fs.isdir(path) else posixpath.dirname(path.split("*")[0])
            found = self.fs.find(base)
        except Exception:
            return {}
        out = {}
        for p in found:
            if posixpath.splitext(p)[1].lower() in IMAGE_EXTS:
                rel = posixpath.relpath(p, base)
                out[posixpath.splitext(rel)[0]] = rel
        return out

    def _broken(self, f: SourceFile, reason: str) -> ShardSpec:
        return ShardSpec(partition_key(f.relpath, 0), f.uri, f.relpath, "broken", 0, 1, f.fingerprint, error=reason)

    def _spec(self, f: SourceFile, start: int, stop: int | None, **kw: Any) -> ShardSpec:
        return ShardSpec(
            key=partition_key(f.relpath, start),
            uri=f.uri,
            relpath=f.relpath,
            fmt=f.fmt,
            start=start,
            stop=stop,
            file_fingerprint=f.fingerprint,
            text_field=self.text_field,
            **kw,
        )

    def _ranges(self, f: SourceFile, n_rows: int) -> list[ShardSpec]:
        if n_rows <= self.shard_rows:
            return [self._spec(f, 0, None)]
        return [self._spec(f, s, min(s + self.shard_rows, n_rows)) for s in range(0, n_rows, self.shard_rows)]

    def _shard_file(self, f: SourceFile) -> list[ShardSpec]:
        if f.fmt == "parquet":
            return self._shard_parquet(f)
        if f.fmt == "jsonl":
            return self._shard_jsonl(f) if self.is_local else [self._spec(f, 0, None)]
        if f.fmt == "csv":
            if not self.is_local:
                return [self._spec(f, 0, None)]
            with self.fs.open(f.path, "rb") as fh:
                text = io.TextIOWrapper(fh, encoding="utf-8", errors="replace", newline="")
                n = sum(1 for _ in csv.reader(text, dialect=_dialect(f.relpath))) - 1
            return self._ranges(f, max(n, 0))
        if f.fmt == "json":
            if not self.is_local or self.fs.size(f.path) < 64 * 1024 * 1024:
                return [self._spec(f, 0, None)]
            from charmeta.sources.readers import load_json_records

            with self.fs.open(f.path, "rb") as fh:
                records, _err = load_json_records(fh.read())
            return self._ranges(f, len(records))
        return [self._spec(f, 0, None)]  # tar

    def _shard_parquet(self, f: SourceFile) -> list[ShardSpec]:
        import pyarrow.parquet as pq

        with self.fs.open(f.path, "rb") as fh:
            md = pq.ParquetFile(fh).metadata
        sizes = [md.row_group(i).num_rows for i in range(md.num_row_groups)]
        if sum(sizes) <= self.shard_rows:
            return [self._spec(f, 0, None)]
        out, start, acc = [], 0, 0
        for size in sizes:
            if acc and acc + size > self.shard_rows:
                out.append(self._spec(f, start, start + acc))
                start, acc = start + acc, 0
            acc += size
            while acc > self.shard_rows * 3 // 2:  # one huge row group: split by rows
                out.append(self._spec(f, start, start + self.shard_rows))
                start, acc = start + self.shard_rows, acc - self.shard_rows
        if acc:
            out.append(self._spec(f, start, start + acc))
        return out

    def _shard_jsonl(self, f: SourceFile) -> list[ShardSpec]:
        """One pass counting newlines; remember the byte offset of every shard's first line."""
        starts = [(0, 0)]
        line, offset = 0, 0
        next_cut = self.shard_rows
        with self.fs.open(f.path, "rb") as fh:
            while True:
                block = fh.read(16 * 1024 * 1024)
                if not block:
                    break
                n = block.count(b"\n")
                if line + n < next_cut:  # fast path: no shard boundary in this block
                    line += n
                else:
                    pos = 0
                    while True:
                        nl = block.find(b"\n", pos)
                        if nl < 0:
                            break
                        line += 1
                        pos = nl + 1
                        if line == next_cut:
                            starts.append((line, offset + pos))
                            next_cut += self.shard_rows
                offset += len(block)
        total = line + (1 if offset and not _ends_with_newline(self.fs, f.path, offset) else 0)
        if len(starts) > 1 and starts[-1][0] >= total:
            starts.pop()
        if len(starts) == 1:
            return [self._spec(f, 0, None)]
        out = []
        for i, (s, b) in enumerate(starts):
            stop = starts[i + 1][0] if i + 1 < len(starts) else None
            out.append(self._spec(f, s, stop, byte_start=b))
        return out


def _ends_with_newline(fs: fsspec.AbstractFileSystem, path: str, size: int) -> bool:
    with fs.open(path, "rb") as fh:
        fh.seek(max(size - 1, 0))
        return fh.read(1) == b"\n"


def _dialect(relpath: str) -> str:
    return "excel-tab" if relpath.lower().endswith(".tsv") else "excel"


def write_registry(root: str, shards: list[ShardSpec]) -> None:
    """Persist shard specs under ``<root>/_shards/`` (atomic per file) and the ordered key list."""
    reg = os.path.join(root, "_shards")
    os.makedirs(reg, exist_ok=True)
    for s in shards:
        path = os.path.join(reg, s.key + ".json")
        payload = s.to_json()
        try:
            with open(path, encoding="utf-8") as fh:
                if fh.read() == payload:
                    continue
        except FileNotFoundError:
            pass
        _atomic_write_text(path, payload)
    _atomic_write_text(os.path.join(root, "_shards.json"), json.dumps([s.key for s in shards], indent=0))


def read_registry(root: str, key: str) -> ShardSpec:
    """The spec of partition ``key``; a clear error when discovery never saw it."""
    if "/" in key or "\\" in key or key.startswith("."):
        raise SourceError(f"invalid partition key {key!r}")
    path = os.path.join(root, "_shards", key + ".json")
    try:
        with open(path, encoding="utf-8") as fh:
            return ShardSpec.from_json(fh.read())
    except FileNotFoundError as exc:
        raise SourceError(
            f"partition {key!r} has no shard spec under {root}/_shards; run discovery "
            "(the shard sensor or `charmeta run`) for this output root first"
        ) from exc


def registered_keys(root: str) -> list[str]:
    try:
        with open(os.path.join(root, "_shards.json"), encoding="utf-8") as fh:
            return list(json.load(fh))
    except FileNotFoundError:
        return []


def _atomic_write_text(path: str, text: str) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)
