"""The Ray backend of the partition pool against a real Ray head on loopback.

* the bundled sample through Ray: every stage file and the export byte-identical to
  the local process pool;
* 200k synthetic entries (``charmeta synth``) through Ray while a Ray worker is
  killed (SIGKILL) in the middle of a partition: Ray re-runs the task, the run
  succeeds, the outputs are byte-identical to the local pool's, no record is lost.

One head (2 CPUs, 150 MB object store) serves the module's tests.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from servers import dir_digest, ray_head

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
STAGES = ("raw_shards", "normalized_records", "attribute_predictions", "validated_records")


@pytest.fixture(scope="module")
def head():
    with ray_head(num_cpus=2) as h:
        yield h


def _run(source: Path, out: Path, home: Path, extra_env: dict[str, str], *args: str) -> subprocess.Popen:
    env = {**os.environ, "DAGSTER_HOME": str(home), "CHARMETA_POOL_MIN_ROWS": "0", **extra_env}
    cmd = [sys.executable, "-m", "charmeta.cli", "run", "--source", str(source), "--output", str(out), *args]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen, timeout: float = 600) -> str:
    _, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-4000:]
    return err


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _assert_identical(a: Path, b: Path) -> None:
    for stage in STAGES:
        da, db = dir_digest(str(a), stage), dir_digest(str(b), stage)
        assert da and da == db, stage
    assert _sha(a / "export" / "records.jsonl") == _sha(b / "export" / "records.jsonl")


def _ray_env(head) -> dict[str, str]:  # noqa: ANN001
    return {"CHARMETA_EXECUTOR": "ray", "CHARMETA_RAY_ADDRESS": head.address}


def test_sample_through_ray_is_byte_identical_to_local_pool(head, tmp_path: Path, sample_dir: Path) -> None:  # noqa: ANN001
    ray_out, local_out = tmp_path / "ray", tmp_path / "local"
    err = _finish(_run(sample_dir, ray_out, tmp_path / "h1", _ray_env(head)))
    assert "ray connected" in err and "'CPU': 2.0" in err  # it really went to the head
    _finish(_run(sample_dir, local_out, tmp_path / "h2", {}, "--workers", "2"))
    _assert_identical(ray_out, local_out)


def _ray_worker_pids_writing(out: Path, driver: int) -> list[int]:
    """PIDs of processes holding a stage temp file (``<file>.parquet.tmp-<pid>``), not the driver."""
    pids = []
    for p in glob.glob(str(out / "*" / "*.parquet.tmp-*")):
        m = re.search(r"\.tmp-(\d+)$", p)
        if m and int(m.group(1)) != driver:
            pids.append(int(m.group(1)))
    return pids


def test_200k_through_ray_with_a_worker_killed_mid_partition(head, tmp_path: Path, chaos) -> None:  # noqa: ANN001
    src = tmp_path / "src"
    subprocess.run(
        [sys.executable, "-m", "charmeta.cli", "synth", "--rows", "200000", "--shards", "4"]
        + ["--output", str(src), "--format", "jsonl", "--workers", "1"],
        check=True,
        capture_output=True,
    )
    ray_out, local_out = tmp_path / "ray", tmp_path / "local"
    proc = _run(src, ray_out, tmp_path / "h1", _ray_env(head), "--shard-rows", "50000")
    killed: list[int] = []
    deadline = time.monotonic() + 600
    while not killed and proc.poll() is None and time.monotonic() < deadline:
        for pid in _ray_worker_pids_writing(ray_out, proc.pid):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            assert b"ray" in cmdline, cmdline  # a Ray worker process, not the driver
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
            break
        time.sleep(0.05)
    assert killed, "no Ray worker was caught mid-partition"
    _finish(proc)
    _finish(_run(src, local_out, tmp_path / "h2", {}, "--shard-rows", "50000", "--workers", "2"))
    _assert_identical(ray_out, local_out)

    import pyarrow.parquet as pq

    rows = sum(pq.read_metadata(p).num_rows for p in (ray_out / "validated_records").glob("*.parquet"))
    lines = sum(1 for _ in open(ray_out / "export" / "records.jsonl", "rb"))
    manifest = (ray_out / "export" / "manifest.json").read_text()
    lost = 200000 - rows
    chaos.record("200k rows on Ray, worker SIGKILLed mid-partition", "task retried by Ray; run ok; identical", lost)
    assert lost == 0
    assert lines > 0 and '"ok"' in manifest
