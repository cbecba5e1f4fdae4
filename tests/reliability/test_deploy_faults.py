"""Faults of a deployment (Postgres instance + daemon, docker/dagster.yaml), each ending with
every record present: Postgres restarted while runs execute, and SIGTERM to the daemon while
runs execute. The daemon launches the runs of a partitioned backfill (2 at a time); after the
fault, runs must have finished or failed with a stated error, and whatever was left unfinished
completes on a re-submitted backfill of just those partitions (what an operator does from the UI).
The Ray worker loss is in test_ray_backend.py, the full disk in test_disk_full.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from servers import DaemonDeployment, dir_digest, postgres_server

pytestmark = pytest.mark.slow
ROWS, SHARDS = 4000, 4
OVERRIDES = {
    "concurrency": {"runs": {"max_concurrent_runs": 2}},
    "run_monitoring": {"poll_interval_seconds": 5, "start_timeout_seconds": 90},
}


@pytest.fixture
def source(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    subprocess.run(
        [sys.executable, "-m", "charmeta.cli", "synth", "--rows", str(ROWS), "--shards", str(SHARDS)]
        + ["--output", str(src), "--format", "jsonl", "--workers", "1"],
        check=True,
        capture_output=True,
    )
    return src


def _unfinished(out: Path, keys: list[str]) -> list[str]:
    return [k for k in keys if not (out / "validated_records" / f"{k}.json").exists()]


def _rows(out: Path) -> int:
    import pyarrow.parquet as pq

    return sum(pq.read_metadata(p).num_rows for p in (out / "validated_records").glob("*.parquet"))


def _explained(dep: DaemonDeployment, records: list) -> list[str]:
    """Each failed run's stated reason (a run that failed without one fails the test)."""
    reasons = []
    with dep.instance() as inst:
        for rec in records:
            if rec.dagster_run.status.value != "FAILURE":
                continue
            msgs = [
                e.message or ""
                for e in inst.all_logs(rec.dagster_run.run_id)
                if e.is_dagster_event and e.dagster_event.is_failure
            ]
            assert any(m.strip() for m in msgs), f"run {rec.dagster_run.run_id} failed without a reason"
            reasons.append(msgs[-1][:160])
    return reasons


def _complete(dep: DaemonDeployment, out: Path, keys: list[str], n_runs: int) -> int:
    """Re-submit the unfinished partitions (if any) and wait; returns the runs in total."""
    rest = _unfinished(out, keys)
    if rest:
        dep.backfill(rest)
        n_runs += len(rest)
        records = dep.wait_runs(n_runs)
        assert [r.dagster_run.status.value for r in records[: len(rest)]] == ["SUCCESS"] * len(rest)
    assert _unfinished(out, keys) == []
    return n_runs


def test_postgres_restarted_mid_run(tmp_path: Path, source: Path, chaos) -> None:  # noqa: ANN001
    out = tmp_path / "out"
    with postgres_server() as pg:
        dep = DaemonDeployment(pg, str(tmp_path / "home"), str(source), str(out), 1000, OVERRIDES)
        keys = dep.register()
        dep.start_daemon()
        try:
            dep.backfill(keys)
            dep.wait_status("STARTED")
            pg.restart()  # fast shutdown: every open connection is cut
            records = dep.wait_runs(len(keys), settle=False)
            assert dep.daemon.poll() is None, "the daemon died when Postgres restarted"
            statuses = [r.dagster_run.status.value for r in records]
            reasons = _explained(dep, records)
            total = _complete(dep, out, keys, len(records))
        finally:
            dep.stop()
    lost = ROWS - _rows(out)
    chaos.record(
        "Postgres restarted while runs execute",
        f"runs {statuses.count('SUCCESS')} ok / {statuses.count('FAILURE')} failed with a reason; "
        f"{total - len(records)} re-run; daemon survived",
        lost,
    )
    assert lost == 0
    assert not reasons or all(reasons)


def test_sigterm_to_the_daemon_mid_run(tmp_path: Path, source: Path, chaos) -> None:  # noqa: ANN001
    out = tmp_path / "out"
    with postgres_server() as pg:
        dep = DaemonDeployment(pg, str(tmp_path / "home"), str(source), str(out), 1000, OVERRIDES)
        keys = dep.register()
        daemon = dep.start_daemon()
        try:
            dep.backfill(keys)
            dep.wait_status("STARTED")
            os.kill(daemon.pid, signal.SIGTERM)
            t0 = time.monotonic()
            rc = daemon.wait(120)
            stop_s = time.monotonic() - t0
            time.sleep(5)
            dep.start_daemon()  # what the orchestrator's restart policy does
            records = dep.wait_runs(len(keys))
            statuses = [r.dagster_run.status.value for r in records]
            _explained(dep, records)
            total = _complete(dep, out, keys, len(records))
        finally:
            dep.stop()
    lost = ROWS - _rows(out)
    chaos.record(
        "SIGTERM to the daemon while runs execute",
        f"daemon exited rc={rc} in {stop_s:.0f}s; after restart runs {statuses.count('SUCCESS')} ok / "
        f"{statuses.count('FAILURE')} failed with a reason; {total - len(records)} re-run",
        lost,
    )
    assert rc in (0, -signal.SIGTERM, 128 + signal.SIGTERM), rc
    assert lost == 0
    assert len(dir_digest(str(out), "validated_records")) == SHARDS
