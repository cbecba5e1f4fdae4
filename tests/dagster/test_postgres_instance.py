"""The deployment instance (``docker/dagster.yaml``) on a real PostgreSQL server.

A partitioned backfill goes through the daemon and the QueuedRunCoordinator with
two runs at a time (one run per partition), against a throw-away Postgres cluster
on a free loopback port. It must finish without lock errors, with two runs really
overlapping, and write byte for byte the same stage files as ``charmeta run`` on the
default SQLite instance.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from servers import DaemonDeployment, dir_digest, max_overlap, postgres_server

REPO = Path(__file__).resolve().parents[2]
LOCK_ERRORS = re.compile(r"database is locked|deadlock detected|could not obtain lock|LockNotAvailable", re.I)


def test_instance_yaml_is_valid_without_a_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """The YAML passes Dagster's own instance schema, with Postgres storage and the queued coordinator."""
    from dagster._core.instance.config import dagster_instance_config

    for k, v in {"DAGSTER_PG_HOST": "db", "DAGSTER_PG_PORT": "5432", "DAGSTER_PG_USER": "u"}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", "p")
    monkeypatch.setenv("DAGSTER_PG_DB", "d")
    cfg, _ = dagster_instance_config(str(REPO / "docker"))
    assert "postgres" in cfg["storage"]
    assert cfg["run_coordinator"]["class"] == "QueuedRunCoordinator"
    limits = {lim["key"]: lim for lim in cfg["concurrency"]["runs"]["tag_concurrency_limits"]}
    assert limits["charmeta/gpu"]["limit"] == 1
    assert cfg["run_retries"]["enabled"] and cfg["run_monitoring"]["enabled"]
    text = (REPO / "docker" / "dagster.yaml").read_text()
    assert "password: {env: DAGSTER_PG_PASSWORD}" in text  # the secret comes from the environment only


def _synth(dst: Path, rows: int, shards: int) -> None:
    subprocess.run(
        [sys.executable, "-m", "charmeta.cli", "synth", "--rows", str(rows), "--shards", str(shards)]
        + ["--output", str(dst), "--format", "jsonl", "--workers", "1"],
        check=True,
        capture_output=True,
    )


@pytest.mark.slow
def test_backfill_on_postgres_two_concurrent_runs_same_outputs_as_sqlite(tmp_path: Path) -> None:
    src, ref, out = tmp_path / "src", tmp_path / "sqlite_out", tmp_path / "pg_out"
    _synth(src, rows=4000, shards=4)
    env = {**os.environ, "CHARMETA_WORKERS": "1", "DAGSTER_HOME": str(tmp_path / "sqlite_home")}
    r = subprocess.run(
        [sys.executable, "-m", "charmeta.cli", "run", "--source", str(src), "--output", str(ref)]
        + ["--shard-rows", "1000", "--workers", "1"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr[-3000:]

    with postgres_server() as pg:
        dep = DaemonDeployment(
            pg,
            str(tmp_path / "pg_home"),
            str(src),
            str(out),
            shard_rows=1000,
            overrides={"concurrency": {"runs": {"max_concurrent_runs": 2}}},
        )
        keys = dep.register()
        assert len(keys) == 4
        dep.start_daemon()
        try:
            dep.backfill(keys)
            records = dep.wait_runs(len(keys))
        finally:
            dep.stop()
        statuses = [rec.dagster_run.status.value for rec in records]
        assert statuses == ["SUCCESS"] * 4, statuses
        # the queue let two run at once and never more
        assert max_overlap(records) == 2
        with dep.instance() as inst:
            from dagster import DagsterEventType

            for rec in records:
                events = inst.all_logs(rec.dagster_run.run_id)
                failed = [e for e in events if e.is_dagster_event and e.dagster_event.is_step_failure]
                assert failed == [], failed
                text = "\n".join(e.message or "" for e in events)
                assert not LOCK_ERRORS.search(text), LOCK_ERRORS.search(text)
                assert any(e.dagster_event_type == DagsterEventType.RUN_SUCCESS for e in events if e.is_dagster_event)
            tagged = {rec.dagster_run.tags.get("dagster/partition") for rec in records}
            assert tagged == set(keys)
        daemon_log = Path(dep.daemon_log).read_text(errors="replace")
        assert not LOCK_ERRORS.search(daemon_log), LOCK_ERRORS.search(daemon_log)

    # every stage file is byte-identical to the SQLite instance's run
    for stage in ("raw_shards", "normalized_records", "attribute_predictions", "validated_records"):
        assert dir_digest(str(out), stage) == dir_digest(str(ref), stage), stage
    import pyarrow.parquet as pq

    rows = sum(pq.read_metadata(p).num_rows for p in (out / "validated_records").glob("*.parquet"))
    assert rows == 4000  # records lost: 0


def test_gpu_pool_and_tag_match_the_instance_limits() -> None:
    """The ``gpu`` pool (attribute_heads) and the sensor's ``charmeta/gpu`` run tag are the names the
    instance limits: runs embedding images get the tag, text-only ranges do not."""
    import yaml

    from charmeta_dagster.definitions import defs
    from charmeta_dagster.defs.sensors import gpu_tag

    cfg = yaml.safe_load((REPO / "docker" / "dagster.yaml").read_text())
    limited = {(lim["key"], lim.get("value")) for lim in cfg["concurrency"]["runs"]["tag_concurrency_limits"]}
    keys = ["text-a", "img-b", "text-c"]
    tag = gpu_tag(keys, "text-a", "img-b", {"img-b"})
    assert set(tag.items()) <= limited and tag
    assert gpu_tag(keys, "text-c", "text-c", {"img-b"}) == {}
    assert defs.resolve_assets_def("attribute_heads").op.pool == "gpu"
    assert cfg["concurrency"]["pools"]["default_limit"] == 1
