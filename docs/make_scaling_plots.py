"""Draw docs/img/scaling_*.png from the measured data: docs/benchmarks.md and docs/data/storage_*.json.

Why from the Markdown: ``charmeta bench`` appends one section per run to docs/benchmarks.md
(a metadata list plus a table); that file is the record, so the plots are re-derived from it
rather than from numbers copied by hand. Run after a bench or a storage measurement:

    .venv/bin/python docs/make_scaling_plots.py          # writes docs/img/scaling_*.png, prints the tables
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
IMG = HERE / "img"
RUN_RE = re.compile(r"^## Run (\d{4}-\d\d-\d\d \d\d:\d\d) UTC", re.M)


@dataclass
class BenchRun:
    """One ``## Run`` section of docs/benchmarks.md."""

    when: str
    rows: int
    meta: dict[str, str] = field(default_factory=dict)
    stages: dict[str, dict[str, float | None]] = field(default_factory=dict)


def _num(s: str) -> float | None:
    s = s.strip().replace(",", "")
    try:
        return float(s)
    except ValueError:
        return None


def parse_benchmarks(text: str) -> list[BenchRun]:
    """Every run section: metadata bullets and the stage table (rows, wall s, work s, rows/s, RSS)."""
    runs: list[BenchRun] = []
    starts = [m.start() for m in RUN_RE.finditer(text)] + [len(text)]
    for a, b in zip(starts, starts[1:]):
        body = text[a:b]
        when = RUN_RE.match(body).group(1)  # type: ignore[union-attr]
        meta = dict(re.findall(r"^- \*\*([^*]+)\*\*: (.+)$", body, re.M))
        rows = int(_num(meta.get("rows", "0")) or 0)
        run = BenchRun(when, rows, meta)
        header: list[str] | None = None
        for line in body.splitlines():
            if not line.startswith("|") or line.startswith("|---"):
                continue
            cells = [c.strip() for c in line.strip("|").split("|")]
            if cells[0] == "stage":
                header = cells
                continue
            if header is None:
                continue
            row = dict(zip(header, cells))
            run.stages[row["stage"].strip()] = {
                "rows": _num(row.get("rows", "")),
                "wall": _num(row.get("wall s", "")),
                "work": _num(row.get("work s", "")),
                "rate": _num(row.get("rows/s", "")),
                "rss_tree": _num(row.get("peak RSS tree MB", "")),
                "rss_one": _num(row.get("peak RSS 1 proc MB", "")),
            }
        if run.stages:
            runs.append(run)
    return runs


def throughput_table(runs: list[BenchRun]) -> list[dict[str, object]]:
    """End-to-end rows per run with the floor of the same run (the ratio the issue tracks)."""
    out = []
    for r in runs:
        e2e, floor = r.stages.get("end to end"), r.stages.get("duckdb floor")
        if not e2e or not e2e.get("wall"):
            continue
        out.append(
            {
                "run": r.when,
                "commit": r.meta.get("commit", "?"),
                "rows": r.rows,
                "wall_s": e2e["wall"],
                "rows_per_s": e2e["rate"],
                "floor_s": floor.get("work") if floor else None,
                "ratio": round(e2e["wall"] / floor["work"], 2) if floor and floor.get("work") else None,
                "rss_tree_mb": e2e.get("rss_tree"),
                "rss_one_mb": e2e.get("rss_one"),
                "core_rows_per_s": (r.stages.get("core extraction") or {}).get("rate"),
            }
        )
    return out


def plot_throughput(table: list[dict[str, object]], dest: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.4))
    for rows, color in ((1_000_000, "#5b5bd6"), (5_000_000, "#d65b8a")):
        pts = [t for t in table if t["rows"] == rows]
        if not pts:
            continue
        xs = list(range(len(pts)))
        ax1.plot(xs, [t["rows_per_s"] for t in pts], "o-", color=color, label=f"{rows / 1e6:.0f}M rows, end to end")
        ax2.plot(xs, [t["ratio"] for t in pts], "o-", color=color, label=f"{rows / 1e6:.0f}M rows")
        for x, t in zip(xs, pts):
            ax1.annotate(str(t["commit"])[:7], (x, t["rows_per_s"]), fontsize=6, rotation=45, alpha=0.6)
    ax1.set_title("charmeta run: rows/s per bench run (2-core VM)")
    ax1.set_xlabel("bench run, in order (docs/benchmarks.md)")
    ax1.set_ylabel("rows / s")
    ax1.set_ylim(bottom=0)
    ax1.legend()
    ax2.axhline(4, color="grey", ls="--", lw=1, label="goal: 4x")
    ax2.set_title("end-to-end wall / DuckDB floor of the same run")
    ax2.set_xlabel("bench run, in order")
    ax2.set_ylim(bottom=0)
    ax2.legend()
    fig.tight_layout()
    fig.savefig(dest, dpi=110)
    plt.close(fig)


