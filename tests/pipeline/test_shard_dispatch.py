"""``sources.shards.iter_shard`` picks the reader of a shard's format (moved out of ``readers`` to
break its import cycle with ``containers``; each format's reader is tested with its format): an
unknown format or an unreadable file is one invalid row with the reason, never a crash."""

from __future__ import annotations

import pyarrow as pa

from charmeta.sources import RAW_SCHEMA
from charmeta.sources.shards import iter_shard
from charmeta.sources.spec import ShardSpec


def test_unknown_format_is_one_invalid_row_not_a_crash() -> None:
    spec = ShardSpec(key="k", uri="file:///nowhere.xyz", relpath="nowhere.xyz", fmt="xyz")
    t = pa.Table.from_batches(list(iter_shard(spec)), schema=RAW_SCHEMA)
    assert t.num_rows == 1
    row = t.to_pylist()[0]
    assert row["id"] == "nowhere.xyz:0" and row["text"] is None and row["reason"] == "unsupported format 'xyz'"


def test_broken_file_keeps_its_reason() -> None:
    spec = ShardSpec(key="k", uri="file:///x.jsonl", relpath="x.jsonl", fmt="broken", error="gzip: bad header")
    (row,) = pa.Table.from_batches(list(iter_shard(spec)), schema=RAW_SCHEMA).to_pylist()
    assert row["reason"] == "gzip: bad header" and row["source_shard"] == "x.jsonl"
