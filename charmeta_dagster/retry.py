"""How a failing partition step is retried, and how its failure is reported.

Two layers, for two kinds of fault:

* **step retries** (this module's ``RetryPolicy`` on every partitioned asset):
  an exception in a stage step - a flaky network read of an ``hf://`` shard, a
  worker process killed for memory - is retried with exponential backoff and
  jitter. Finished partitions of the step are skipped on the retry (their commit
  markers match), so a retry redoes only the failed ones.
* **run retries** (``run_retries`` in ``dagster.yaml``): a run whose worker
  process died (kill -9, OOM of the run process) is re-launched by the daemon;
  ``retry_on_asset_or_op_failure: false`` leaves op failures to the step retries.

A partition that still fails after its retries fails the step with a
``dagster.Failure`` naming every failed partition and its error; ``charmeta
run`` then re-runs the other partitions of that run one by one, so a bad shard
is marked failed in Dagster while the rest of the backfill finishes.

Settings (``retry_max``, default 3, and ``retry_delay`` seconds, default 5: 5, 10,
20 s with +-jitter; read when the code location loads).
"""

from __future__ import annotations

from dagster import Backoff, Failure, Jitter, MetadataValue, RetryPolicy

from charmeta.pipeline.executor import PartitionsFailed
from charmeta_dagster.settings import code_location_settings


def stage_retry_policy() -> RetryPolicy:
    settings = code_location_settings()
    return RetryPolicy(
        max_retries=max(0, settings.retry_max),
        delay=max(0.0, settings.retry_delay),
        backoff=Backoff.EXPONENTIAL,
        jitter=Jitter.PLUS_MINUS,
    )


def partitions_failure(exc: PartitionsFailed) -> Failure:
    """A Dagster ``Failure`` that names each failed partition and its error (shown in the UI)."""
    table = "\n".join(
        ["| partition | error |", "|---|---|"]
        + [f"| {k} | {v.replace('|', '/').replace(chr(10), ' ')[:300]} |" for k, v in exc.errors.items()]
    )
    return Failure(
        description=str(exc),
        metadata={
            "stage": exc.stage,
            "failed_partitions": MetadataValue.json(sorted(exc.errors)),
            "errors": MetadataValue.md(table),
        },
    )