STAGE_ORDER = ("raw_shards", "normalized_records", "normalized_images", "embeddings", "attribute_predictions")
STAGE_ORDER += ("validated_records",)


def stage_seconds(run: BenchRun) -> dict[str, float]:
    """Worker seconds per 1M rows for each pipeline stage of one run."""
    out = {}
    for s in STAGE_ORDER:
        st = run.stages.get(f"stage {s}")
        if st and st.get("work") is not None and run.rows:
            out[s] = float(st["work"]) * 1_000_000 / run.rows  # type: ignore[arg-type]
    return out


def plot_stages(runs: list[BenchRun], dest: Path) -> dict[str, float]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    latest = [r for r in runs if stage_seconds(r)][-1]
    secs = stage_seconds(latest)
    fig, ax = plt.subplots(figsize=(8, 3.6))
    names = list(secs)[::-1]
    ax.barh(names, [secs[n] for n in names], color="#3a9d8f")
    for i, n in enumerate(names):
        ax.text(secs[n], i, f" {secs[n]:.2f} s", va="center", fontsize=8)
    ax.set_xlabel("worker CPU seconds per 1M rows")
    ax.set_title(f"stage cost, bench run {latest.when} ({latest.rows:,} rows, {latest.meta.get('commit', '?')})")
    fig.tight_layout()
    fig.savefig(dest, dpi=110)
    plt.close(fig)
    return secs


def plot_storage(storage: dict, dest: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    items = [("source (synth parquet)", storage["source"]["bytes_per_entry"])]
    order = [*STAGE_ORDER, "export_parts", "check_facts"]  # pipeline order; export/ is shown file by file
    items += [(k, storage["stages"][k]["bytes_per_entry"]) for k in order if k in storage["stages"]]
    items += [("export/" + k, v["bytes_per_entry"]) for k, v in storage["export_files"].items()]
    items += [("DAGSTER_HOME", storage["dagster_home"]["bytes_per_entry"])]
    items = [(k, v) for k, v in items if v >= 0.01]
    fig, ax = plt.subplots(figsize=(9, 0.34 * len(items) + 1.2))
    names = [k for k, _ in items][::-1]
    vals = [v for _, v in items][::-1]
    ax.barh(names, vals, color="#888")
    for i, v in enumerate(vals):
        ax.text(v, i, f" {v:.1f}", va="center", fontsize=8)
    ax.set_xlabel("bytes per entry")
    ax.set_title(f"disk per stage, measured on {storage['rows']:,} synthetic entries ({storage['measured_at']})")
    fig.tight_layout()
    fig.savefig(dest, dpi=110)
    plt.close(fig)


def main() -> int:
    IMG.mkdir(exist_ok=True)
    runs = parse_benchmarks((HERE / "benchmarks.md").read_text("utf-8"))
    if not runs:
        print("no '## Run' sections in docs/benchmarks.md", file=sys.stderr)
        return 1
    table = throughput_table(runs)
    plot_throughput(table, IMG / "scaling_throughput.png")
    secs = plot_stages(runs, IMG / "scaling_stages.png")
    print("| run | commit | rows | wall s | rows/s | floor s | ratio | peak RSS 1 proc MB |")
    print("|---|---|---|---|---|---|---|---|")
    for t in table:
        print(
            f"| {t['run']} | {t['commit']} | {t['rows']:,} | {t['wall_s']} | {t['rows_per_s']:,.0f} | "
            f"{t['floor_s'] or '-'} | {str(t['ratio']) + 'x' if t['ratio'] else '-'} | {t['rss_one_mb']:,.0f} |"
        )
    print("\nworker seconds per 1M rows:", {k: round(v, 2) for k, v in secs.items()})
    for f in sorted((HERE / "data").glob("storage_*.json")):
        storage = json.loads(f.read_text())
        plot_storage(storage, IMG / "scaling_storage.png")
        print(f"\nstorage ({f.name}):")
        for k, v in storage["stages"].items():
            print(f"  {k:24s} {v['bytes_per_entry']:8.1f} B/entry")
    print(f"plots in {IMG}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
