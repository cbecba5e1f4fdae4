"""Ctrl-C or SIGTERM during ``charmeta run`` (issue #19): the workers stop, only temp files are
left, one line says how to resume, and resuming completes with every record."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "charmeta.cli"]


def _children(pid: int) -> set[int]:
    """Every descendant of ``pid`` (from /proc), so the test can check none outlives the run."""
    out: set[int] = set()
    todo = [pid]
    while todo:
        p = todo.pop()
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                kids = {int(x) for x in (task / "children").read_text().split()}
            except OSError:
                continue
            todo.extend(kids - out)
            out |= kids
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_mid_run_stops_workers_and_resumes(tmp_path: Path, sig: signal.Signals) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    subprocess.run(
        CLI + ["synth", "--rows", "200000", "--shards", "4", "--output", str(src)], check=True, capture_output=True
    )
    args = ["run", "--source", str(src), "--output", str(out), "--shard-rows", "25000", "--workers", "2"]
    proc = subprocess.Popen(CLI + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list((out / "raw_shards").glob("*.tmp-*")):
        time.sleep(0.2)  # wait until a worker is writing a partition
    workers = _children(proc.pid)
    assert workers, "no worker processes started"
    proc.send_signal(sig)  # to the main process only, as `kill` or a service manager would
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err and "Exception ignored" not in err, err[-3000:]
    hint = [ln for ln in err.splitlines() if "To resume, run:" in ln]
    assert len(hint) == 1 and f"--output {out}" in hint[0], err[-2000:]
    time.sleep(1.0)
    assert not [p for p in workers if _alive(p)], "worker processes outlived the interrupted run"

    res = subprocess.run(CLI + args, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    manifest = json.loads((out / "export" / "manifest.json").read_text())
    assert manifest["records"] == 200000 and manifest["records_lost"] == 0, manifest["status_counts"]
    leftovers = [p for p in out.rglob("*.tmp-*") if p.is_file()]
    assert not leftovers, leftovers[:5]
