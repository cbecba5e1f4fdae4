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

Settings (environment, read when the code location loads):
``CHARMETA_RETRY_MAX`` (default 3) and ``CHARMETA_RETRY_DELAY`` seconds (default 5:
5, 10, 20 s with +-jitter).
"""

from __future__ import annotations

import os

from dagster import Backoff, Failure, Jitter, MetadataValue, RetryPolicy

from charmeta.pipeline.stages import PartitionsFailed


def stage_retry_policy() -> RetryPolicy:
    return RetryPolicy(
        max_retries=max(0, int(os.environ.get("CHARMETA_RETRY_MAX", "3"))),
        delay=max(0.0, float(os.environ.get("CHARMETA_RETRY_DELAY", "5"))),
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
