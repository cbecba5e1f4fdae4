"""``charmeta`` console entry point: a thin dispatcher over ``charmeta.commands.*``.

Each sub-command lives in its own module exposing ``register(subparsers)``;
adding a command is adding a module and one name to ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import logging
import sys

from charmeta.errors import CharmetaError

#: Sub-command modules under ``charmeta.commands``, in help order.
COMMANDS = ("extract", "eval", "bench", "run", "inspect", "synth", "schema", "ui")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="charmeta", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"charmeta.commands.{name}")
        except ModuleNotFoundError as exc:  # a command whose optional deps are missing
            if exc.name and exc.name.startswith("charmeta.commands"):
                continue
            stub = sub.add_parser(name, help=f"(unavailable: {exc.name} not installed)")
            stub.set_defaults(func=lambda _a, _e=exc: _missing(_e))
            continue
        module.register(sub)
    return parser


def _missing(exc: ModuleNotFoundError) -> int:
    print(f"charmeta: this command needs the '{exc.name}' package; run `make install`.", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.func(args) or 0)
    except CharmetaError as exc:
        print(f"charmeta: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0


def console() -> None:
    """The ``charmeta`` executable: ``main`` then exit.

    Why not just ``sys.exit(main())``: interpreter shutdown runs a last full garbage
    collection over every object Dagster, Great Expectations and pandas created (~1 s after
    ``charmeta run``). Nothing needs collecting at that point, so the objects are frozen out
    of the collector first. Only here: tests call ``main`` in a process that lives on."""
    rc = main()
    sys.stdout.flush()
    sys.stderr.flush()
    gc.freeze()
    sys.exit(rc)


if __name__ == "__main__":
    console()
