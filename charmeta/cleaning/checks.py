"""The cleaning checks' verdicts, Dagster-free: duplicate rate, agreement trend, conflict rate.

Each returns ``(passed, metadata)``; the Dagster checks only wrap them (severity WARN).
Thresholds come from the policy's ``checks`` section. The agreement check compares with
the previous build's distribution, kept in ``<root>/cleaning/agreement_history.json``
(last 50 builds), so a shard that brings mislabelled or merged characters shows up as a
drop even when the absolute level is still fine.
"""

from __future__ import annotations

import json
import os
from typing import Any

from charmeta.cleaning.config import CleaningPolicy, load_policy
from charmeta.cleaning.profiles import CLEAN_DIR

HISTORY = "agreement_history.json"


def duplicate_rate_verdict(stats: dict[str, Any], policy: CleaningPolicy | None = None) -> tuple[bool, dict[str, Any]]:
    policy = policy or load_policy()
    limit = policy.checks.get("max_duplicate_rate", 0.2)
    rate = float(stats.get("duplicate_rate", 0.0))
    return rate <= limit, {
        "duplicate_rate": rate,
        "max_duplicate_rate": limit,
        "entries": int(stats.get("entries", 0)),
        "duplicates": int(stats.get("duplicates", 0)),
        "clusters_multi": int(stats.get("clusters_multi", 0)),
    }


def agreement_verdict(
    root: str, stats: dict[str, Any], policy: CleaningPolicy | None = None, record: bool = True
) -> tuple[bool, dict[str, Any]]:
    """Passes unless the mean agreement fell more than ``max_agreement_drop`` since the previous
    recorded build, or is under ``min_mean_agreement``. ``record``: append this build."""
    policy = policy or load_policy()
    path = os.path.join(root, CLEAN_DIR, HISTORY)
    try:
        with open(path, encoding="utf-8") as fh:
            history = json.load(fh)
    except (OSError, ValueError):
        history = []
    mean = stats.get("mean_agreement")
    prev = next((h["mean_agreement"] for h in reversed(history) if h.get("mean_agreement") is not None), None)
    drop = round(prev - mean, 6) if (prev is not None and mean is not None) else 0.0
    floor = policy.checks.get("min_mean_agreement", 0.6)
    max_drop = policy.checks.get("max_agreement_drop", 0.05)
    passed = mean is None or (drop <= max_drop and mean >= floor)
    if record:
        history = (history + [{"mean_agreement": mean, "deciles": stats.get("agreement_deciles", [])}])[-50:]
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path + ".tmp", "w", encoding="utf-8") as fh:
            json.dump(history, fh)
        os.replace(path + ".tmp", path)
    return passed, {
        "mean_agreement": mean,
        "previous_mean_agreement": prev,
        "drop": drop,
        "max_agreement_drop": max_drop,
        "min_mean_agreement": floor,
        "agreement_deciles": stats.get("agreement_deciles", []),
        "characters": stats.get("characters", 0),
        "consensus_pairs": stats.get("consensus_pairs", 0),
    }


def conflict_verdict(
    summary: dict[str, Any], named: int, policy: CleaningPolicy | None = None
) -> tuple[bool, dict[str, Any]]:
    policy = policy or load_policy()
    limit = policy.checks.get("max_conflict_rate", 0.05)
    conflicts = int(summary.get("identity_conflicts", 0))
    rate = conflicts / named if named else 0.0
    return rate <= limit, {
        "identity_conflicts": conflicts,
        "named_entries": named,
        "conflict_rate": round(rate, 6),
        "max_conflict_rate": limit,
        "fills": int(summary.get("fills", 0)),
        "identity_excluded": int(summary.get("identity_excluded", 0)),
        "duplicates_dropped": int(summary.get("duplicates_dropped", 0)),
    }


def named_entries(root: str, keys: list[str]) -> int:
    """Single-character entries over the parts (their markers count them)."""
    from charmeta.cleaning.parts import part_paths

    n = 0
    for k in keys:
        try:
            with open(part_paths(root, k)[2], encoding="utf-8") as fh:
                n += int(json.load(fh).get("named", 0))
        except (OSError, ValueError):
            pass
    return n
