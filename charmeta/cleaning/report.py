"""The consistency report: Markdown + PNG plots beside the export.

``<root>/export/consistency_report.md`` with ``consistency_*.png``: duplicate rate and
cluster sizes, per-character agreement distribution, fills and conflicts per attribute,
the characters with the most conflicts. Plots through matplotlib's Agg backend (no
display); the figures read only the small tables (profiles, clusters, identity counts).
"""

from __future__ import annotations

import glob
import json
import os
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

REPORT_FILE = "consistency_report.md"


def report_path(root: str) -> str:
    return os.path.join(root, "export", REPORT_FILE)


def _plots(root: str, out_dir: str) -> dict[str, str]:
    # Figure objects, not pyplot: pyplot would need matplotlib.use("Agg"), which switches the backend
    # of the whole process (a notebook running the pipeline in its kernel lost its inline plots).
    from matplotlib.figure import Figure

    from charmeta.cleaning.dedup import read_clusters
    from charmeta.cleaning.profiles import read_profiles

    files: dict[str, str] = {}
    prof = read_profiles(root)
    agree = prof.column("agreement").to_numpy() if prof.num_rows else np.zeros(0)
    support = prof.column("support").to_numpy() if prof.num_rows else np.zeros(0)
    fig = Figure(figsize=(6, 3.5))
    ax = fig.subplots()
    ax.hist(agree[support >= 3], bins=20, range=(0, 1), color="#4477aa")
    ax.set_xlabel("agreement of the canonical value")
    ax.set_ylabel("character x attribute pairs (support >= 3)")
    ax.set_title("Per-character agreement")
    fig.tight_layout()
    files["agreement"] = os.path.join(out_dir, "consistency_agreement.png")
    fig.savefig(files["agreement"], dpi=90)

    clusters = read_clusters(root)
    sizes = clusters.column("cluster_size").to_numpy() if clusters.num_rows else np.zeros(0, int)
    fig = Figure(figsize=(6, 3.5))
    ax = fig.subplots()
    if len(sizes):
        ax.hist(np.minimum(sizes, 20), bins=np.arange(1.5, 21.5, 1), color="#aa7744")
    ax.set_xlabel("cluster size (20 = 20 or more)")
    ax.set_ylabel("entries in clusters")
    ax.set_title("Duplicate clusters")
    fig.tight_layout()
    files["clusters"] = os.path.join(out_dir, "consistency_clusters.png")
    fig.savefig(files["clusters"], dpi=90)
    return files


def _identity_counts(root: str) -> tuple[dict[str, dict[str, int]], list[tuple[str, int]]]:
    import duckdb

    files = glob.glob(os.path.join(root, "cleaning", "identity", "*.parquet"))
    if not files:
        return {}, []
    con = duckdb.connect()
    try:
        src = "read_parquet([" + ", ".join("'" + f.replace("'", "''") + "'" for f in files) + "])"
        by: dict[str, dict[str, int]] = {}
        for attr, action, n in con.execute(
            f"SELECT coalesce(attribute, '-'), action, count(*) FROM {src} GROUP BY ALL ORDER BY ALL"
        ).fetchall():
            by.setdefault(attr, {})[action] = int(n)
        top = con.execute(
            f"SELECT character, count(*) n FROM {src} WHERE action = 'identity_conflict' "
            "GROUP BY 1 ORDER BY n DESC, 1 LIMIT 10"
        ).fetchall()
    finally:
        con.close()
    return by, [(str(c), int(n)) for c, n in top]


def start_plots(root: str) -> Future[dict[str, str]]:
    """Draw the plots in a thread (they read the profiles and the clusters only), for
    ``write_report(..., plots=)``: the callers start them before the apply step, whose
    DuckDB / Arrow work releases the GIL, instead of spending ~0.5-1 s after it."""
    out_dir = os.path.join(root, "export")
    os.makedirs(out_dir, exist_ok=True)
    pool = ThreadPoolExecutor(1, thread_name_prefix="charmeta-report")
    try:
        return pool.submit(_plots, root, out_dir)
    finally:
        pool.shutdown(wait=False)


def write_report(root: str, summary: dict[str, Any], plots: Future[dict[str, str]] | None = None) -> str:
    """Write the Markdown report (+ plots, drawn now unless ``plots`` = ``start_plots(root)``)
    under ``<root>/export``; returns its path."""
    out_dir = os.path.join(root, "export")
    os.makedirs(out_dir, exist_ok=True)
    drawn = plots.result() if plots is not None else _plots(root, out_dir)
    by_attr, top = _identity_counts(root)
    cl, pr, ap = summary.get("clusters"), summary.get("profiles", {}), summary.get("apply", {})
    if cl is None:  # the Dagster step of the report: the clusters' stats as dedup_clusters wrote them
        try:
            with open(os.path.join(root, "cleaning", "dedup_stats.json"), encoding="utf-8") as fh:
                cl = json.load(fh)
        except (OSError, ValueError):
            cl = {}
    lines = [
        "# Consistency report",
        "",
        "## Duplicates",
        "",
        f"- entries (not invalid): {cl.get('entries', 0)}",
        f"- clusters: {cl.get('clusters', 0)} ({cl.get('clusters_multi', 0)} with 2+ members)",
        f"- duplicates: {cl.get('duplicates', 0)} (rate {cl.get('duplicate_rate', 0.0):.4%}); "
        f"exact links {cl.get('exact_links', 0)}, near links {cl.get('near_links', 0)}, "
        f"image links {cl.get('image_links', 0)}",
        f"- ok entries left out of the export as duplicates: {ap.get('duplicates_dropped', 0)}",
        "",
        f"![cluster sizes]({os.path.basename(drawn['clusters'])})",
        "",
        "## Character profiles",
        "",
        f"- characters: {pr.get('characters', 0)}; character x attribute pairs: {pr.get('pairs', 0)}; "
        f"with a consensus: {pr.get('consensus_pairs', 0)}",
        f"- agreement deciles (pairs with support >= 3): {pr.get('agreement_deciles', [])}",
        "",
        f"![agreement]({os.path.basename(drawn['agreement'])})",
        "",
        "## Identity",
        "",
        f"- fills: {ap.get('fills', 0)}; identity conflicts (flagged, kept): {ap.get('identity_conflicts', 0)}; "
        f"moved into excluded by the safety re-check: {ap.get('identity_excluded', 0)}",
        "",
        "| attribute | fill | identity_conflict | identity_excluded | duplicate |",
        "|---|---|---|---|---|",
    ]
    for attr, acts in sorted(by_attr.items()):
        lines.append(
            f"| {attr} | {acts.get('fill', 0)} | {acts.get('identity_conflict', 0)} | "
            f"{acts.get('identity_excluded', 0)} | {acts.get('duplicate', 0)} |"
        )
    if top:
        lines += ["", "Characters with the most conflicts:", ""]
        lines += [f"- {c}: {n}" for c, n in top]
    path = report_path(root)
    with open(path + ".tmp", "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    os.replace(path + ".tmp", path)
    return path
