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
from charmeta.sources import layouts
from charmeta.sources.layouts import FORMAT_BY_EXT, IMAGE_EXTS  # noqa: F401 - re-exported for callers
from charmeta.sources.spec import CAPTION_EXTS, DEFAULT_SHARD_ROWS, REMOTE_BLOCK_SIZE, ShardSpec, partition_key

log = logging.getLogger("charmeta.sources")

#: Rows per partition for shards whose rows carry images: the image stages hold a partition's
#: normalized 224 px images (~60 kB each) when embedding, so 10k images (~0.6 GB, the size of
#: one WebDataset shard of the 860k set) is the most one partition gets whatever ``shard_rows`` is.
IMAGE_SHARD_ROWS = 10_000
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
        image_field: str | None = None,
        config: str | None = None,
    ) -> None:
        if shard_rows < 1:
            raise SourceError(f"shard_rows must be >= 1, got {shard_rows}")
        self.uri = str(uri)
        self.shard_rows = int(shard_rows)
        self.image_rows = min(self.shard_rows, IMAGE_SHARD_ROWS)
        self.text_field = text_field or None
        self.image_field = image_field or None
        self.config = config or None
        #: the README ``configs`` entry discovery followed (``charmeta inspect`` shows it)
        self.followed_config: dict[str, Any] | None = None
        self.listed: list[SourceFile] = []
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
        """Data files of the source (fmt ``image`` for loose images), sorted by relative path
        (deterministic keys); README ``configs`` and ``save_to_disk`` state files are applied."""
        path = self.path
        is_dir = False
        if any(c in path for c in _GLOB_CHARS):
            base = path
            while any(c in posixpath.basename(base) for c in _GLOB_CHARS) or any(c in base for c in _GLOB_CHARS):
                base = posixpath.dirname(base)
            infos = self.fs.glob(path, detail=True)
        elif (info := self._file_info(path)) is not None:  # a file first: over HTTP, isdir() GETs the body
            base = posixpath.dirname(path)
            infos = {path: info}
        elif self.fs.isdir(path):
            base, is_dir = path, True
            infos = self.fs.find(path, detail=True)
        else:
            raise SourceError(
                f"source {self.uri!r} does not exist (expected a folder, a file, a glob or hf://datasets/...)"
            )
        self.base = base
        out: list[SourceFile] = []
        for p, info in sorted(infos.items()):
            if info.get("type") == "directory":
                continue
            rel = posixpath.relpath(p, base) if base else p
            name = posixpath.basename(p)
            if name.startswith(".") or any(part.startswith(".") for part in rel.split("/")[:-1]):
                continue
            fmt = layouts.format_of(name)
            if fmt is None:
                if name.lower() not in ("readme.md", "license"):
                    log.debug("skipping %s: unknown extension", rel)
                continue
            out.append(SourceFile(self.fs.unstrip_protocol(p), p, rel, fmt, _fs_fingerprint(info)))
        if is_dir:
            out = self._follow_readme(base, out)
        return self._save_to_disk(out)

    def _file_info(self, path: str) -> dict[str, Any] | None:
        try:
            info = self.fs.info(path)
        except (FileNotFoundError, OSError, ValueError):
            return None
        return info if info.get("type") == "file" else None

    def _follow_readme(self, base: str, files: list[SourceFile]) -> list[SourceFile]:
        """Keep the files of the README's chosen config when its YAML header declares ``configs``."""
        readme = posixpath.join(base, "README.md")
        try:
            with self.fs.open(readme, "rb") as fh:
                text = fh.read(1 << 20).decode("utf-8", "replace")
        except (FileNotFoundError, OSError):
            return files
        config = layouts.pick_config(layouts.readme_configs(text), self.config)
        if config is None or not config["data_files"]:
            return files
        self.followed_config = config
        match = layouts.pattern_matcher(config["data_files"])
        kept = [f for f in files if match.match(f.relpath)]
        log.info(
            "README config %r: %d of %d files match data_files %s",
            config["name"],
            len(kept),
            len(files),
            config["data_files"],
        )
        return kept

    def _save_to_disk(self, files: list[SourceFile]) -> list[SourceFile]:
        """``save_to_disk`` folders: only the ``.arrow`` files their ``state.json`` lists (never
        ``cache-*.arrow``), and the JSON bookkeeping beside them is not data."""
        arrow_dirs = {posixpath.dirname(f.relpath) for f in files if f.fmt == "arrow"}
        if not arrow_dirs:
            return files
        listed: dict[str, set[str]] = {}
        for f in files:
            if posixpath.basename(f.relpath) == "state.json" and posixpath.dirname(f.relpath) in arrow_dirs:
                try:
                    with self.fs.open(f.path, "rb") as fh:
                        names = layouts.save_to_disk_files(json.loads(fh.read(1 << 20)))
                except (OSError, ValueError) as exc:
                    log.warning("cannot read %s (%s): every .arrow file beside it is read", f.relpath, exc)
                    names = None
                if names is not None:
                    listed[posixpath.dirname(f.relpath)] = set(names)
        out = []
        for f in files:
            d, name = posixpath.split(f.relpath)
            if name in layouts.SAVE_TO_DISK_META and (
                d in arrow_dirs or any(a == d or a.startswith(d + "/") or not d for a in arrow_dirs)
            ):
                continue
            if f.fmt == "arrow" and d in listed and name not in listed[d]:
                log.info("skipping %s: not listed in %s/state.json (a cache file)", f.relpath, d or ".")
                continue
            out.append(f)
        return out

    # -- sharding ----------------------------------------------------------
    def discover(self) -> list[ShardSpec]:
        """All shards of the source, in a stable order (``self.listed``: the files they come from)."""
        files = self.listed = self.files()
        shards: list[ShardSpec] = []
        claimed: set[str] = set()  # images an imagefolder metadata file names
        loose: list[SourceFile] = []
        for f in files:
            if f.fmt in ("txt", "image"):
                loose.append(f)
                continue
            try:
                if f.fmt == "imagefolder":
                    specs, names = self._shard_imagefolder(f)
                    claimed |= names
                    shards.extend(specs)
                else:
                    shards.extend(self._shard_file(f))
            except Exception as exc:  # unreadable file -> one visible invalid record
                log.warning("cannot read %s: %s", f.relpath, exc)
                shards.append(self._broken(f, f"cannot read {f.fmt} file: {type(exc).__name__}: {exc}"))
        shards.extend(self._shard_folders([f for f in loose if f.relpath not in claimed]))
        return shards

    def _shard_folders(self, files: list[SourceFile]) -> list[ShardSpec]:
        """Loose images and caption sidecars, one shard per folder chunk.

        A row is an image (with the ``.txt`` / ``.caption`` / ``.tags`` sidecar of its stem,
        if any) or a sidecar with no image; ``members`` = (caption uri or "", image relpath or "")."""
        by_dir: dict[str, dict[str, dict[str, SourceFile]]] = {}
        for f in files:
            d, name = posixpath.split(f.relpath)
            stem, ext = posixpath.splitext(name)
            by_dir.setdefault(d, {}).setdefault(stem, {})[ext.lower().lstrip(".")] = f
        root_uri = self.fs.unstrip_protocol(self.base) if self.base else ""
        shards = []
        for d, stems in sorted(by_dir.items()):
            rows: list[tuple[tuple[str, str], str]] = []  # (member, fingerprint)
            for stem in sorted(stems):
                parts = stems[stem]
                cap = next((parts[e] for e in CAPTION_EXTS if e in parts), None)
                images = [parts[e] for e in sorted(parts) if e not in CAPTION_EXTS]
                fp_cap = cap.fingerprint if cap else ""
                for img in images or [None]:
                    rows.append(
                        (
                            (cap.uri if cap else "", img.relpath if img else ""),
                            fp_cap + ("+" + img.fingerprint if img else ""),
                        )
                    )
            has_images = any(m[1] for m, _ in rows)
            has_txt = any(f.relpath.lower().endswith(".txt") for s in stems.values() for f in s.values())
            rel = (d + "/" if d else "") + ("*.txt" if has_txt else "*")
            step = self.image_rows if has_images else self.shard_rows
            for i in range(0, len(rows), step):
                chunk = rows[i : i + step]
                shards.append(
                    ShardSpec(
                        key=partition_key(rel, i),
                        uri=next((m[0] for m, _ in chunk if m[0]), "") or posixpath.join(root_uri, chunk[0][0][1]),
                        relpath=rel,
                        fmt="txt",
                        start=i,
                        stop=i + len(chunk),
                        file_fingerprint="|".join(fp for _, fp in chunk)[:4000],
                        members=tuple(m for m, _ in chunk),
                        root_uri=root_uri,
                    )
                )
        return shards

    def _shard_imagefolder(self, f: SourceFile) -> tuple[list[ShardSpec], set[str]]:
        """An imagefolder ``metadata.jsonl`` / ``.csv``: one row per line; the images it names
        (``file_name``, relative to its folder) are claimed so they are not rows twice."""
        from charmeta.sources.containers import BadLine, metadata_rows

        d = posixpath.dirname(f.relpath)
        root_uri = posixpath.dirname(f.uri)
        names: set[str] = set()
        starts = [(0, 0)]
        n = 0
        for pos, offset, obj in metadata_rows(f.uri, f.relpath):
            if pos >= starts[-1][0] + self.image_rows:
                starts.append((pos, offset))
            n = pos + 1
            name = obj.get("file_name") if isinstance(obj, dict) and not isinstance(obj, BadLine) else None
            if isinstance(name, str) and name:
                names.add(posixpath.normpath(posixpath.join(d, name)))
        out = []
        for i, (s, b) in enumerate(starts):
            stop = starts[i + 1][0] if i + 1 < len(starts) else (n if len(starts) > 1 else None)
            out.append(
                self._spec(f, s, stop, byte_start=b if f.relpath.endswith(".jsonl") else None, root_uri=root_uri)
            )
        return out, names

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

    def _ranges(self, f: SourceFile, n_rows: int, step: int | None = None, **kw: Any) -> list[ShardSpec]:
        step = step or self.shard_rows
        if n_rows <= step:
            return [self._spec(f, 0, None, **kw)]
        return [self._spec(f, s, min(s + step, n_rows), **kw) for s in range(0, n_rows, step)]

    def _shard_file(self, f: SourceFile) -> list[ShardSpec]:
        if f.fmt == "parquet":
            return self._shard_parquet(f)
        if f.fmt == "arrow":
            return self._shard_arrow(f)
        if f.fmt == "zip":
            return self._shard_zip(f)
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
        return [self._spec(f, 0, None)]  # tar / tar.gz: tars already are shards, read streamed

    def _shard_zip(self, f: SourceFile) -> list[ShardSpec]:
        """Samples from the central directory only (one ranged read at the end of the file)."""
        import zipfile

        from charmeta.sources.containers import zip_plan

        with self.fs.open(f.path, "rb", block_size=REMOTE_BLOCK_SIZE) as fh, zipfile.ZipFile(fh) as zf:
            plan = zip_plan(zf)
        return self._ranges(f, plan.rows, self.image_rows)

    def _shard_arrow(self, f: SourceFile) -> list[ShardSpec]:
        from charmeta.sources import arrowio

        if not self.is_local:  # counting rows would read the whole file: one shard, streamed
            schema = arrowio.schema_of(f.uri)
            return [self._spec(f, 0, None, image_field=layouts.image_column(schema, self.image_field))]
        with arrowio.open_ipc(f.uri) as (schema, batches):
            sizes = [b.num_rows for b in batches]
        return self._pack(f, sizes, layouts.image_column(schema, self.image_field))

    def _shard_parquet(self, f: SourceFile) -> list[ShardSpec]:
        import pyarrow.parquet as pq

        with self.fs.open(f.path, "rb", block_size=REMOTE_BLOCK_SIZE, cache_type="none") as fh:
            pf = pq.ParquetFile(fh)
            md, schema = pf.metadata, pf.schema_arrow
        sizes = [md.row_group(i).num_rows for i in range(md.num_row_groups)]
        return self._pack(f, sizes, layouts.image_column(schema, self.image_field))

    def _pack(self, f: SourceFile, sizes: list[int], image_field: str | None) -> list[ShardSpec]:
        """Row groups / record batches packed into shards of at most ``shard_rows`` rows
        (``image_rows`` when the table holds images); a huge group is split by rows."""
        limit = self.image_rows if image_field else self.shard_rows
        kw: dict[str, Any] = {"image_field": image_field} if image_field else {}
        if sum(sizes) <= limit:
            return [self._spec(f, 0, None, **kw)]
        out, start, acc = [], 0, 0
        for size in sizes:
            if acc and acc + size > limit:
                out.append(self._spec(f, start, start + acc, **kw))
                start, acc = start + acc, 0
            acc += size
            while acc > limit * 3 // 2:  # one huge row group: split by rows
                out.append(self._spec(f, start, start + limit, **kw))
                start, acc = start + limit, acc - limit
        if acc:
            out.append(self._spec(f, start, start + acc, **kw))
        return out

    def _shard_jsonl(self, f: SourceFile) -> list[ShardSpec]:
        """One pass counting newlines; remember the byte offset of every shard's first line."""
        starts = [(0, 0)]
        line, offset = 0, 0
        next_cut = self.shard_rows
        with self.fs.open(f.path, "rb", block_size=REMOTE_BLOCK_SIZE) as fh:
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
