"""A disk that fills in the middle of ``charmeta run``: a small tmpfs holds the output and the
Dagster instance (SQLite). The run must stop with one clear error naming the path and its free
space (no traceback), keep every partition it finished (byte-identical to a run on a big disk),
and the re-run after space is freed must complete with nothing lost and nothing redone.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from servers import dir_digest

pytestmark = pytest.mark.slow


def _run(src: Path, out: Path, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    cmd = [sys.executable, "-m", "charmeta.cli", "run", "--source", str(src), "--output", str(out), "--workers", "1"]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)


def _du(*paths: Path) -> int:
    return sum(f.stat().st_size for p in paths for f in p.rglob("*") if f.is_file())


@contextlib.contextmanager
def _tmpfs(path: Path, size: int):
    path.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {r.stderr.decode(errors='replace').strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def test_disk_full_mid_run_clear_error_partitions_kept_rerun_completes(tmp_path: Path, chaos) -> None:  # noqa: ANN001
    src = tmp_path / "src"
    subprocess.run(
        [sys.executable, "-m", "charmeta.cli", "synth", "--rows", "20000", "--shards", "4"]
        + ["--output", str(src), "--format", "jsonl", "--workers", "1"],
        check=True,
        capture_output=True,
    )
    ref = tmp_path / "ref"
    r = _run(src, ref, tmp_path / "ref_home")
    assert r.returncode == 0, r.stderr[-3000:]
    need = _du(ref, tmp_path / "ref_home")
    # half of what the partitions write (stages, parts, instance): the disk fills while they run,
    # not in the dataset-level cleaning / export that follows them
    per_partition = need - _du(ref / "export", ref / "cleaning")

    with _tmpfs(tmp_path / "small", per_partition // 2) as disk:
        out, home = disk / "out", disk / "home"
        r = _run(src, out, home)
        assert r.returncode == 3, r.stderr[-3000:]  # DiskFullError's exit code
        assert "charmeta: error: disk full " in r.stderr and str(disk) in r.stderr, r.stderr[-3000:]
        assert re.search(r"\(\d+(\.\d)? [KMG]?B free\)", r.stderr), r.stderr[-3000:]
        assert "Traceback" not in r.stderr, r.stderr[-3000:]
        kept = dir_digest(str(out), "validated_records")
        reference = dir_digest(str(ref), "validated_records")
        assert kept, "no partition finished before the disk filled: the tmpfs is too small for this test"
        assert len(kept) < len(reference)
        assert all(reference[k] == v for k, v in kept.items())  # finished partitions kept, intact
        markers = {p.name: p.stat().st_mtime_ns for p in (out / "validated_records").glob("*.json")}

        subprocess.run(["mount", "-o", f"remount,size={need * 3}", str(disk)], check=True)  # space freed
        r = _run(src, out, home)
        assert r.returncode == 0, r.stderr[-3000:]
        assert dir_digest(str(out), "validated_records") == reference
        assert (out / "export" / "records.jsonl").read_bytes() == (ref / "export" / "records.jsonl").read_bytes()
        for name, mtime in markers.items():  # finished partitions were not redone
            assert (out / "validated_records" / name).stat().st_mtime_ns == mtime, name
        import pyarrow.parquet as pq

        rows = sum(pq.read_metadata(p).num_rows for p in (out / "validated_records").glob("*.parquet"))
    lost = 20000 - rows
    chaos.record(
        "disk full mid-run (tmpfs, SQLite instance on it)",
        f"clear error naming path + free space; {len(kept)}/4 partitions kept; re-run completes",
        lost,
    )
    assert lost == 0
