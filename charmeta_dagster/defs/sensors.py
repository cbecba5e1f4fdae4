"""Sensors: discover shards as data lands, and refresh the export after shard runs.

``shard_sensor`` lists the source every ``sensor_interval`` seconds, writes the
shard registry, registers new shards as dynamic partitions and requests runs
over the new ones that are not finished, in balanced contiguous ranges of at most
``partitions_per_run`` partitions - the planner ``charmeta run`` uses
(``charmeta.pipeline.planner``; an incremental backfill: a shard that appears
later gets its own run; known shards are never re-requested).

``export_sensor`` requests ``export_job`` when a run that materialized
``validated_records`` succeeds and no other such run is still queued or
running, so the export is rebuilt once per burst rather than once per run.
"""

from typing import Any

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

from charmeta.pipeline import planner, runner
from charmeta.pipeline.graph import carries_images
from charmeta.pipeline.image_stages import uses_model
from charmeta_dagster.defs import jobs
from charmeta_dagster.defs.assets import PARTITIONS_PER_RUN, SHARDS, shards_partitions
from charmeta_dagster.defs.resources import ExtractorResource, ImageModelsResource, OutputStore, SourceResource
from charmeta_dagster.defs.resources import embedder_spec as _embedder_spec
from charmeta_dagster.settings import code_location_settings

RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"
_DEFAULT = DefaultSensorStatus.RUNNING if code_location_settings().sensors else DefaultSensorStatus.STOPPED


def plan_ranges(new_keys: list[str], per_run: int, todo: list[str] | None = None) -> list[tuple[str, str]]:
    """(start, end) of each run over ``todo`` (default: all of ``new_keys``): contiguous in
    ``new_keys`` order, at most ``per_run`` keys, balanced (``planner.run_ranges``)."""
    return [(r[0], r[-1]) for r in planner.run_ranges(new_keys, new_keys if todo is None else todo, per_run)]


def gpu_tag(keys: list[str], first: str, last: str, image_keys: set[str]) -> dict[str, str]:
    """``charmeta/gpu=true`` for a run whose range embeds images: the instance's tag limit
    (docker/dagster.yaml) then runs such runs one at a time, so they do not fight over the GPU."""
    in_range = keys[keys.index(first) : keys.index(last) + 1]
    return {"charmeta/gpu": "true"} if image_keys.intersection(in_range) else {}


@sensor(
    job=jobs.shards_job,
    default_status=_DEFAULT,
    minimum_interval_seconds=code_location_settings().sensor_interval,
    description="Discovers new shards in the source, registers them as partitions and requests runs for them.",
)
def shard_sensor(
    context: SensorEvaluationContext,
    source: SourceResource,
    store: OutputStore,
    extractor: ExtractorResource,
    image_models: ImageModelsResource,
) -> SensorResult | SkipReason:
    root = store.store().root
    specs = runner.discover(root, source.source())
    known = set(context.instance.get_dynamic_partitions(SHARDS))
    new = [s.key for s in specs if s.key not in known]
    if not new:
        return SkipReason(f"no new shards ({len(specs)} known) in {source.uri}")
    plan = runner.registered_plan(root, new, extractor.spec(), _embedder_spec(image_models))
    embedder = _embedder_spec(image_models)
    image_keys = {s.key for s in specs if carries_images(s)} if uses_model(embedder) else set()
    runs = [
        RunRequest(run_key=f"{a}..{b}", tags={RANGE_START: a, RANGE_END: b, **gpu_tag(new, a, b, image_keys)})
        for a, b in plan_ranges(new, PARTITIONS_PER_RUN, plan.todo)
    ]
    context.log.info(f"registering {len(new)} new shards, requesting {len(runs)} runs")
    return SensorResult(run_requests=runs, dynamic_partitions_requests=[shards_partitions.build_add_request(new)])


@run_status_sensor(
    run_status=DagsterRunStatus.SUCCESS,
    request_jobs=[jobs.export_job, jobs.heads_job],
    default_status=_DEFAULT,
    monitor_all_code_locations=False,
    description="Rebuilds dataset_export after shard runs succeed (once per burst of runs); first retrains the "
    "image attribute heads when those runs embedded images, as charmeta run does.",
)
def export_sensor(context: RunStatusSensorContext, store: OutputStore) -> RunRequest | SkipReason:
    run = context.dagster_run
    if run.job_name == jobs.export_job.name:
        return SkipReason("export run")
    if run.job_name == jobs.heads_job.name:
        return RunRequest(run_key=f"export-after-{run.run_id}", job_name=jobs.export_job.name)
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
        and r.job_name != jobs.export_job.name
        and RANGE_START in r.tags
        or r.run_id != run.run_id
        and r.tags.get("dagster/partition")
        for r in active
    ):
        return SkipReason("other shard runs still active; the last one triggers the export")
    if runner.embedded_images(store.store().root, _run_partitions(context, run)):
        return RunRequest(run_key=f"heads-after-{run.run_id}", job_name=jobs.heads_job.name)
    return RunRequest(run_key=f"export-after-{run.run_id}", job_name=jobs.export_job.name)


def _run_partitions(context: RunStatusSensorContext, run: Any) -> list[str]:
    """The partitions a shards run covered (its range tags, or its single partition)."""
    if run.tags.get("dagster/partition"):
        return [run.tags["dagster/partition"]]
    start, end = run.tags.get(RANGE_START), run.tags.get(RANGE_END)
    ordered = list(context.instance.get_dynamic_partitions(SHARDS))
    if start not in ordered or end not in ordered:
        return []
    return ordered[ordered.index(start) : ordered.index(end) + 1]
