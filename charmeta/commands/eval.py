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
    p.add_argument("--images", type=Path, help="folder of pictures: score the image path instead (needs --labels)")
    p.add_argument("--labels", type=Path, help="labels of --images: TOML (samples/drawings/labels.toml) or JSONL")
    p.add_argument("--captions", action="store_true", help="with --images: also read each picture's .txt caption")
    p.add_argument("--json", action="store_true", help="with --images: print the figures as one JSON object")
    p.set_defaults(func=run)


def run_images(args: argparse.Namespace) -> int:
    """Per-attribute precision / coverage and count figures of the configured image backends on labeled pictures."""
    from charmeta.images.config import ImageConfig
    from charmeta.images.evaluate import evaluate_folder, format_report

    if args.labels is None:
        raise ConfigError("--images needs --labels FILE (one entry per picture stem; see samples/drawings/labels.toml)")
    cfg = ImageConfig.from_env()
    rep = evaluate_folder(args.images, args.labels, use_captions=args.captions, config=cfg)
    if args.json:
        print(json.dumps(rep.as_dict(), indent=1))
    else:
        mode = "pixels + captions" if args.captions else "pixels only"
        print(format_report(rep, f"{args.images} ({mode}; counter {cfg.counter}, model {cfg.model})"))
    if args.failures:
        for row in rep.rows:
            print(json.dumps(row, ensure_ascii=False))
    return 0


def run(args: argparse.Namespace) -> int:
    from charmeta.evaluation import evaluate, format_report, load_rows

    if args.images is not None:
        return run_images(args)

    if not args.data.exists():
        raise ConfigError(f"labeled set {args.data} not found; pass --data PATH")
    rep = evaluate(load_rows(args.data))
    print(format_report(rep))
    if args.failures:
        for f in rep.failures:
            print(json.dumps(f, ensure_ascii=False), file=sys.stdout)
    return 0
