"""Sensors: discover shards as data lands, and refresh the export after shard runs.

``shard_sensor`` lists the source every ``CHARMETA_SENSOR_INTERVAL`` seconds,
writes the shard registry, registers new shards as dynamic partitions and
requests runs over them in contiguous ranges of at most
``CHARMETA_PARTITIONS_PER_RUN`` partitions (an incremental backfill: a shard
that appears later gets its own run; known shards are never re-requested).

``export_sensor`` requests ``export_job`` when a run that materialized
``validated_records`` succeeds and no other such run is still queued or
running, so the export is rebuilt once per burst rather than once per run.
"""

import os

from dagster import (
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    RunStatusSensorContext,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    run_status_sensor,
    sensor,
)

from charmeta.sources import write_registry
from charmeta_dagster.assets import PARTITIONS_PER_RUN, shards_partitions
from charmeta_dagster.jobs import export_job, shards_job
from charmeta_dagster.resources import OutputStore, SourceResource

RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"
_DEFAULT = (
    DefaultSensorStatus.RUNNING if os.environ.get("CHARMETA_SENSORS", "on") != "off" else DefaultSensorStatus.STOPPED
)


def plan_ranges(new_keys: list[str], per_run: int) -> list[tuple[str, str]]:
    """Contiguous (start, end) ranges of at most ``per_run`` keys, in registration order."""
    return [(new_keys[i], new_keys[min(i + per_run, len(new_keys)) - 1]) for i in range(0, len(new_keys), per_run)]


def gpu_tag(keys: list[str], first: str, last: str, image_keys: set[str]) -> dict[str, str]:
    """``charmeta/gpu=true`` for a run whose range embeds images: the instance's tag limit
    (docker/dagster.yaml) then runs such runs one at a time, so they do not fight over the GPU."""
    in_range = keys[keys.index(first) : keys.index(last) + 1]
    return {"charmeta/gpu": "true"} if image_keys.intersection(in_range) else {}


@sensor(
    job=shards_job,
    default_status=_DEFAULT,
    minimum_interval_seconds=int(os.environ.get("CHARMETA_SENSOR_INTERVAL", "30")),
    description="Discovers new shards in the source, registers them as partitions and requests runs for them.",
)
def shard_sensor(context: SensorEvaluationContext, source: SourceResource, store: OutputStore):
    specs = source.source().discover()
    root = store.store().root
    write_registry(root, specs)
    known = set(context.instance.get_dynamic_partitions(shards_partitions.name))
    new = [s.key for s in specs if s.key not in known]
    if not new:
        return SkipReason(f"no new shards ({len(specs)} known) in {source.uri}")
    embeds = os.environ.get("CHARMETA_EMBEDDER", "none") != "none"
    image_keys = {s.key for s in specs if s.fmt in ("tar", "txt")} if embeds else set()
    runs = [
        RunRequest(run_key=f"{a}..{b}", tags={RANGE_START: a, RANGE_END: b, **gpu_tag(new, a, b, image_keys)})
        for a, b in plan_ranges(new, PARTITIONS_PER_RUN)
    ]
    context.log.info(f"registering {len(new)} new shards, requesting {len(runs)} runs")
    return SensorResult(run_requests=runs, dynamic_partitions_requests=[shards_partitions.build_add_request(new)])


@run_status_sensor(
    run_status=DagsterRunStatus.SUCCESS,
    request_job=export_job,
    default_status=_DEFAULT,
    monitor_all_code_locations=False,
    description="Rebuilds dataset_export after shard runs succeed (once per burst of runs).",
)
def export_sensor(context: RunStatusSensorContext):
    run = context.dagster_run
    if run.job_name == export_job.name:
        return SkipReason("export run")
    selection = {k.to_user_string() for k in (run.asset_selection or [])}
    if run.asset_selection is not None and "validated_records" not in selection:
        return SkipReason("run did not materialize validated_records")
    active = context.instance.get_runs(
        filters=RunsFilter(
            statuses=[
                DagsterRunStatus.QUEUED,
                DagsterRunStatus.STARTED,
                DagsterRunStatus.STARTING,
                DagsterRunStatus.NOT_STARTED,
            ]
        )
    )
    if any(
        r.run_id != run.run_id
        and r.job_name != export_job.name
        and RANGE_START in r.tags
        or r.run_id != run.run_id
        and r.tags.get("dagster/partition")
        for r in active
    ):
        return SkipReason("other shard runs still active; the last one triggers the export")
    return RunRequest(run_key=f"export-after-{run.run_id}")
