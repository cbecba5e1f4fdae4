"""Plan shards, run them (in a process pool when it helps) and summarise.

Each shard has its own generator seeded by ``(seed, shard)`` and its own slice
of the global row index, so the output is identical whether shards run in one
process or many, in any order.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from charmeta.errors import ConfigError
from charmeta.synth.captions import NO_REALISM, VALID, Realism, build_chunk, build_pools
from charmeta.synth.writers import FORMAT_EXT, open_shard

#: Rows per chunk = per Parquet row group; bounds memory per worker (~50 MB).
CHUNK_ROWS = 50_000

_progress: Any = None  # multiprocessing.Value shared with pool workers


@dataclass
class ShardResult:
    shard: int
    path: str
    rows: int
    bytes: int
    invalid: int
    multi: int


@dataclass
class SynthSummary:
    """What ``generate`` wrote; printed by the CLI and kept by the bench."""

    rows: int
    shards: int
    format: str
    seed: int
    output: str
    bytes: int
    seconds: float
    invalid: int
    multi_character: int
    files: list[str] = field(default_factory=list)

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("inf")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["rows_per_s"] = round(self.rows_per_s, 1)
        return d


def shard_plan(rows: int, shards: int) -> list[tuple[int, int, int]]:
    """``(shard, global_start, n_rows)`` per shard; the first ``rows % shards`` get one more."""
    base, extra = divmod(rows, shards)
    plan, start = [], 0
    for s in range(shards):
        n = base + (1 if s < extra else 0)
        plan.append((s, start, n))
        start += n
    return plan


def write_shard(
    fmt: str,
    out_dir: str,
    seed: int,
    shard: int,
    global_start: int,
    n: int,
    total: int,
    chunk_rows: int = CHUNK_ROWS,
    realism: Realism = NO_REALISM,
) -> ShardResult:
    """Generate and write one shard, chunk by chunk."""
    rng = np.random.default_rng([seed, shard])
    pools = build_pools()
    writer = open_shard(fmt, Path(out_dir), shard)
    invalid = multi = 0
    done = 0
    while done < n:
        k = min(chunk_rows, n - done)
        chunk = build_chunk(rng, pools, k, global_start + done, shard, done, total, realism)
        writer.write(chunk)
        invalid += int((chunk.kind != VALID).sum())
        multi += int((chunk.multi & (chunk.kind == VALID)).sum())
        done += k
        if _progress is not None:
            with _progress.get_lock():
                _progress.value += k
    path = writer.close()
    return ShardResult(shard, str(path), n, path.stat().st_size, invalid, multi)


def _init_worker(counter: Any) -> None:
    global _progress
    _progress = counter


def generate(
    rows: int,
    shards: int,
    output: str | Path,
    fmt: str = "parquet",
    seed: int = 0,
    workers: int | None = None,
    chunk_rows: int = CHUNK_ROWS,
    log: Callable[[str], None] | None = None,
    realism: Realism = NO_REALISM,
) -> SynthSummary:
    """Write ``rows`` rows in ``shards`` files of format ``fmt`` under ``output``."""
    if rows < 0:
        raise ConfigError(f"--rows must be >= 0, got {rows}")
    if shards < 1:
        raise ConfigError(f"--shards must be >= 1, got {shards}")
    if fmt not in FORMAT_EXT:
        raise ConfigError(f"--format must be one of {', '.join(FORMAT_EXT)}, got {fmt!r}")
    if chunk_rows < 1:
        raise ConfigError(f"chunk_rows must be >= 1, got {chunk_rows}")
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    workers = workers or min(shards, os.cpu_count() or 1)
    plan = shard_plan(rows, shards)
    t0 = time.perf_counter()
    counter = mp.Value("q", 0)
    _init_worker(counter)
    results: list[ShardResult] = []

    def report() -> None:
        el = time.perf_counter() - t0
        done = counter.value
        log(
            f"synth: {done:,}/{rows:,} rows, {len(results)}/{shards} shards, {el:.1f}s, {done / max(el, 1e-9):,.0f} rows/s"
        )

    if workers <= 1 or shards == 1:
        for s, start, n in plan:
            results.append(write_shard(fmt, str(out), seed, s, start, n, rows, chunk_rows, realism))
            report()
    else:
        with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker, initargs=(counter,)) as pool:
            pending = {
                pool.submit(write_shard, fmt, str(out), seed, s, start, n, rows, chunk_rows, realism)
                for s, start, n in plan
            }
            while pending:
                finished, pending = wait(pending, timeout=2.0, return_when=FIRST_COMPLETED)
                results.extend(f.result() for f in finished)
                report()
    _init_worker(None)
    results.sort(key=lambda r: r.shard)
    return SynthSummary(
        rows=sum(r.rows for r in results),
        shards=shards,
        format=fmt,
        seed=seed,
        output=str(out),
        bytes=sum(r.bytes for r in results),
        seconds=time.perf_counter() - t0,
        invalid=sum(r.invalid for r in results),
        multi_character=sum(r.multi for r in results),
        files=[r.path for r in results],
    )
