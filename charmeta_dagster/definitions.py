"""The ``charmeta`` code location (``dagster definitions validate -m charmeta_dagster.definitions``)."""

from __future__ import annotations

from dagster import Definitions, in_process_executor

from charmeta_dagster.assets import ALL_ASSETS
from charmeta_dagster.checks import ALL_CHECKS
from charmeta_dagster.jobs import export_job, heads_job, shards_job
from charmeta_dagster.resources import default_resources
from charmeta_dagster.resources.images import image_embedder_from_env
from charmeta_dagster.sensors import export_sensor, shard_sensor

defs = Definitions(
    assets=ALL_ASSETS,
    asset_checks=ALL_CHECKS,
    jobs=[shards_job, export_job, heads_job],
    sensors=[shard_sensor, export_sensor],
    resources={**default_resources(), "image_embedder": image_embedder_from_env()},
    executor=in_process_executor,
)
