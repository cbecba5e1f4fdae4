"""Jobs: all partitioned stages (plus their checks) per shard range, and the export.

They are separate because Dagster jobs cannot mix the ``shards`` partitions
with the unpartitioned export. Both run in-process: parallelism comes from the
process pool inside each stage step, which avoids a process start per step.
"""

from __future__ import annotations

from dagster import AssetSelection, define_asset_job, in_process_executor

from charmeta_dagster.defs import assets
from charmeta_dagster.defs.assets.cleaning import CLEANING_ASSETS

shards_job = define_asset_job(
    "shards_job",
    selection=AssetSelection.assets(*assets.PARTITIONED_ASSETS),
    executor_def=in_process_executor,
    description="shard_stages: raw_shards -> normalized_records -> normalized_images -> embeddings -> "
    "attribute_predictions -> validated_records (one pass per text partition), with checks.",
)
export_job = define_asset_job(
    "export_job",
    selection=AssetSelection.assets(*CLEANING_ASSETS, assets.dataset_export),
    executor_def=in_process_executor,
    description="dedup_clusters + character_profiles -> identity_consistency -> dataset_export: JSONL, DuckDB "
    "catalog, manifest.json, consistency report over all partitions.",
)
heads_job = define_asset_job(
    "heads_job",
    selection=AssetSelection.assets(assets.attribute_heads),
    executor_def=in_process_executor,
    description="attribute_heads: train + version image attribute heads over all shards' embeddings.",
)
