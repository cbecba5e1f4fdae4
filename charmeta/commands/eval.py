"""``charmeta eval``: accuracy per core attribute on a labeled JSONL set."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from charmeta.errors import ConfigError

DEFAULT_SET = Path(__file__).resolve().parents[2] / "tests" / "data" / "dev_set.jsonl"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="accuracy of the extractor on a labeled set (default: the dev set)")
    p.add_argument("--data", type=Path, default=DEFAULT_SET, help="labeled JSONL (default: tests/data/dev_set.jsonl)")
    p.add_argument("--failures", action="store_true", help="also print every wrong value with its evidence")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from charmeta.evaluation import evaluate, format_report, load_rows

    if not args.data.exists():
        raise ConfigError(f"labeled set {args.data} not found; pass --data PATH")
    rep = evaluate(load_rows(args.data))
    print(format_report(rep))
    if args.failures:
        for f in rep.failures:
            print(json.dumps(f, ensure_ascii=False), file=sys.stdout)
    return 0
