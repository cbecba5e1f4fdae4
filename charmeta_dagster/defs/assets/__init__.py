"""The asset graph: six partitioned stages (one multi-asset) and the unpartitioned export.

::

    raw_shards ─> normalized_records ─┬─> normalized_images ─> embeddings ─┐
                                      └──────────────> attribute_predictions ─> validated_records ─> dataset_export

The six stages of a shard are one ``@multi_asset`` (``shard_stages``) with one
``AssetSpec`` each, so the lineage in the UI is unchanged but a run builds a text
partition in a single pass (``charmeta.pipeline.chain``: one pool task per
partition, no re-reading, no barrier after every stage). It can subset: a user
who materializes one stage gets the per-stage path. The blocking
``one_row_per_input`` check is part of it, because it guards the step's own
``validated_records``.

Every partitioned asset has one dynamic partition per shard (``shards``) and a
``multi_run`` backfill policy: a backfill over thousands of partitions becomes
runs of up to ``CHARMETA_PARTITIONS_PER_RUN`` partitions each, so per-run
overhead does not dominate, and inside a run the partitions are spread over a
process pool. Each asset writes its own Parquet (no IO manager) and reports a
materialization with row / status counts, timings and a preview.
"""

import json
import logging
import os
import time
import warnings
from collections.abc import Iterator
from typing import Any

from dagster import (
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetMaterialization,
    AssetSpec,
    BackfillPolicy,
    DynamicPartitionsDefinition,
    MaterializeResult,
    MetadataValue,
    asset,
    multi_asset,
)

from charmeta.pipeline import checks, runner
from charmeta.pipeline import graph as G
from charmeta.pipeline.chain import run_stages
from charmeta.pipeline.checks import md_table
from charmeta.pipeline.executor import PartitionsFailed
from charmeta.sources import registered_keys
from charmeta_dagster.defs.assets.images import GROUP, attribute_heads
from charmeta_dagster.defs.checks import to_result
from charmeta_dagster.defs.resources import (
    ExtractorResource,
    ImageModelsResource,
    OutputStore,
    PoolExecutorResource,
    SourceResource,
    embedder_spec,
)
from charmeta_dagster.retry import partitions_failure, stage_retry_policy
from charmeta_dagster.settings import code_location_settings

log = logging.getLogger("charmeta.pipeline")
try:  # backfill_policy is marked beta; we rely on it knowingly (see module docstring)
    from dagster import BetaWarning

    warnings.filterwarnings("ignore", category=BetaWarning)
except ImportError:  # pragma: no cover
    pass

#: The dynamic partitions: one per shard of the source.
SHARDS = "shards"
shards_partitions = DynamicPartitionsDefinition(name=SHARDS)
#: Partitions per run of a UI backfill (settings ``partitions_per_run``, read when the code location loads).
PARTITIONS_PER_RUN = code_location_settings().partitions_per_run
BACKFILL_POLICY = BackfillPolicy.multi_run(max_partitions_per_run=PARTITIONS_PER_RUN)


def stage_metadata(
    stage: str, results: list[dict[str, Any]], keys: list[str], seconds: float, root: str
) -> dict[str, Any]:
    """Materialization metadata of one stage over the run's partitions."""
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
        "output_dir": MetadataValue.path(os.path.join(root, stage)),
        "per_partition": MetadataValue.md(
            md_table(
                [
                    {
                        "partition": r.get("key"),
                        "rows": r.get("rows"),
                        "seconds": r.get("seconds"),
                        "skipped": r.get("skipped"),
                    }
                    for r in results
                ][:200]
            )
        ),
    }
    for status, n in sorted(statuses.items()):
        metadata[f"status_{status}"] = MetadataValue.int(n)
    for extra in (
        "upstream_invalid",
        "texts_changed",
        "contract_violations",
        "with_image",
        "images",
        "invalid_images",
        "embedded",
        "cache_hits",
        "computed",
    ):
        if any(extra in r for r in results):
            metadata[extra] = MetadataValue.int(sum(int(r.get(extra) or 0) for r in results))
    preview = next((r.get("preview") for r in results if r.get("preview")), None)
    if preview:
        metadata["preview"] = MetadataValue.md(md_table(preview))
    return metadata


def stage_specs() -> list[AssetSpec]:
    """One ``AssetSpec`` per stage of the graph (built in a function: the defs loader would
    take a module-level list of specs for assets of their own)."""
    return [
        AssetSpec(
            st,
            deps=G.DEPS[st],
            description=G.DESCRIPTIONS[st],
            group_name=GROUP,
            kinds=G.KINDS.get(st, {"parquet"}),
            partitions_def=shards_partitions,
            skippable=True,
        )
        for st in G.STAGES
    ]


ONE_ROW_PER_INPUT = AssetCheckSpec(
    "one_row_per_input",
    asset=G.PREDICTIONS,
    blocking=True,
    description="Every normalized input row has exactly one prediction row (same source positions); a partition "
    "that fails gets no validated_records.",
)


