"""What one shard (one Dagster partition) is: a row range of one source file.

A ``ShardSpec`` is plain, JSON-serialisable data so that the sensor, the CLI and
worker processes can all agree on it without sharing objects: discovery writes
one spec per partition key under ``<output>/_shards/`` and every stage reads it
back by key. The key is derived from the file's path relative to the source
root and the first row, so it is stable across runs (re-running skips done
shards) and safe as a file name (it never contains ``/`` or ``..``).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa

#: Rows per partition. 200k keeps 5M entries at ~25 partitions (little per-run
#: overhead) while one partition's stage output stays far below 100 MB.
DEFAULT_SHARD_ROWS = 200_000

#: Column names tried, in order, when the text column is not configured.
TEXT_FIELD_CANDIDATES = ("text", "tags", "ordered_tags", "caption", "tag_string")
#: Column names tried, in order, for a record id; otherwise ``<file>:<position>``.
ID_FIELD_CANDIDATES = ("id", "post_id", "key", "__key__", "image_id", "md5", "filename")

#: Arrow schema of ``raw_shards`` (and ``normalized_records``): one row per input row.
RAW_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("text", pa.string()),
        pa.field("source_shard", pa.string(), nullable=False),
        pa.field("source_position", pa.int64(), nullable=False),
        pa.field("reason", pa.string()),  # set when the row is already known to be invalid
        pa.field("image_member", pa.string()),  # sidecar / tar image, for the image stage
    ]
)

#: Read block of remote files (``hf://``, ``s3://``, ``http://``): fsspec's default of 5 MiB would
#: fetch ~10 images around each zip member or Parquet page; 1 MiB keeps a ranged read near
#: what was asked for while sequential reads (tar, JSON Lines) still move 1 MiB per request.
REMOTE_BLOCK_SIZE = 1 << 20

#: Formats whose rows can name an image member (Parquet / Arrow: when ``image_field`` is set).
IMAGE_FORMATS = ("tar", "txt", "zip", "imagefolder")
#: Caption sidecar / member extensions, in the order one is preferred when a sample has several.
CAPTION_EXTS = ("txt", "caption", "tags")


def holds_images(spec: Any) -> bool:
    """``spec.holds_images`` for any spec-like object (callers and tests pass stand-ins with
    only ``fmt``): an image container format, or a table with an image column."""
    return spec.fmt in IMAGE_FORMATS or bool(getattr(spec, "image_field", None))


_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def partition_key(relpath: str, start: int) -> str:
    """Stable, file-name-safe partition key for rows ``start..`` of ``relpath``.

    Readable slug of the relative path plus a short hash of the exact path (two
    paths that slug the same, e.g. ``a/b.json`` and ``a_b.json``, stay distinct).
    """
    slug = _SAFE.sub("_", relpath.replace("/", "--")).strip("._-") or "shard"
    slug = slug.replace("..", "_")[:80]
    digest = hashlib.sha1(relpath.encode("utf-8")).hexdigest()[:6]
    return f"{slug}-{digest}-r{start:09d}"


@dataclass(frozen=True)
class ShardSpec:
    """Rows ``[start, stop)`` of one file (``stop=None``: to the end)."""

    key: str
    uri: str  # fsspec URL of the file (file:///..., hf://datasets/...)
    relpath: str  # path relative to the source root; stored as ``source_shard``
    fmt: str  # json | jsonl | parquet | arrow | csv | txt | tar | zip | imagefolder | broken
    start: int = 0
    stop: int | None = None
    file_fingerprint: str = ""
    text_field: str | None = None
    byte_start: int | None = None  # JSON Lines seek hint for ``start``
    members: tuple[tuple[str, str], ...] = field(default_factory=tuple)  # txt: (txt uri, image relpath)
    error: str | None = None  # fmt == "broken": why the file could not be opened
    image_field: str | None = None  # parquet / arrow: the column holding the image (bytes or HF Image struct)
    root_uri: str = ""  # txt / imagefolder: the folder image paths are relative to

    @property
    def holds_images(self) -> bool:
        """Whether rows of this shard can name an image for the image stages (text-only
        Parquet / Arrow keep the one-pass text path and never import the image stack)."""
        return holds_images(self)

    @property
    def fingerprint(self) -> str:
        """Identity of the shard's input: file identity + row range + reader settings."""
        payload = json.dumps(
            [
                self.relpath,
                self.fmt,
                self.start,
                self.stop,
                self.file_fingerprint,
                self.text_field,
                [m[0] or m[1] for m in self.members],
            ]
            + ([self.image_field] if self.image_field else []),  # only when set: text-only keys stay as they were
            sort_keys=True,
        )
        return hashlib.sha1(payload.encode("utf-8")).hexdigest()[:16]

    def to_json(self) -> str:
        d = asdict(self)
        d["members"] = [list(m) for m in self.members]
        d["fingerprint"] = self.fingerprint
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ShardSpec:
        d: dict[str, Any] = json.loads(text)
        d.pop("fingerprint", None)
        d["members"] = tuple(tuple(m) for m in d.get("members") or ())
        return cls(**d)
