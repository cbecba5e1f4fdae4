"""A project-local Dagster instance: ``$DAGSTER_HOME`` with charmeta's ``dagster.yaml``.

Why embedded: ``charmeta run`` must work from an installed package (no repo
checkout), so the instance settings ship as code; the repo's ``dagster.yaml``
is the same text (a test keeps them equal).
"""

from __future__ import annotations

import os
from pathlib import Path

DAGSTER_YAML = """\
# Dagster instance settings for charmeta (copied into $DAGSTER_HOME by `charmeta run` / `charmeta ui`
# when that folder has no dagster.yaml yet; charmeta_dagster/instance.py embeds the same text).
# Storage: Dagster's default, SQLite files under $DAGSTER_HOME (project-local .dagster_home/ via the Makefile).
telemetry:
  enabled: false
nux:
  enabled: false
# Two concurrent runs use both cores of a 2-core machine; `charmeta ui` gives each run
# cpu_count / 2 worker processes (CHARMETA_WORKERS) so runs x workers = cores.
concurrency:
  runs:
    max_concurrent_runs: 2
run_monitoring:
  enabled: true
  start_timeout_seconds: 180
  poll_interval_seconds: 30
sensors:
  use_threads: true
  num_workers: 2
# Run retries (daemon-launched runs): a run whose process died (kill -9, OOM) is re-launched;
# op exceptions are retried by the assets' RetryPolicy (backoff), not by a whole new run.
run_retries:
  enabled: true
  max_retries: 2
  retry_on_asset_or_op_failure: false
"""


def ensure_home(home: str | os.PathLike[str]) -> str:
    """Create ``home`` with charmeta's dagster.yaml (kept if present); export DAGSTER_HOME."""
    path = Path(home).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    cfg = path / "dagster.yaml"
    if not cfg.exists():
        tmp = cfg.with_suffix(".yaml.tmp")
        tmp.write_text(DAGSTER_YAML, encoding="utf-8")
        os.replace(tmp, cfg)
    os.environ["DAGSTER_HOME"] = str(path)
    return str(path)


def initialize_storage(home: str) -> None:
    """Create and migrate the instance's SQLite storages once, in this process.

    Why: the webserver and the daemon start together on a fresh home; each then
    creates the same SQLite schemas and stamps their alembic versions, and the two
    can race ("more than one head present"). Done here first, both find them ready.
    """
    from dagster import DagsterInstance

    with DagsterInstance.from_config(home) as instance:
        instance.get_runs(limit=1)
        instance.get_dynamic_partitions("shards")
        instance.all_instigator_state()


def resolve_home(explicit: str | None, output: str) -> str:
    """``--dagster-home``, else ``$DAGSTER_HOME``, else ``<output>/.dagster_home``."""
    return explicit or os.environ.get("DAGSTER_HOME") or os.path.join(output, ".dagster_home")
