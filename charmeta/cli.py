"""``charmeta`` console entry point: a thin dispatcher over ``charmeta.commands.*`` and plugins.

Each sub-command lives in its own module exposing ``register(subparsers)``;
adding a command is adding a module and one name to ``COMMANDS``. Commands of
other packages plug in through the ``charmeta.commands`` entry-point group (each
entry names a module with ``register``): the Dagster code location adds ``run``
and ``ui`` that way (``charmeta_dagster.commands``), so this core CLI imports no
Dagster and works without it installed.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import logging
import sys

from charmeta.errors import CharmetaError

#: Sub-command modules under ``charmeta.commands``, in help order.
COMMANDS = ("extract", "eval", "bench", "synth", "schema")
#: Entry-point group of plugged-in commands (``name = "package.module"``).
PLUGIN_GROUP = "charmeta.commands"
#: The plugins this distribution declares (pyproject ``[project.entry-points."charmeta.commands"]``),
#: used when the installed metadata predates them (an editable install made before they existed).
DECLARED_PLUGINS = {"run": "charmeta_dagster.commands.run", "ui": "charmeta_dagster.commands.ui"}


def plugin_modules() -> dict[str, str]:
    """``name -> module`` of the plugged-in commands (installed entry points first)."""
    from importlib.metadata import entry_points

    found = {ep.name: ep.value for ep in entry_points(group=PLUGIN_GROUP)}
    return found or dict(DECLARED_PLUGINS)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="charmeta", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    modules = {name: f"charmeta.commands.{name}" for name in COMMANDS}
    modules.update(plugin_modules())
    for name, module_name in modules.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:  # a command whose optional deps are missing
            if exc.name and module_name.startswith(exc.name):
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
