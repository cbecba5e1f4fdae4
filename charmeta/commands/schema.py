"""``charmeta schema``: print or write the versioned JSON Schema of the clean record."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from charmeta.contract import SCHEMA_VERSION, clean_json_schema, rich_json_schema

SCHEMA_FILE = Path(__file__).resolve().parents[1] / "schema" / "attributes.schema.json"
RICH_SCHEMA_FILE = Path(__file__).resolve().parents[1] / "schema" / "rich_record.schema.json"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("schema", help="print (or --write) the JSON Schema of the clean record")
    p.add_argument(
        "--write", action="store_true", help=f"write {SCHEMA_FILE.name} and {RICH_SCHEMA_FILE.name} in the package"
    )
    p.add_argument("--rich", action="store_true", help="print the rich record's schema instead")
    p.set_defaults(func=run)


def render(schema: dict) -> str:
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def run(args: argparse.Namespace) -> int:
    if args.write:
        SCHEMA_FILE.write_text(render(clean_json_schema()), "utf-8")
        RICH_SCHEMA_FILE.write_text(render(rich_json_schema()), "utf-8")
        print(f"wrote schema version {SCHEMA_VERSION} to {SCHEMA_FILE} and {RICH_SCHEMA_FILE}", file=sys.stderr)
        return 0
    sys.stdout.write(render(rich_json_schema() if args.rich else clean_json_schema()))
    return 0
