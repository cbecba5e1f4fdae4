"""The dataset's clean JSON lines: the SQL that builds them and the writer that copies them out.

Why a module of its own: the export's per-partition parts (``charmeta.pipeline.export_parts``)
and the dataset cleaning's rewritten lines (``charmeta.cleaning``) must produce the same bytes
for the same row, and the pipeline calls the cleaning. With these helpers in ``export_parts``
the cleaning imported the pipeline back (an import cycle); both now import them from here.
"""

from __future__ import annotations

import json
from typing import Any

from charmeta.contract import ATTRIBUTES
from charmeta.duck import sql_ident


def clean_json_sql(newline: bool = False) -> str:
    """SQL expression turning a rich row into its clean JSON line (``newline``: with its ``\\n``).

    ``id``, then the contract keys in contract order; a key whose value is null or an
    empty list is left out (optional keys only when evidenced). One ``concat`` of
    ``to_json`` of each column: the same bytes as ``to_json`` of the whole struct with
    those members cut out afterwards by a regex, at a third of the cost (the regex pass
    over every line was the most expensive part of the export, and a chain of ``||``
    copies the growing line once per member).
    """
    parts = ["'{\"id\":'", "coalesce(to_json(\"id\")::VARCHAR, 'null')"]
    for a in ATTRIBUTES:
        col = sql_ident(a.column)
        empty = f"{col} IS NULL" + (f" OR len({col}) = 0" if a.is_list else "")
        parts.append(f"CASE WHEN {empty} THEN '' ELSE ',{json.dumps(a.key)}:' || to_json({col}) END")
    parts.append("'}' || chr(10)" if newline else "'}'")
    return "concat(" + ", ".join(parts) + ")"


def in_position_order(path: str) -> bool:
    """Whether the file's rows are already in source-position order (the stages write them so):
    then DuckDB streams them in file order (``preserve_insertion_order``) and skips the sort."""
    import numpy as np
    import pyarrow.parquet as pq

    pos = pq.read_table(path, columns=["source_position"]).column(0).to_numpy()
    return bool(np.all(pos[1:] >= pos[:-1])) if len(pos) > 1 else True


def write_lines(fh: Any, reader: Any) -> int:
    """Write a one-column string Arrow stream whose values end in a newline: each batch's
    value buffer is the bytes of its lines, written as is (no Python string per line)."""
    import numpy as np
    import pyarrow as pa

    n = 0
    for rb in reader:
        col = rb.column(0)
        if not len(col):
            continue
        if col.null_count or not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
            lines = col.to_pylist()  # not expected: clean_json_sql never yields null
            fh.write("".join(x for x in lines if x is not None).encode("utf-8"))
            n += len(col) - col.null_count
            continue
        _, offsets, data = col.buffers()
        off = np.frombuffer(offsets, dtype=np.int32 if pa.types.is_string(col.type) else np.int64)
        fh.write(memoryview(data)[int(off[col.offset]) : int(off[col.offset + len(col)])])
        n += len(col)
    return n
