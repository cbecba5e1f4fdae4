"""``charmeta synth``: write N synthetic caption rows in K shards (Parquet, JSONL or WebDataset)."""

from __future__ import annotations

import argparse
import json
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("synth", help="generate realistic synthetic caption shards")
    p.add_argument("--rows", type=int, required=True, help="total rows to write")
    p.add_argument("--shards", type=int, default=1, help="number of shard files (default 1)")
    p.add_argument("--output", required=True, help="output folder (created if missing)")
    p.add_argument("--format", default="parquet", choices=("parquet", "jsonl", "webdataset"))
    p.add_argument("--seed", type=int, default=0, help="same seed, same rows (default 0)")
    p.add_argument(
        "--zipf", type=float, default=0.0, help="characters ~ 1/rank^ZIPF (default 0: uniform); 1.0 is realistic"
    )
    p.add_argument(
        "--near-dups", type=float, default=0.0, help="share of tag rows reposting an earlier row (default 0)"
    )
    p.add_argument("--workers", type=int, default=None, help="processes (default: min(shards, CPUs))")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Imported here: numpy is only needed when the command runs.
    from charmeta.synth import generate
    from charmeta.synth.captions import Realism

    s = generate(
        args.rows,
        args.shards,
        args.output,
        args.format,
        args.seed,
        workers=args.workers,
        realism=Realism(zipf=args.zipf, near_dups=args.near_dups),
    )
    print(
        f"synth: wrote {s.rows:,} rows in {s.shards} {s.format} shard(s), {s.bytes / 1e6:,.1f} MB, "
        f"{s.seconds:.1f}s, {s.rows_per_s:,.0f} rows/s ({s.invalid} invalid, {s.multi_character} multi-character) -> {s.output}",
        file=sys.stderr,
    )
    print(json.dumps({k: v for k, v in s.to_dict().items() if k != "files"}))
    return 0
