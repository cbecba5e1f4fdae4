"""``iter_shard``: stream one shard as ``RAW_SCHEMA`` batches, with the reader of its format.

Why a module of its own: the text formats are read in ``readers``, the image containers in
``containers``, and ``containers`` reuses ``readers``' row helpers. With the dispatch in ``readers``
the two imported each other (``readers`` reached ``containers`` through function-local imports);
here it sits above both.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import pyarrow as pa

from charmeta.sources import containers, readers
from charmeta.sources.readers import Row
from charmeta.sources.spec import ShardSpec


def iter_shard(spec: ShardSpec, batch_rows: int = 20_000) -> Iterator[pa.RecordBatch]:
    """Stream the shard's rows as ``RAW_SCHEMA`` batches, in source order."""
    if spec.fmt == "parquet":
        yield from readers.iter_parquet(spec, batch_rows)
        return
    if spec.fmt == "arrow":
        yield from containers.iter_arrow(spec, batch_rows)
        return
    row_readers = {**readers.ROW_READERS, "zip": containers.rows_zip, "imagefolder": containers.rows_imagefolder}
    reader = row_readers.get(spec.fmt)
    if reader is None:
        rows: Iterable[Row] = [(f"{spec.relpath}:0", None, 0, f"unsupported format {spec.fmt!r}", None)]
    else:
        rows = reader(spec)
    yield from readers.row_batches(rows, spec.relpath, batch_rows)
