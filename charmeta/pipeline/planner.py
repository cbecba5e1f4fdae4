"""What to run: pending partitions, their fingerprints, and run ranges - shared by every launcher.

``charmeta run``, the shard sensor and a run launched from the UI all need the
same answers: which shards are not finished for the current code and backend
(commit marker + fingerprint, from the files alone - no Dagster), how to cut
them into runs, whether a step is small enough to run in-process, and the
fingerprint of the whole input that the manifest is stamped with. They used to
compute these each in their own way (the sensor cut unbalanced ranges and never
looked at fingerprints); now they call this module.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from charmeta.pipeline.graph import UPSTREAM, VALIDATED, effective_embedder, stage_fingerprint
from charmeta.pipeline.layout import Layout
from charmeta.sources import read_registry

#: Below this many rows in a step, partitions run in-process (no pool start-up).
DEFAULT_POOL_MIN_ROWS = 20_000


def pool_min_rows() -> int:
    """The ``pool_min_rows`` setting (``CHARMETA_POOL_MIN_ROWS``, read when asked, not at import)."""
    from charmeta.settings import Settings

    return Settings.load().pool_min_rows


@dataclass
class Plan:
    """The partitions of a source and what is left to do for a backend + embedder."""

    keys: list[str]
    fingerprints: dict[str, str]  # key -> validated_records fingerprint
    todo: list[str]  # keys in ``keys`` order whose validated output is missing or stale
    backend_id: str = ""
    embedder: str = "none"
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def skipped(self) -> int:
        return len(self.keys) - len(self.todo)

    def inputs_fingerprint(self) -> str:
        """One hash of every partition's fingerprint: the manifest says which input it describes."""
        return inputs_fingerprint(self.keys, self.fingerprints)


def validated_fingerprint(spec: Any, backend_id: str, embedder: str) -> str:
    """The fingerprint ``validated_records`` of ``spec`` must carry (``backend_id``: the
    extractor's identity, ``stages.backend_identity``)."""
    return stage_fingerprint(VALIDATED, spec.fingerprint, backend_id, effective_embedder(spec, embedder))


def plan(root: str, specs: Sequence[Any], backend_id: str, embedder: str = "none", force: bool = False) -> Plan:
    """The pending partitions of ``specs`` under ``root``: every one when ``force``."""
    layout = Layout(root)
    fps = {s.key: validated_fingerprint(s, backend_id, embedder) for s in specs}
    keys = [s.key for s in specs]
    todo = list(keys) if force else [k for k in keys if not layout.is_done(VALIDATED, k, fps[k])]
    return Plan(keys=keys, fingerprints=fps, todo=todo, backend_id=backend_id, embedder=embedder)


def inputs_fingerprint(keys: Iterable[str], fingerprints: dict[str, str]) -> str:
    return hashlib.sha1("|".join(f"{k}={fingerprints[k]}" for k in keys).encode()).hexdigest()[:16]


def run_ranges(ordered: Sequence[str], todo: Iterable[str], per_run: int) -> list[list[str]]:
    """Split ``todo`` into runs of consecutive keys in the instance's partition order, at most
    ``per_run`` each and balanced (a partition range must not include keys not to run)."""
    todo = set(todo)
    chunks: list[list[str]] = []
    cur: list[str] = []
    for k in ordered:
        if k in todo:
            cur.append(k)
        elif cur:
            chunks.append(cur)
            cur = []
    if cur:
        chunks.append(cur)
    return [part for chunk in chunks for part in balanced(chunk, per_run)]


def balanced(chunk: list[str], per_run: int) -> list[list[str]]:
    """Re-cut a run of keys into equal-sized runs (25 -> 7/6/6/6, not 8/8/8/1), so no
    run ends with one lone partition keeping a single core busy while the rest idle."""
    if len(chunk) <= per_run:
        return [chunk]
    n_runs = -(-len(chunk) // per_run)
    size, extra = divmod(len(chunk), n_runs)
    out, start = [], 0
    for i in range(n_runs):
        end = start + size + (1 if i < extra else 0)
        out.append(chunk[start:end])
        start = end
    return out


def estimate_rows(stage: str, root: str, keys: list[str]) -> int:
    """Rows a step will touch: upstream stats when known, else the shard's row range
    or its file size (about 200 bytes per caption); unknown counts as large."""
    store = Layout(root)
    total = 0
    up = UPSTREAM[stage]
    floor = pool_min_rows()
    for k in keys:
        stats = store.stats(up, k) if up else None
        if stats and stats.get("rows") is not None:
            total += int(stats["rows"])
            continue
        spec = read_registry(store.root, k)
        if spec.stop is not None:
            total += spec.stop - spec.start
        elif spec.uri.startswith("file://"):
            try:
                total += os.path.getsize(spec.uri[len("file://") :]) // 200
            except OSError:
                total += floor
        else:
            total += floor
    return total


def small_step(stage: str, root: str, keys: list[str]) -> bool:
    """Whether a step over ``keys`` is cheaper in-process than starting spawn workers."""
    return estimate_rows(stage, root, keys) < pool_min_rows()


def worth_a_pool(root: str, specs: Sequence[Any]) -> bool:
    """Whether a run will likely use the process pool: enough rows, and some shard without a
    validated output yet (a re-run of a finished dataset must not start workers)."""
    layout = Layout(root)
    floor = pool_min_rows()
    todo = [s for s in specs if not os.path.exists(layout.path(VALIDATED, s.key, ".json"))]
    rows = sum((s.stop - s.start) if s.stop is not None else floor for s in todo)
    return rows >= floor
