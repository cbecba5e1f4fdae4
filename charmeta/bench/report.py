"""Render bench results: a console table and a Markdown section appended to docs/benchmarks.md."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

from charmeta.bench.stages import StageResult

HEADER = ("stage", "rows", "wall s", "work s", "rows/s", "peak RSS tree MB", "peak RSS 1 proc MB", "procs", "note")


def _mb(b: int) -> str:
    return f"{b / 1e6:,.0f}" if b else "-"


def rows_of(results: Sequence[StageResult]) -> list[tuple[str, ...]]:
    out = []
    for r in results:
        if not r.available:
            out.append((r.name, "-", "-", "-", "-", "-", "-", "-", r.note))
            continue
        rate = r.rows_per_s
        out.append(
            (  # a wall of 0: a figure read from a run's markers, not a process of its own
                r.name,
                f"{r.rows:,}",
                f"{r.wall_s:.2f}" if r.wall_s else "-",
                f"{r.work_s:.2f}" if r.work_s is not None else "-",
                f"{rate:,.0f}" if rate else "-",
                _mb(r.peak_tree_bytes),
                _mb(r.peak_process_bytes),
                str(r.processes or "-"),
                r.note,
            )
        )
    return out


def console_table(results: Sequence[StageResult]) -> str:
    rows = [HEADER, *rows_of(results)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER) - 1)]
    lines = []
    for k, r in enumerate(rows):
        lines.append(
            "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) + "  " + r[-1]
        )
        if k == 0:
            lines.append("  ".join("-" * w for w in widths) + "  ----")
    return "\n".join(lines)


def markdown_section(
    results: Sequence[StageResult], machine: dict[str, str], params: dict[str, str], summary: Sequence[str]
) -> str:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    md = [f"## Run {stamp}", ""]
    md += [f"- **{k}**: {v}" for k, v in {**params, **machine}.items()]
    md += ["", "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    md += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows_of(results)]
    if summary:
        md += [""] + [f"- {s}" for s in summary]
    return "\n".join(md) + "\n"


def append(path: Path, section: str, preamble: str | None = None) -> None:
    """Append ``section``; a new file starts with ``preamble``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    existing = path.read_text(encoding="utf-8") if path.exists() else (preamble or "")
    if existing and not existing.endswith("\n\n"):
        existing = existing.rstrip("\n") + "\n\n"
    path.write_text(existing + section, encoding="utf-8")
