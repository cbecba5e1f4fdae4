"""The asset graph: five partitioned stages and the unpartitioned export.

::

    raw_shards ─┬─> normalized_records ─> attribute_predictions ─> validated_records ─> dataset_export
                └─> embeddings ───────────────────┘

Every partitioned asset has one dynamic partition per shard (``shards``) and a
``multi_run`` backfill policy: a backfill over thousands of partitions becomes
runs of up to ``CHARMETA_PARTITIONS_PER_RUN`` partitions each, so per-run
overhead does not dominate, and inside a run the partitions are spread over a
process pool. Each asset writes its own Parquet (no IO manager) and returns a
``MaterializeResult`` with row / status counts, timings and a preview.
"""


import json
import logging
import os
import time
import warnings
from typing import Any

from dagster import (
    AssetExecutionContext,
    BackfillPolicy,
    DynamicPartitionsDefinition,
    MaterializeResult,
    MetadataValue,
    asset,
)

from charmeta.export import export_dataset
from charmeta.sources import registered_keys
from charmeta_dagster import stages as S
from charmeta_dagster.resources import ExtractorResource, OutputStore, SourceResource
from charmeta_dagster.resources.images import ImageEmbedderResource, embedder_spec
from charmeta_dagster.retry import partitions_failure, stage_retry_policy

log = logging.getLogger("charmeta.pipeline")
try:  # backfill_policy is marked beta; we rely on it knowingly (see module docstring)
    from dagster import BetaWarning

    warnings.filterwarnings("ignore", category=BetaWarning)
except ImportError:  # pragma: no cover
    pass

shards_partitions = DynamicPartitionsDefinition(name="shards")
PARTITIONS_PER_RUN = int(os.environ.get("CHARMETA_PARTITIONS_PER_RUN", "8"))
BACKFILL_POLICY = BackfillPolicy.multi_run(max_partitions_per_run=PARTITIONS_PER_RUN)
GROUP = "charmeta"