@multi_asset(
    name="shard_stages",
    specs=stage_specs(),
    check_specs=[ONE_ROW_PER_INPUT],
    can_subset=True,
    partitions_def=shards_partitions,
    backfill_policy=BACKFILL_POLICY,
    retry_policy=stage_retry_policy(),
)
def shard_stages(
    context: AssetExecutionContext,
    store: OutputStore,
    extractor: ExtractorResource,
    image_models: ImageModelsResource,
    pool: PoolExecutorResource,
) -> Iterator[Any]:
    """The selected stages over the run's partitions: one pass per text partition when the
    selection covers the text path (``chain.run_stages``), stage by stage otherwise."""
    keys = list(context.partition_keys)
    root = store.store().root
    selected = [st for st in G.STAGES if AssetKey(st) in context.selected_asset_keys]
    t0 = time.perf_counter()
    try:
        per_stage, guard = run_stages(
            selected,
            root,
            keys,
            backend=extractor.spec(),
            embedder=embedder_spec(image_models),
            workers=pool.n_workers(),
            on_done=_progress(context, keys),
            executor=pool.executor(),
        )
    except PartitionsFailed as exc:  # the others are committed; retried per RetryPolicy, then reported
        raise partitions_failure(exc) from exc
    seconds = time.perf_counter() - t0
    blocked = {k: p for k, p in guard.items() if p}
    for st in selected:
        yield from _materialize(st, per_stage[st], keys, blocked if st == G.VALIDATED else {}, seconds, root)
    if ONE_ROW_PER_INPUT.key in context.selected_asset_check_keys:
        yield to_result(checks.one_row_per_input(store.store(), keys, guard))


def _progress(context: AssetExecutionContext, keys: list[str]) -> Any:
    """One log line per finished partition (all its stages) to the ``charmeta.pipeline`` logger;
    the Dagster event log gets the halfway and the last one (each Dagster event is a SQLite
    write in the run's process)."""
    done = {"n": 0}
    to_dagster = {len(keys) // 2, len(keys)}

    def on_done(result: dict[str, Any]) -> None:
        done["n"] += 1
        stages = result.get("stages") or {result.get("stage"): result}
        event = {
            "event": "partition_done",
            "partition": result.get("key"),
            "rows": max((int(s.get("rows") or 0) for s in stages.values()), default=0),
            "seconds": round(sum(float(s.get("seconds") or 0) for s in stages.values() if not s.get("skipped")), 3),
            "skipped": all(s.get("skipped") for s in stages.values()),
            "progress": f"{done['n']}/{len(keys)}",
        }
        if done["n"] in to_dagster:
            context.log.info(json.dumps(event))
        log.info(json.dumps(event))

    return on_done


def _materialize(
    stage: str, results: list[dict[str, Any]], keys: list[str], blocked: dict[str, list[str]], seconds: float, root: str
) -> Iterator[Any]:
    """The stage's materialization over the run's range; when the row guard kept some partitions
    from being validated, one event per partition that was (the range as a whole was not)."""
    metadata = stage_metadata(stage, results, keys, seconds, root)
    if not blocked:
        yield MaterializeResult(asset_key=stage, metadata=metadata)
        return
    for r in results:
        yield AssetMaterialization(
            asset_key=stage,
            partition=r["key"],
            metadata={
                "rows": MetadataValue.int(int(r.get("rows") or 0)),
                "skipped": MetadataValue.bool(bool(r.get("skipped"))),
            },
        )


@asset(
    group_name=GROUP,
    deps=[G.VALIDATED, "identity_consistency"],
    kinds={"duckdb", "json"},
    description="Clean JSONL export (ok records, one per duplicate cluster, identity fills applied), DuckDB catalog "
    "over all partitions, manifest.json, consistency report.",
)
def dataset_export(
    context: AssetExecutionContext,
    store: OutputStore,
    source: SourceResource,
    extractor: ExtractorResource,
    image_models: ImageModelsResource,
) -> MaterializeResult:
    """The export over every registered partition, its manifest stamped with the input's
    fingerprint (``runner.export``: the same call whoever launched the run)."""
    root = store.store().root
    keys = registered_keys(root)
    t0 = time.perf_counter()
    manifest = runner.export(root, keys, source.uri, source.shard_rows, extractor.spec(), embedder_spec(image_models))
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
        "consistency_report": MetadataValue.path(os.path.join(root, "export", "consistency_report.md")),
    }
    for k in ("duplicates_dropped", "fills", "identity_conflicts", "identity_excluded"):
        if k in manifest.get("cleaning", {}):
            metadata[f"cleaning_{k}"] = MetadataValue.int(int(manifest["cleaning"][k]))
    for s, n in manifest["status_counts"].items():
        metadata[f"status_{s}"] = MetadataValue.int(n)
    return MaterializeResult(metadata=metadata)


PARTITIONED_ASSETS = [shard_stages]
from charmeta_dagster.defs.assets.cleaning import CLEANING_ASSETS  # noqa: E402

ALL_ASSETS = [*PARTITIONED_ASSETS, attribute_heads, *CLEANING_ASSETS, dataset_export]
