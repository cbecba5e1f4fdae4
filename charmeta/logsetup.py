"""Where a long command's structured log goes: a file always, the terminal only when it is not one.

Why: on a terminal the person reads one live progress line (``charmeta.progress``); the JSON
event lines (``discovered``, ``partition_done``, ``progress``) would scroll it away. They still
matter for debugging and audits, so they go to ``<output>/logs/<command>-<time>.log`` in every
case, and stay on stderr when stderr is a pipe or a file (CI, services)."""

from __future__ import annotations

import logging
import os
import sys
import time

FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class QuietFileHandler(logging.FileHandler):
    """A log file that goes quiet when it cannot be written (a full or lost disk).

    Why: logging's default ``handleError`` prints a traceback to stderr for every record that
    fails, so a disk that fills mid-run buried the one-line "disk full" error under dozens of
    "--- Logging error ---" tracebacks. The run's own error handling reports the disk."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        self.broken = True


def route_logs(folder: str, command: str, terminal: bool | None = None, verbose: bool = False) -> str | None:
    """Add an INFO file handler under ``folder``; on a terminal (unless ``verbose``) the console
    handlers keep WARNING and above only. Returns the log file's path (None if it cannot be made)."""
    terminal = sys.stderr.isatty() if terminal is None else terminal
    root = logging.getLogger()
    path = None
    try:
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"{command}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log")
        handler = QuietFileHandler(path, encoding="utf-8")
        handler.setFormatter(logging.Formatter(FORMAT))
        handler.setLevel(logging.DEBUG if verbose else logging.INFO)
        root.addHandler(handler)
    except OSError:
        path = None
    if terminal and not verbose:
        for h in root.handlers:
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler):
                h.setLevel(logging.WARNING)
    return path
