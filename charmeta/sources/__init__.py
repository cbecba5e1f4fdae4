"""Where entries come from: local folders / files / globs and ``hf://`` datasets.

``Source(uri).discover()`` cuts a dataset into ``ShardSpec`` row ranges (one
Dagster partition each); ``iter_shard(spec)`` streams one shard as Arrow batches
of ``RAW_SCHEMA``. Both are Dagster-free so the CLI, tests and worker processes
use them directly.
"""

from charmeta.sources.discover import Source, read_registry, registered_keys, write_registry
from charmeta.sources.shards import iter_shard
from charmeta.sources.spec import DEFAULT_SHARD_ROWS, RAW_SCHEMA, ShardSpec, partition_key

__all__ = [
    "DEFAULT_SHARD_ROWS",
    "RAW_SCHEMA",
    "ShardSpec",
    "Source",
    "iter_shard",
    "partition_key",
    "read_registry",
    "registered_keys",
    "write_registry",
]
