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


def containers_stage(path: str) -> dict[str, Any]:
    """Read + decode every image of one container layout (``charmeta.bench.containers``)."""
    from charmeta.bench.containers import read_and_decode

    r = read_and_decode(path)
    return {"available": True, **r, "rows": r["images"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m charmeta.bench.worker")
    p.add_argument("stage", choices=("floor", "core", "containers", "decode"))
    p.add_argument("--glob", required=True)
    p.add_argument("--out", default="")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--batch-rows", type=int, default=32_768)
    p.add_argument("--ontology", choices=("engine", "json"), default="engine", help="the floor's tag table")
    a = p.parse_args(argv)
    if a.stage == "floor":
        res = floor_stage(a.glob, a.out, a.threads, a.ontology)
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
