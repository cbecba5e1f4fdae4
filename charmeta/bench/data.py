"""Bench input: synthetic shards generated once per (rows, seed, format) and reused.

A manifest written *next to* the data folder (never inside it, where a source
loader would try to read it) records what was generated; a later bench with the
same parameters reuses the shards if every file is still there with its size.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from charmeta.synth import generate


def _manifest(folder: Path) -> Path:
    return folder.with_name(folder.name + ".manifest.json")


def _intact(man: dict[str, Any]) -> bool:
    return all(Path(p).is_file() and Path(p).stat().st_size == size for p, size in man.get("files", {}).items())


def ensure_synth(
    workdir: Path,
    rows: int,
    seed: int,
    fmt: str = "parquet",
    shards: int | None = None,
    log: Callable[[str], None] | None = None,
) -> tuple[Path, bool]:
    """``(folder, reused)``: the synthetic shards for ``rows``/``seed``/``fmt`` under ``workdir``."""
    shards = shards or max(1, min(64, math.ceil(rows / 100_000)))
    folder = workdir / f"synth-{fmt}-{rows}-k{shards}-s{seed}"
    man_path = _manifest(folder)
    want = {"rows": rows, "seed": seed, "format": fmt, "shards": shards}
    if man_path.exists():
        try:
            man = json.loads(man_path.read_text())
            if {k: man.get(k) for k in want} == want and _intact(man):
                return folder, True
        except (OSError, ValueError):
            pass
    s = generate(rows, shards, folder, fmt, seed, log=log)
    files = {p: Path(p).stat().st_size for p in s.files}
    man_path.write_text(json.dumps({**want, "files": files, "bytes": s.bytes, "seconds": s.seconds}, indent=1))
    return folder, False
