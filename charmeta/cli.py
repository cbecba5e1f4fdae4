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
import os
import signal
import sys
import tempfile
import time
import traceback
from typing import NoReturn

from charmeta.errors import CharmetaError, MissingDependencyError, explain

#: Sub-command modules under ``charmeta.commands``, in help order.
COMMANDS = ("extract", "eval", "bench", "inspect", "synth", "schema", "app")
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
    parser.add_argument("--debug", action="store_true", help="print the full traceback of an error")
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
    raise explain(exc) or MissingDependencyError(f"this command needs the '{exc.name}' package; run `make install`")


#: commands whose interruption leaves work a re-run completes (the message says how)
RESUMABLE = frozenset({"run"})


class Interrupted(Exception):
    """Ctrl-C or SIGTERM: the command stops; what it finished is kept."""


def _on_sigterm(signum: int, _frame: object) -> NoReturn:
    raise Interrupted(signal.Signals(signum).name)


def _error_log(exc: BaseException) -> str | None:
    """Write the traceback to a log file (``$CHARMETA_LOG_DIR``, else the temp folder) and return its path.

    The terminal gets one line; the details stay available without re-running."""
    folder = os.environ.get("CHARMETA_LOG_DIR") or os.path.join(tempfile.gettempdir(), "charmeta-logs")
    try:
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"error-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(" ".join(sys.argv) + "\n\n")
            fh.write("".join(traceback.format_exception(exc)))
        return path
    except OSError:
        return None


def _resume_hint() -> str:
    argv = [a for a in sys.argv[1:] if a != "--force"]
    return "charmeta " + " ".join(argv) if argv else "the same command"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if _main_thread() else None
    held_sigint = signal.getsignal(signal.SIGINT) if _main_thread() else None
    interrupted = False
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:
        return 0
    except (KeyboardInterrupt, Interrupted) as exc:
        _hold_interrupts()
        interrupted = True
        why = "SIGTERM" if isinstance(exc, Interrupted) else "Ctrl-C"
        if getattr(args, "command", None) in RESUMABLE:
            print(
                f"charmeta: stopped by {why}; finished work is kept, only temp files were left. "
                f"To resume, run: {_resume_hint()}",
                file=sys.stderr,
            )
        else:  # a server (ui, app) or a one-shot command: nothing to resume
            print(f"charmeta: stopped by {why}", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the one place that turns any failure into one line
        known = explain(exc, path=getattr(args, "output", None), uri=getattr(args, "source", None))
        if args.debug:
            traceback.print_exception(exc, file=sys.stderr)
        ours = isinstance(exc, CharmetaError)  # raised on purpose with its message: no traceback to keep
        log_path = None if (args.debug or ours) else _error_log(exc)
        details = f" (traceback: {log_path})" if log_path else ""
        if known is not None:
            print(f"charmeta: error: {known}{details}", file=sys.stderr)
            return known.exit_code
        print(
            f"charmeta: unexpected error: {type(exc).__name__}: {_one_line(exc)}{details}; "
            "re-run with --debug to see the traceback",
            file=sys.stderr,
        )
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if interrupted and _EXIT_AFTER_INTERRUPT:
            _hold_interrupts()  # the interrupted run's frames, freed above, may have restored a handler
        elif held_sigint is not None and _main_thread():
            signal.signal(signal.SIGINT, held_sigint)


#: Set by ``console``: an interrupted command leaves the process right after ``main`` (no
#: interpreter finalization); ``main`` then keeps SIGINT ignored instead of restoring it.
_EXIT_AFTER_INTERRUPT = False


def _hold_interrupts() -> None:
    """Ignore further Ctrl-C while an interrupt is being reported and the command winds down.

    Why: a stopped run must end with its one resume line and exit status 130; a second
    KeyboardInterrupt while the first is reported would escape ``main``
    (``tests/reliability/test_interrupt_window.py``). ``main`` restores the caller's handler
    when it returns (tests call it in-process), unless ``console`` will leave the process
    right after it (see ``console``)."""
    if _main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else "(no message)"


def console() -> None:
    """The ``charmeta`` executable: ``main`` then exit.

    Why not just ``sys.exit(main())``: interpreter shutdown runs a last full garbage
    collection over every object Dagster, Great Expectations and pandas created (~1 s after
    ``charmeta run``). Nothing needs collecting at that point, so the objects are frozen out
    of the collector first. Only here: tests call ``main`` in a process that lives on."""
    global _EXIT_AFTER_INTERRUPT
    _EXIT_AFTER_INTERRUPT = True
    try:
        rc = main()
    except KeyboardInterrupt:  # a Ctrl-C before ``main`` installed its handlers (argument parsing, imports)
        print("charmeta: stopped by Ctrl-C", file=sys.stderr)
        rc = 130
    sys.stdout.flush()
    sys.stderr.flush()
    if rc == 130:
        # Interrupted: the command has stopped its workers and said how to resume. Leave now,
        # without the interpreter's finalization: in 2 of 5 fresh-clone CI runs a stopped
        # `charmeta run` printed its resume line and then died of SIGINT (-2) instead of
        # exiting 130, with SIGINT ignored from the moment the interrupt was handled. What
        # finalization does after an interrupt (closing the interrupted Dagster run's
        # generators, whose contexts restore signal handlers; joining threads; resetting
        # handlers) is what such a death needs, and nothing in it is needed here: finished
        # partitions are committed, temp files are swept by the next writer (the kill -9 tests).
        _hold_interrupts()
        logging.shutdown()
        os._exit(130)
    gc.freeze()
    sys.exit(rc)


if __name__ == "__main__":
    console()
