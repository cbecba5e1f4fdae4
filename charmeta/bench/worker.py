"""Child side of in-process bench stages: ``python -m charmeta.bench.worker STAGE ...``.

Each stage runs in its own process so its peak RSS is its own, then prints one
JSON line: ``{"available": bool, "rows": int, "seconds": float, "maxrss": int, ...}``
where ``seconds`` covers the work only (not interpreter start or model load).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from charmeta.bench.rss import self_maxrss_bytes


def floor_stage(shard_glob: str, out: str, threads: int | None, ontology: str = "engine") -> dict[str, Any]:
    """The DuckDB floor query (see ``charmeta.bench.floor``) joined to the engine's compiled
    tag index (``ontology="engine"``) or to the lighter JSON-only table (``"json"``)."""
    from charmeta.bench.floor import run_floor
    from charmeta.bench.ontology import engine_floor_ontology, load_floor_ontology

    onto, source = engine_floor_ontology() if ontology == "engine" else load_floor_ontology()
    r = run_floor(shard_glob, onto, Path(out), threads)
    return {
        "available": True,
        "rows": r.rows_in,
        "entries": r.entries_out,
        "seconds": r.seconds,
        "threads": r.threads,
        "ontology": source,
    }


def core_stage(shard_glob: str, batch_rows: int) -> dict[str, Any]:
    """``Engine.default().process_batch`` over the shards, streamed in batches, one core."""
    import glob

    import pyarrow.parquet as pq

    try:
        from charmeta.engine import Engine

        t_load = time.perf_counter()
        engine = Engine.default()
        load_s = time.perf_counter() - t_load
    except Exception as exc:  # the text extractor may not exist yet
        return {"available": False, "reason": f"{type(exc).__name__}: {exc}"}
    rows = out_rows = 0
    t0 = time.perf_counter()
    for path in sorted(glob.glob(shard_glob)):
        for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_rows, columns=["id", "text"]):
            table = engine.process_batch(batch.column(0), batch.column(1), source_shard=Path(path).name)
            rows += batch.num_rows
            out_rows += table.num_rows
    seconds = time.perf_counter() - t0
    return {"available": True, "rows": rows, "rows_out": out_rows, "seconds": seconds, "load_seconds": load_s}


def kinds_stage(labeled: str, rows: int, batch_rows: int) -> dict[str, Any]:
    """``Engine.process_batch`` over the texts of one labeled set (prompt-style or prose), cycled to
    ``rows`` entries: the per-entry reading path those kinds take (``make bench`` reports entries/s).

    The sets hold a few hundred distinct texts, so after the first pass the item and word caches
    are warm; ``first_pass_seconds`` is the one pass over the distinct texts with cold caches."""
    import itertools

    import pyarrow as pa

    from charmeta.engine import Engine

    path = Path(labeled)
    if not path.exists():
        return {"available": False, "reason": f"{path} not found (run from a source checkout)"}
    texts = [json.loads(line)["text"] for line in path.read_text("utf-8").splitlines() if line.strip()]
    engine = Engine.default()
    # one-time set-up (the batch path's arrays, lazy imports) is not part of reading these texts
    warm = ["1girl, solo, long hair", "A woman in a red coat.", "1boy, (black hair:1.2), smile, hoodie"]
    engine.process_batch(pa.array([f"x{i}" for i in range(len(warm))]), pa.array(warm))
    t0 = time.perf_counter()
    engine.process_batch(pa.array([f"w{i}" for i in range(len(texts))]), pa.array(texts))
    first = time.perf_counter() - t0
    done = 0
    cycle = itertools.cycle(texts)
    t0 = time.perf_counter()
    while done < rows:
        n = min(batch_rows, rows - done)
        batch = list(itertools.islice(cycle, n))
        engine.process_batch(pa.array([f"r{done + i}" for i in range(n)]), pa.array(batch))
        done += n
    seconds = time.perf_counter() - t0
    return {
        "available": True,
        "rows": done,
        "seconds": seconds,
        "distinct": len(texts),
        "first_pass_seconds": first,
    }


def containers_stage(path: str) -> dict[str, Any]:
    """Read + decode every image of one container layout (``charmeta.bench.containers``)."""
    from charmeta.bench.containers import read_and_decode

    r = read_and_decode(path)
    return {"available": True, **r, "rows": r["images"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m charmeta.bench.worker")
    p.add_argument("stage", choices=("floor", "core", "containers", "decode", "kinds"))
    p.add_argument("--glob", default="", help="floor / core / containers / decode: the input files")
    p.add_argument("--labeled", default="", help="kinds: a labeled JSONL whose texts are timed")
    p.add_argument("--rows", type=int, default=20_000, help="kinds: entries to time")
    p.add_argument("--out", default="")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--batch-rows", type=int, default=32_768)
    p.add_argument("--ontology", choices=("engine", "json"), default="engine", help="the floor's tag table")
    a = p.parse_args(argv)
    if a.stage == "floor":
        res = floor_stage(a.glob, a.out, a.threads, a.ontology)
    elif a.stage == "kinds":
        res = kinds_stage(a.labeled, a.rows, a.batch_rows)
    elif a.stage == "containers":
        res = containers_stage(a.glob)
    elif a.stage == "decode":
        from charmeta.bench.containers import decode_only

        r = decode_only(a.glob)
        res = {"available": True, **r}
    else:
        res = core_stage(a.glob, a.batch_rows)
    res["maxrss"] = self_maxrss_bytes()
    print(json.dumps(res), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
