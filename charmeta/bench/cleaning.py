"""Bench of the dataset cleaning (issue 14): ``python -m charmeta.bench.cleaning --rows N``.

On one synthetic set with realism on (Zipf characters, near-duplicate reposts, missing
appearance tags), back to back on the same machine:

1. ``charmeta run`` end to end with ``CHARMETA_CLEANING=off`` (the export as before);
2. ``charmeta run`` end to end with the cleaning on (fresh output);
3. the cleaning alone on run 2's output, in a child process so its peak RSS is its own:
   ``--alone global`` (default) the global steps (profiles, clusters, apply, report) over
   the parts the workers built in run 2; ``--alone full`` rebuilds the parts first, in one
   process (what the workers add per partition; ~0.5 s CPU per 100k rows, a long step at
   5M on 2 cores); ``--alone none`` skips it.

Wall time and peak RSS (largest process, whole process tree) of each, appended to
``docs/benchmarks.md``. The ratio of 2 to 1 is the cost of the cleaning end to end.

``--baseline DIR`` (a checkout of an earlier commit, e.g. ``git worktree add /tmp/base
68e2974``) first runs that code's ``charmeta run`` on the same source (``PYTHONPATH=DIR``),
and the report gives both runs' ratios to it. Why: the issues' budgets are relative to the
time "today" (before the work), and this VM's speed drifts by 15-25% within hours, so a
figure from another day compares the machine, not the code.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from charmeta.bench.machine import describe
from charmeta.bench.stages import StageResult, cli_cmd, run_child


def _child(root: str, mode: str) -> None:
    """The cleaning alone on ``root`` (parts from scratch first when ``mode`` is ``full``); prints JSON."""
    import resource

    from charmeta.cleaning.run import run_all
    from charmeta.sources import registered_keys

    if mode == "full":
        shutil.rmtree(os.path.join(root, "cleaning_parts"), ignore_errors=True)
    keys = registered_keys(root)
    t0 = time.perf_counter()
    out = run_all(root, keys)  # parts: rebuilt when missing, else reused
    seconds = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "available": True,
                "rows": out["clusters"]["entries"],
                "seconds": seconds,
                "maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                "steps": out["seconds"],
                "duplicate_rate": out["clusters"]["duplicate_rate"],
                "fills": out["apply"]["fills"],
                "conflicts": out["apply"]["identity_conflicts"],
                "identity_excluded": out["apply"]["identity_excluded"],
                "duplicates_dropped": out["apply"]["duplicates_dropped"],
            }
        )
    )


def _commit(checkout: str) -> str:
    """The short commit of a baseline checkout (its folder name when it is not a git work tree)."""
    import subprocess

    try:
        out = subprocess.run(
            ["git", "-C", checkout, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return os.path.basename(os.path.abspath(checkout))


def _row(r: StageResult) -> str:
    mb = 1024 * 1024
    return (
        f"| {r.name} | {r.rows:,} | {r.wall_s:.1f} | {'' if r.work_s is None else f'{r.work_s:.1f}'} | "
        f"{r.peak_process_bytes / mb:,.0f} | {r.peak_tree_bytes / mb:,.0f} | {r.note} |"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m charmeta.bench.cleaning")
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--shards", type=int, default=0, help="default: one per 100k rows")
    p.add_argument("--work", default="out/bench-cleaning")
    p.add_argument("--zipf", type=float, default=1.0)
    p.add_argument("--near-dups", type=float, default=0.05)
    p.add_argument("--skip-off", action="store_true", help="skip the run without cleaning")
    p.add_argument("--alone", choices=["global", "full", "none"], default="global", help="step 3 (see above)")
    p.add_argument("--report", default="docs/benchmarks.md")
    p.add_argument("--baseline", help="a checkout of earlier code: its `charmeta run` on the same source first")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        _child(args.child, args.alone)
        return 0
    work = Path(args.work)
    shards = args.shards or max(1, args.rows // 100_000)
    src = work / f"synth-{args.rows}-k{shards}-z{args.zipf}-d{args.near_dups}"
    results: list[StageResult] = []
    if not (src / ".done").exists():
        shutil.rmtree(src, ignore_errors=True)
        r = run_child(
            "synth (realism)",
            cli_cmd(
                "synth", "--rows", str(args.rows), "--shards", str(shards), "--output", str(src),
                "--zipf", str(args.zipf), "--near-dups", str(args.near_dups),
            ),
            args.rows,
        )  # fmt: skip
        results.append(r)
        (src / ".done").write_text("ok")
    runs = [(f"end to end, baseline code {_commit(args.baseline)}", "baseline")] if args.baseline else []
    if not args.skip_off:
        runs.append(("end to end, cleaning off", "off"))
    runs.append(("end to end, cleaning on", "on"))
    for name, mode in runs:
        out = work / f"run-{mode}"
        shutil.rmtree(out, ignore_errors=True)
        env = {"PYTHONPATH": os.path.abspath(args.baseline)} if mode == "baseline" else {"CHARMETA_CLEANING": mode}
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            r = run_child(name, cli_cmd("run", "--source", str(src), "--output", str(out)), args.rows)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        if mode == "on" and (out / "export" / "manifest.json").exists():
            c = json.loads((out / "export" / "manifest.json").read_text()).get("cleaning", {})
            r.note = (
                f"exported {json.loads((out / 'export' / 'manifest.json').read_text())['exported_records']:,}; "
                f"dropped {c.get('duplicates_dropped', 0):,} duplicates, filled {c.get('fills', 0):,} values, "
                f"{c.get('identity_conflicts', 0):,} conflicts, {c.get('identity_excluded', 0):,} moved to excluded"
            )
        results.append(r)
        print(_row(r), file=sys.stderr, flush=True)
    on = work / "run-on"
    if args.alone != "none":
        r = run_child(
            "cleaning alone (parts + global)" if args.alone == "full" else "cleaning alone (global steps)",
            [sys.executable, "-m", "charmeta.bench.cleaning", "--child", str(on), "--alone", args.alone],
            args.rows,
            json_result=True,
        )
        if r.available:
            r.note = (
                "steps s: " + json.dumps(r.extra.get("steps", {})) + f"; duplicate rate {r.extra.get('duplicate_rate')}"
            )
        results.append(r)
    m = describe()
    off = next((x for x in results if x.name.endswith("cleaning off")), None)
    onr = next((x for x in results if x.name.endswith("cleaning on")), None)
    lines = [
        "",
        f"## Cleaning bench {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC (issue 14)",
        "",
        f"- rows: {args.rows:,} in {shards} shards; synth realism zipf={args.zipf}, near_dups={args.near_dups}",
        f"- machine: {m.get('cpu', '?')}, {m.get('cores', '?')} cores, load_avg_1m {m.get('load_avg_1m', '?')} "
        "(shared with other jobs while measured: absolute times are not comparable with quiet runs; "
        "compare the two end-to-end rows of this section)",
        "",
        "| step | rows | wall s | work s | peak RSS 1 proc MB | peak RSS tree MB | note |",
        "|---|---|---|---|---|---|---|",
        *[_row(x) for x in results],
    ]
    if off and onr and off.available and onr.available:
        lines += ["", f"- end to end with cleaning / without: {onr.wall_s / off.wall_s:.2f}x"]
    base = next((x for x in results if x.name.startswith("end to end, baseline code")), None)
    if base and base.available:
        lines += [
            f"- {r.name} / baseline code: {r.wall_s / base.wall_s:.2f}x"
            for r in (off, onr)
            if r is not None and r.available
        ]
    text = "\n".join(lines) + "\n"
    print(text)
    with open(args.report, "a", encoding="utf-8") as fh:
        fh.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
