"""``charmeta inspect SOURCE``: what discovery finds and how each format will be read (no Dagster)."""

from __future__ import annotations

import argparse
import json
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "inspect", help="show how a source will be read: files by format, partitions, fields, a sample row"
    )
    p.add_argument("source", help="folder, file, glob or hf://datasets/<org>/<name>/<path>")
    p.add_argument("--shard-rows", type=int, default=None, help="rows per partition (default 200000)")
    p.add_argument("--text-field", default="", help="text column/field (default: auto-detect)")
    p.add_argument("--image-field", default="", help="image column of Parquet/Arrow tables (default: auto-detect)")
    p.add_argument("--config", default="", help="README config to follow (default: the card's default config)")
    p.add_argument("--no-sample", action="store_true", help="do not read a sample row per format")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from charmeta.sources import DEFAULT_SHARD_ROWS, Source
    from charmeta.sources.inspect import describe, render

    source = Source(
        args.source,
        shard_rows=args.shard_rows or DEFAULT_SHARD_ROWS,
        text_field=args.text_field or None,
        image_field=args.image_field or None,
        config=args.config or None,
    )
    report = describe(source, samples=not args.no_sample)
    if args.json:
        print(json.dumps(report, indent=1, default=str))
    else:
        print(render(report))
    if not report["partitions"]:
        print("charmeta inspect: no readable files found in this source", file=sys.stderr)
        return 1
    return 0
