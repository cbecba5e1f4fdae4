"""Run one bench stage as a child process and measure it: wall, rows/s, peak RSS.

Every stage, in-process ones included, runs as a subprocess so memory figures
are per stage and comparable; a stage whose code is not there yet is reported
``not available`` instead of failing the bench.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from charmeta.bench.rss import TreeSampler


@dataclass
class StageResult:
    """One row of the bench table."""

    name: str
    available: bool
    rows: int = 0
    wall_s: float = 0.0  # whole child process, start to exit
    work_s: float | None = None  # the timed work only, when the child reports it
    peak_tree_bytes: int = 0
    peak_process_bytes: int = 0
    processes: int = 0
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        """Seconds the rate is computed over: the work if known, else the wall."""
        return self.work_s if self.work_s is not None else self.wall_s

    @property
    def rows_per_s(self) -> float | None:
        return self.rows / self.seconds if self.available and self.seconds > 0 else None  # 0 s: nothing timed


def unavailable(name: str, why: str) -> StageResult:
    return StageResult(name=name, available=False, note=f"not available: {why}")


def run_child(
    name: str,
    cmd: Sequence[str],
    rows: int,
    cwd: Path | None = None,
    json_result: bool = False,
    timeout: float | None = None,
) -> StageResult:
    """Run ``cmd``, sampling its process tree's RSS; parse a last-line JSON result if asked.
    The end of the child's stdout is kept in ``extra["stdout"]`` (what it says it did)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(list(cmd), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with TreeSampler(proc.pid) as sampler:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            return StageResult(name, False, rows, time.perf_counter() - t0, note=f"timed out after {timeout}s")
    wall = time.perf_counter() - t0
    peak = sampler.peak
    res = StageResult(
        name,
        True,
        rows,
        wall,
        peak_tree_bytes=peak.tree_bytes,
        peak_process_bytes=peak.max_process_bytes,
        processes=len(peak.processes_seen),
        extra={"stdout": (out or "")[-4000:]},
    )
    if proc.returncode != 0:
        tail = (err or out or "").strip().splitlines()[-3:]
        res.available = False
        res.note = f"failed (exit {proc.returncode}): {' | '.join(tail)[:300]}"
        return res
    if json_result:
        lines = [ln for ln in out.strip().splitlines() if ln.startswith("{")]
        data = json.loads(lines[-1]) if lines else {"available": False, "reason": "no result line"}
        if not data.get("available", False):
            return unavailable(name, data.get("reason", "unknown"))
        res.rows = int(data.get("rows", rows))
        res.work_s = float(data["seconds"])
        # the child's own ru_maxrss is exact; the sampler may miss a short spike
        res.peak_process_bytes = max(res.peak_process_bytes, int(data.get("maxrss", 0)))
        res.peak_tree_bytes = max(res.peak_tree_bytes, res.peak_process_bytes)
        res.extra = {k: v for k, v in data.items() if k not in ("available", "rows", "seconds", "maxrss")}
        res.extra["stdout"] = (out or "")[-4000:]
    return res


def worker_cmd(stage: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "charmeta.bench.worker", stage, *args]


def cli_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "charmeta.cli", *args]


def pipeline_stage_results(run_root: Path, stages: Sequence[str]) -> list[StageResult]:
    """Rows/s per pipeline stage of an end-to-end run, from its commit markers: the rows each
    stage wrote and the seconds it took, summed over the partitions it built (worker time: with
    N workers, N partitions run at once). Stages the run skipped or never built are left out."""
    out = []
    for stage in stages:
        rows, seconds, parts = 0, 0.0, 0
        for marker in sorted((run_root / stage).glob("*.json")):
            try:
                m = json.loads(marker.read_text())
            except (OSError, ValueError):
                continue
            rows += int(m.get("rows") or 0)
            seconds += float(m.get("seconds") or 0.0)
            parts += 1
        if parts:
            out.append(
                StageResult(
                    f"  stage {stage}",
                    True,
                    rows,
                    0.0,
                    seconds,
                    note=f"{parts} partitions; seconds summed over workers",
                )
            )
    return out
