"""``charmeta eval``: accuracy per core attribute on the labeled sets (``make eval``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from charmeta.errors import ConfigError

DATA_DIR = Path(__file__).resolve().parents[2] / "tests" / "data"
DEFAULT_SET = DATA_DIR / "dev_set.jsonl"
#: The sets ``charmeta eval`` reads by default: name -> file under tests/data.
EVAL_SETS = {"dev": "dev_set.jsonl", "prompt": "prompt_set.jsonl", "prose": "prose_set.jsonl"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="accuracy of the extractor on the labeled sets (dev, prompt-style, prose)")
    p.add_argument("--data", type=Path, help="one labeled JSONL instead of the bundled sets (old one-set table)")
    p.add_argument(
        "--failures",
        action="store_true",
        help="also print every wrong value with its evidence (tuned halves and the dev set only)",
    )
    p.add_argument(
        "--untouched-failures",
        action="store_true",
        help="also print the failures of the untouched halves (look only when tuning is over)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from charmeta.evaluation import evaluate, evaluate_suite, format_report, format_suite, load_rows

    if args.data is not None:
        if not args.data.exists():
            raise ConfigError(f"labeled set {args.data} not found; pass --data PATH")
        rep = evaluate(load_rows(args.data))
        print(format_report(rep))
        failures = rep.failures if args.failures else []
    else:
        sets = {}
        for name, file in EVAL_SETS.items():
            path = DATA_DIR / file
            if not path.exists():
                raise ConfigError(f"labeled set {path} not found (run from a source checkout, or pass --data PATH)")
            sets[name] = load_rows(path)
        columns = evaluate_suite(sets)
        print(format_suite(columns))
        failures = []
        for col in columns:
            untouched = col.name.endswith("untouched")
            if (args.failures and not untouched) or (args.untouched_failures and untouched):
                failures += [{"set": col.name, **f} for f in col.report.failures]
    for f in failures:
        print(json.dumps(f, ensure_ascii=False), file=sys.stdout)
    return 0
