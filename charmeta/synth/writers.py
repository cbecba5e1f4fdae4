"""Shard writers for ``charmeta synth``: Parquet, JSON Lines, WebDataset tar.

Each writer streams one chunk at a time (memory stays flat whatever the row
count) into a ``.partial`` file renamed on close, so a killed run never leaves a
truncated shard that looks complete. A ``WRONG_TYPE`` row is written as the
format's own kind of wrong value: a JSON number in JSONL, a NUL-bearing string
in Parquet (its column is typed), undecodable bytes in WebDataset; a null text
is a Parquet/JSON null and undecodable bytes in a tar member.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from charmeta.errors import ConfigError
from charmeta.synth.captions import NULL, WRONG_TYPE, Chunk

FORMAT_EXT = {"parquet": "parquet", "jsonl": "jsonl", "webdataset": "tar"}
SCHEMA = pa.schema([pa.field("id", pa.string(), nullable=False), pa.field("text", pa.string())])


class ShardWriter(Protocol):
    """Writes chunks of one shard; ``close`` returns the final path."""

    def write(self, chunk: Chunk) -> None: ...

    def close(self) -> Path: ...


class _Atomic:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.tmp = path.with_name(path.name + ".partial")

    def _finish(self) -> Path:
        os.replace(self.tmp, self.path)
        return self.path


class ParquetShard(_Atomic):
    """One Parquet file, one row group per chunk (zstd)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._w = pq.ParquetWriter(self.tmp, SCHEMA, compression="zstd")

    def write(self, chunk: Chunk) -> None:
        texts = chunk.texts
        wrong = chunk.kind == WRONG_TYPE
        if wrong.any():
            fixed = pc.binary_join_element_wise(texts.filter(pa.array(wrong)), "\x00", "")
            texts = pc.replace_with_mask(texts, pa.array(wrong), fixed)
        self._w.write_table(pa.Table.from_arrays([chunk.ids, texts], schema=SCHEMA), row_group_size=len(chunk.ids))

    def close(self) -> Path:
        self._w.close()
        return self._finish()


class JsonlShard(_Atomic):
    """One JSON Lines file of ``{"id", "text"}`` objects."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._f = open(self.tmp, "w", encoding="utf-8", newline="\n")

    def write(self, chunk: Chunk) -> None:
        dumps = json.dumps
        lines = []
        for rid, text, kind in zip(chunk.ids.to_pylist(), chunk.texts.to_pylist(), chunk.kind.tolist()):
            value = int(text) if kind == WRONG_TYPE else text
            lines.append(f'{{"id": "{rid}", "text": {dumps(value, ensure_ascii=False)}}}\n')
        self._f.write("".join(lines))

    def close(self) -> Path:
        self._f.close()
        return self._finish()


class WebDatasetShard(_Atomic):
    """One tar of ``<id>.txt`` members (deterministic: fixed mtime, owner, mode)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._tar = tarfile.open(self.tmp, "w", format=tarfile.USTAR_FORMAT)

    def write(self, chunk: Chunk) -> None:
        for rid, text, kind in zip(chunk.ids.to_pylist(), chunk.texts.to_pylist(), chunk.kind.tolist()):
            if kind == NULL:
                data = b"\xc3\x28"  # not UTF-8
            elif kind == WRONG_TYPE:
                data = b"\xff" + str(text).encode()
            else:
                data = text.encode("utf-8")
            info = tarfile.TarInfo(f"{rid}.txt")
            info.size = len(data)
            info.mode = 0o644
            self._tar.addfile(info, io.BytesIO(data))

    def close(self) -> Path:
        self._tar.close()
        return self._finish()


def open_shard(fmt: str, out_dir: Path, shard: int) -> ShardWriter:
    """A writer for shard ``shard`` of format ``fmt`` under ``out_dir``."""
    if fmt not in FORMAT_EXT:
        raise ConfigError(f"--format must be one of {', '.join(FORMAT_EXT)}, got {fmt!r}")
    path = out_dir / f"part-{shard:05d}.{FORMAT_EXT[fmt]}"
    cls = {"parquet": ParquetShard, "jsonl": JsonlShard, "webdataset": WebDatasetShard}[fmt]
    return cls(path)


__all__ = ["FORMAT_EXT", "SCHEMA", "open_shard", "ShardWriter", "np"]
