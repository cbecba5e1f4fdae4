"""Arrow IPC files and streams (``.arrow``), the format of ``Dataset.save_to_disk``.

Why both flavours: ``datasets`` writes the IPC *stream* format (no footer; batches
one after another), other tools the IPC *file* format (``ARROW1`` magic, a footer
indexing every batch). Both are read batch by batch, so memory holds one record
batch (``datasets`` writes image tables in batches of 100-1,000 rows). Local files
are memory-mapped: counting rows at discovery touches only batch headers. A
remote file-format file is read by ranges (footer, then each batch); a remote
stream is read front to back, never saved to disk.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import fsspec
import pyarrow as pa

from charmeta.sources.spec import REMOTE_BLOCK_SIZE  # noqa: E402

_MAGIC = b"ARROW1"


def _is_local(fs: fsspec.AbstractFileSystem) -> bool:
    protocol = fs.protocol
    protocols = (protocol,) if isinstance(protocol, str) else tuple(protocol)
    return "file" in protocols or "local" in protocols


@contextmanager
def open_ipc(uri: str) -> Iterator[tuple[pa.Schema, Iterator[pa.RecordBatch]]]:
    """``(schema, batches)`` of an ``.arrow`` file of either flavour."""
    fs, path = fsspec.core.url_to_fs(uri)
    src: Any = pa.memory_map(path, "r") if _is_local(fs) else fs.open(path, "rb", block_size=REMOTE_BLOCK_SIZE)
    try:
        head = src.read(len(_MAGIC))
        src.seek(0)
        if head == _MAGIC:
            reader = pa.ipc.open_file(src)
            yield reader.schema, (reader.get_batch(i) for i in range(reader.num_record_batches))
        else:
            stream = pa.ipc.open_stream(src)
            yield stream.schema, iter(stream)
    finally:
        src.close()


def batch_sizes(uri: str) -> list[int]:
    """Rows of every record batch (local files: from memory-mapped batch headers)."""
    with open_ipc(uri) as (_schema, batches):
        return [b.num_rows for b in batches]


def schema_of(uri: str) -> pa.Schema:
    with open_ipc(uri) as (schema, _batches):
        return schema
