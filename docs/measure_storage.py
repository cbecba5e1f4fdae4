"""Measure disk use per pipeline stage: ``charmeta synth`` + ``charmeta run`` on N rows, then ``du`` per folder.

Why a script: docs/scaling.md quotes bytes per entry for each stage, and those must come from a
run anyone can repeat. Writes ``docs/data/storage_<rows>.json`` (read by make_scaling_plots.py).

    .venv/bin/python docs/measure_storage.py --rows 200000 [--shards 2] [--work /tmp/charmeta-storage]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def folder_bytes(path: Path) -> tuple[int, int]:
    """(bytes, files) under ``path``: file sizes, not blocks (the figure that scales with rows)."""
    total = files = 0
    for root, _dirs, names in os.walk(path):
        for n in names:
            total += os.path.getsize(os.path.join(root, n))
            files += 1
    return total, files


def charmeta(*args: str, env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "charmeta.cli", *args], check=True, env=env)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--format", default="parquet", choices=["parquet", "jsonl"])
    ap.add_argument("--work", default="/tmp/charmeta-storage")
    ap.add_argument("--out", default=str(HERE / "data"))
    args = ap.parse_args()
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    src, out = work / "source", work / "out"
    env = {**os.environ, "DAGSTER_HOME": str(work / "dagster_home")}
    synth_s = charmeta(
        "synth",
        "--rows",
        str(args.rows),
        "--shards",
        str(args.shards),
        "--format",
        args.format,
        "--output",
        str(src),
        env=env,
    )
    run_s = charmeta("run", "--source", str(src), "--output", str(out), "--shard-rows", "100000", env=env)
    source_bytes, _ = folder_bytes(src)
    stages = {}
    for d in sorted(p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")):
        b, f = folder_bytes(d)
        stages[d.name] = {"bytes": b, "files": f, "bytes_per_entry": round(b / args.rows, 2)}
    export = {}
    for f in sorted((out / "export").iterdir()):
        if f.is_file():
            export[f.name] = {"bytes": f.stat().st_size, "bytes_per_entry": round(f.stat().st_size / args.rows, 2)}
    dagster_b, _ = folder_bytes(work / "dagster_home")
    manifest = json.loads((out / "export" / "manifest.json").read_text())
    result = {
        "rows": args.rows,
        "format": args.format,
        "shards": args.shards,
        "shard_rows": 100_000,
        "measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "synth_s": round(synth_s, 1),
        "run_s": round(run_s, 1),
        "status_counts": manifest["status_counts"],
        "source": {"bytes": source_bytes, "bytes_per_entry": round(source_bytes / args.rows, 2)},
        "stages": stages,
        "export_files": export,
        "dagster_home": {"bytes": dagster_b, "bytes_per_entry": round(dagster_b / args.rows, 2)},
    }
    Path(args.out).mkdir(parents=True, exist_ok=True)
    dest = Path(args.out) / f"storage_{args.rows}.json"
    dest.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    print(f"wrote {dest}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
