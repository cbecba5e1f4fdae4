"""The cleaning steps end to end, and what the export concatenates.

``build_parts`` -> ``build_profiles`` + ``build_clusters`` -> ``apply`` (identity fills,
conflicts, safety re-check, duplicate drops, per-partition cleaned lines) -> the export
concatenates, per partition, either its cleaned lines or its untouched ``export_parts``
lines. The Dagster assets ``dedup_clusters``, ``character_profiles`` and
``identity_consistency`` call these same functions; ``ensure_clean`` (used by
``export_dataset``) runs whatever is missing or stale, so the CLI, the UI and a plain
library call export the same records.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from charmeta import duck
from charmeta.cleaning import consistency, dedup, parts, profiles
from charmeta.cleaning.config import CleaningPolicy, load_policy

log = logging.getLogger("charmeta.cleaning")

STATE_FILE = "state.json"
#: Parts built concurrently when the workers did not build them ahead (DuckDB releases the GIL).
BUILD_THREADS = 2


def _state_path(root: str) -> str:
    return os.path.join(root, profiles.CLEAN_DIR, STATE_FILE)


def build_parts(root: str, keys: list[str], policy: CleaningPolicy | None = None) -> dict[str, Any]:
    """Every partition's cleaning part, building the missing / stale ones."""
    policy = policy or load_policy()
    keys = [k for k in keys if os.path.exists(os.path.join(root, "validated_records", k + ".parquet"))]
    stale = [k for k in keys if parts.read_part(root, k, policy) is None]
    t0 = time.perf_counter()
    if stale:
        log.info(json.dumps({"event": "cleaning_parts", "building": len(stale), "of": len(keys)}))
        con = duck.connect()
        try:

            def one(k: str) -> None:
                cur = con.cursor()
                try:
                    cur.execute("SET threads = 1")
                    parts.build_part(root, k, policy, cur)
                finally:
                    cur.close()

            with ThreadPoolExecutor(BUILD_THREADS) as pool:
                list(pool.map(one, stale))
        finally:
            con.close()
    return {"partitions": len(keys), "built": len(stale), "seconds": round(time.perf_counter() - t0, 3)}


def fingerprint(root: str, keys: list[str], policy: CleaningPolicy) -> str:
    """What the global steps depend on: the parts' markers (validated identities) and the policy."""
    import hashlib

    h = hashlib.sha256(policy.digest.encode())
    for k in keys:
        try:
            with open(parts.part_paths(root, k)[2], "rb") as fh:
                h.update(fh.read())
        except OSError:
            h.update(b"-")
    return h.hexdigest()


def apply(root: str, keys: list[str], policy: CleaningPolicy | None = None) -> dict[str, Any]:
    """Identity fills / conflicts / exclusions and duplicate drops for every partition."""
    policy = policy or load_policy()
    t0 = time.perf_counter()
    wide, clusters = consistency.load_inputs(root, policy)
    con = duck.connect()
    todo = [k for k in keys if os.path.exists(parts.part_paths(root, k)[0])]

    def one(k: str) -> dict[str, Any]:
        cur = con.cursor()  # one cursor per thread: DuckDB releases the GIL while it works
        try:
            cur.execute("SET threads = 1")
            return consistency.apply_partition(root, k, wide, consistency.partition_dups(clusters, k), policy, cur)
        finally:
            cur.close()

    try:
        with ThreadPoolExecutor(BUILD_THREADS) as pool:
            results: list[dict[str, Any]] = list(pool.map(one, todo))
    finally:
        con.close()
    totals: dict[str, int] = {}
    fills: dict[str, int] = {}
    for r in results:
        for a, n in r["counts"].items():
            totals[a] = totals.get(a, 0) + n
        for a, n in r["fills"].items():
            fills[a] = fills.get(a, 0) + n
    summary = {
        "fills": totals.get("fill", 0),
        "fills_by_attribute": fills,
        "identity_conflicts": totals.get("identity_conflict", 0),
        "identity_excluded": totals.get("identity_excluded", 0),
        "duplicates_dropped": totals.get("duplicate", 0),
        "partitions_rewritten": sum(1 for r in results if r["lines_path"]),
        "seconds": round(time.perf_counter() - t0, 3),
    }
    state = {
        "fingerprint": fingerprint(root, keys, policy),
        "keys": keys,
        "summary": summary,
        "lines": {r["key"]: [r["lines_path"], r.get("lines"), r.get("bytes")] for r in results if r["lines_path"]},
    }
    path = _state_path(root)
    with open(path + ".tmp", "w", encoding="utf-8") as fh:
        json.dump(state, fh)
    os.replace(path + ".tmp", path)
    return summary


def ensure_clean(root: str, keys: list[str], policy: CleaningPolicy | None = None) -> dict[str, Any]:
    """Run the cleaning steps unless their state matches the current parts; returns the state."""
    policy = policy or load_policy()
    build_parts(root, keys, policy)
    fp = fingerprint(root, keys, policy)
    try:
        with open(_state_path(root), encoding="utf-8") as fh:
            state = json.load(fh)
        if state.get("fingerprint") == fp and state.get("keys") == keys:
            return state
    except (OSError, ValueError):
        pass
    run_all(root, keys, policy, skip_parts=True)
    with open(_state_path(root), encoding="utf-8") as fh:
        return json.load(fh)


def run_all(
    root: str, keys: list[str], policy: CleaningPolicy | None = None, skip_parts: bool = False
) -> dict[str, Any]:
    """Parts, profiles, clusters, apply, report: the whole cleaning with timings."""
    from charmeta.cleaning.report import start_plots, write_report

    policy = policy or load_policy()
    out: dict[str, Any] = {}
    t = time.perf_counter()
    if not skip_parts:
        out["parts"] = build_parts(root, keys, policy)
    os.makedirs(os.path.join(root, profiles.CLEAN_DIR), exist_ok=True)
    t1 = time.perf_counter()
    out["profiles"] = profiles.build_profiles(root, keys, policy)
    t2 = time.perf_counter()
    out["clusters"] = dedup.build_clusters(root, keys, policy)
    t3 = time.perf_counter()
    plots = start_plots(root)  # beside the apply step (the plots read profiles and clusters only)
    out["apply"] = apply(root, keys, policy)
    t4 = time.perf_counter()
    out["report"] = write_report(root, out, plots)
    out["seconds"] = {
        "parts": round(t1 - t, 3),
        "profiles": round(t2 - t1, 3),
        "clusters": round(t3 - t2, 3),
        "apply": round(t4 - t3, 3),
        "report": round(time.perf_counter() - t4, 3),
    }
    with open(os.path.join(root, profiles.CLEAN_DIR, "summary.json"), "w", encoding="utf-8") as fh:
        json.dump(out, fh, indent=2)
    return out


def export_sources(
    metas: list[dict[str, Any]], state: dict[str, Any], part_lines: Callable[[str], str]
) -> list[tuple[str, int, int]]:
    """``(lines file, bytes, lines)`` to concatenate per partition: cleaned lines where the
    partition has decisions, else its ``export_parts`` lines (``part_lines(key)``: the export
    passes its layout's path, so the cleaning never imports the pipeline that calls it)."""
    out = []
    cleaned = state.get("lines", {})
    for meta in metas:
        got = cleaned.get(meta["key"])
        if got and got[0] and os.path.exists(got[0]) and os.path.getsize(got[0]) == got[2]:
            out.append((got[0], int(got[2]), int(got[1])))
        else:
            out.append((part_lines(meta["key"]), int(meta["bytes"]), int(meta["lines"])))
    return out