def md_table(rows: list[dict[str, Any]], max_cell: int = 60) -> str:
    """A small Markdown table for metadata previews (cells truncated)."""
    if not rows:
        return "_(no rows)_"
    cols = list(rows[0].keys())

    def cell(v: Any) -> str:
        s = "" if v is None else str(v)
        s = s.replace("|", "\\|").replace("\n", " ")
        return s if len(s) <= max_cell else s[: max_cell - 1] + "…"

    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(cell(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(out)


def materialize_stage(context: AssetExecutionContext, stage: str, store: OutputStore,
                      extractor: ExtractorResource, embedder: Any = None) -> MaterializeResult:
    """Run one stage over the run's partitions and summarise it as metadata."""
    keys = list(context.partition_keys)
    t0 = time.perf_counter()
    done = {"n": 0}

    def on_done(stats: dict[str, Any]) -> None:
        done["n"] += 1
        event = {"event": "partition_done", "stage": stage, "partition": stats.get("key"),
                 "rows": stats.get("rows"), "seconds": stats.get("seconds"), "skipped": stats.get("skipped"),
                 "progress": f"{done['n']}/{len(keys)}"}
        context.log.info(json.dumps(event))
        log.info(json.dumps(event))

    try:
        results = S.run_stage(stage, store.store().root, keys, backend=extractor.backend,
                              embedder=extractor.embedder if embedder is None else embedder,
                              workers=extractor.n_workers(), on_done=on_done)
    except S.PartitionsFailed as exc:  # the others are committed; retried per RetryPolicy, then reported
        raise partitions_failure(exc) from exc
    seconds = time.perf_counter() - t0
    rows = sum(int(r.get("rows") or 0) for r in results)
    statuses: dict[str, int] = {}
    for r in results:
        for k, v in (r.get("status_counts") or {}).items():
            statuses[k] = statuses.get(k, 0) + int(v)
    built = [r for r in results if not r.get("skipped")]
    built_rows = sum(int(r.get("rows") or 0) for r in built)
    metadata: dict[str, Any] = {
        "rows": MetadataValue.int(rows),
        "partitions": MetadataValue.int(len(keys)),
        "partitions_skipped": MetadataValue.int(len(results) - len(built)),
        "seconds": MetadataValue.float(round(seconds, 3)),
        "rows_per_second": MetadataValue.float(round(built_rows / seconds, 1) if seconds > 0 and built_rows else 0.0),
        "output_dir": MetadataValue.path(os.path.join(store.store().root, stage)),
        "per_partition": MetadataValue.md(md_table(
            [{"partition": r.get("key"), "rows": r.get("rows"), "seconds": r.get("seconds"),
              "skipped": r.get("skipped")} for r in results][:200])),
    }
    for status, n in sorted(statuses.items()):
        metadata[f"status_{status}"] = MetadataValue.int(n)
    for extra in ("upstream_invalid", "texts_changed", "contract_violations", "with_image", "images", "invalid_images",
                  "embedded", "cache_hits", "computed"):
        if any(extra in r for r in results):
            metadata[extra] = MetadataValue.int(sum(int(r.get(extra) or 0) for r in results))
    preview = next((r.get("preview") for r in results if r.get("preview")), None)
    if preview:
        metadata["preview"] = MetadataValue.md(md_table(preview))
    return MaterializeResult(metadata=metadata)


_COMMON = dict(partitions_def=shards_partitions, backfill_policy=BACKFILL_POLICY, group_name=GROUP, kinds={"parquet"},
               retry_policy=stage_retry_policy())


@asset(**_COMMON, description="Rows of one source shard as read (id, text, source position, upstream reason).")
def raw_shards(context: AssetExecutionContext, store: OutputStore, extractor: ExtractorResource) -> MaterializeResult:
    return materialize_stage(context, S.RAW, store, extractor)


@asset(**_COMMON, deps=[raw_shards], description="Texts cleaned without changing meaning (NFC, whitespace, zero-width).")
def normalized_records(context: AssetExecutionContext, store: OutputStore, extractor: ExtractorResource) -> MaterializeResult:
    return materialize_stage(context, S.NORMALIZED, store, extractor)


@asset(**_COMMON, deps=["normalized_images"],
       description="Image embeddings per record from the ImageEmbedder resource (cache first; null for text rows).")
def embeddings(context: AssetExecutionContext, store: OutputStore, extractor: ExtractorResource,
               image_embedder: ImageEmbedderResource) -> MaterializeResult:
    return materialize_stage(context, S.EMBEDDINGS, store, extractor, embedder_spec(image_embedder, extractor.embedder))


@asset(**_COMMON, deps=[normalized_records, "normalized_images", embeddings],
       description="Rich records from the extractor backend(s): value, confidence, evidence, conflict per attribute; "
                   "image rows fuse caption + pixels.")
def attribute_predictions(context: AssetExecutionContext, store: OutputStore, extractor: ExtractorResource,
                          image_embedder: ImageEmbedderResource) -> MaterializeResult:
    return materialize_stage(context, S.PREDICTIONS, store, extractor, embedder_spec(image_embedder, extractor.embedder))


@asset(**_COMMON, deps=[attribute_predictions],
       description="Predictions checked against the contract in bulk; violations become invalid records with a reason.")
def validated_records(context: AssetExecutionContext, store: OutputStore, extractor: ExtractorResource,
                      image_embedder: ImageEmbedderResource) -> MaterializeResult:
    return materialize_stage(context, S.VALIDATED, store, extractor, embedder_spec(image_embedder, extractor.embedder))


@asset(group_name=GROUP, deps=[validated_records], kinds={"duckdb", "json"},
       description="Clean JSONL export (ok records), DuckDB catalog over all partitions, manifest.json.")
def dataset_export(context: AssetExecutionContext, store: OutputStore, source: SourceResource,
                   extractor: ExtractorResource) -> MaterializeResult:
    root = store.store().root
    keys = registered_keys(root)
    t0 = time.perf_counter()
    manifest = export_dataset(root, keys, extra_manifest={
        "source": source.uri, "shard_rows": source.shard_rows,
        "extractor_backend": S.backend_identity(extractor.backend), "embedder": extractor.embedder,
    })
    metadata: dict[str, Any] = {
        "records": MetadataValue.int(manifest["records"]),
        "exported_records": MetadataValue.int(manifest["exported_records"]),
        "partitions": MetadataValue.int(manifest["partitions"]),
        "partitions_missing": MetadataValue.int(manifest["partitions_missing"]),
        "seconds": MetadataValue.float(round(time.perf_counter() - t0, 3)),
        "records_jsonl": MetadataValue.path(os.path.join(root, "export", "records.jsonl")),
        "catalog": MetadataValue.path(os.path.join(root, "export", "catalog.duckdb")),
        "manifest": MetadataValue.path(os.path.join(root, "export", "manifest.json")),
        "schema_version": MetadataValue.text(manifest["schema_version"]),
    }
    for s, n in manifest["status_counts"].items():
        metadata[f"status_{s}"] = MetadataValue.int(n)
    return MaterializeResult(metadata=metadata)


from charmeta_dagster.assets.images import attribute_heads, normalized_images  # noqa: E402 (uses the above)

PARTITIONED_ASSETS = [raw_shards, normalized_records, normalized_images, embeddings, attribute_predictions,
                      validated_records]
ALL_ASSETS = [*PARTITIONED_ASSETS, attribute_heads, dataset_export]
