"""Plots of the drift check: a partition's value shares beside the reference's, per flagged attribute.

Written as a PNG under ``<root>/quality/`` and linked from the check's metadata, so an operator
sees *what* moved without opening the data. matplotlib with the Agg backend (no display)."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence

from charmeta.quality.drift import Finding, Profile


def drift_plot(
    folder: str, findings: Sequence[Finding], profiles: Mapping[str, Profile], reference: Profile | None
) -> str | None:
    """One figure, a panel per (partition, attribute) flagged (at most 6): here vs reference shares.
    Returns the PNG path, or None when matplotlib is missing or nothing can be drawn."""
    if reference is None or not findings:
        return None
    try:
        # a Figure, not pyplot: matplotlib.use("Agg") would switch the backend of the whole process
        from matplotlib.figure import Figure
    except ImportError:
        return None
    pairs: list[tuple[str, str]] = []
    for f in findings:
        if (f.partition, f.attribute) not in pairs and f.partition in profiles:
            pairs.append((f.partition, f.attribute))
    pairs = pairs[:6]
    if not pairs:
        return None
    fig = Figure(figsize=(8, 2.6 * len(pairs)))
    axes = fig.subplots(len(pairs), 1, squeeze=False)
    for ax, (part, attr) in zip(axes[:, 0], pairs, strict=False):
        here, _ = profiles[part].shares(attr, known_only=False)
        ref, _ = reference.shares(attr, known_only=False)
        values = sorted(set(here) | set(ref), key=lambda v: -(here.get(v, 0.0) + ref.get(v, 0.0)))[:12]
        x = range(len(values))
        ax.bar([i - 0.2 for i in x], [ref.get(v, 0.0) for v in values], width=0.4, label="reference")
        ax.bar([i + 0.2 for i in x], [here.get(v, 0.0) for v in values], width=0.4, label=part[:40])
        ax.set_xticks(list(x), values, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("share")
        ax.set_title(f"{attr}: {part}", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"label_distribution-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.png")
    fig.savefig(path, dpi=80)
    return path
