"""``charmeta run`` started as its own process, the way a user starts it.

For the tests that need a real process: to kill it mid-partition, to read what it prints, or to
check what it leaves behind in its environment. In-process runs use ``charmeta.cli.main``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

#: The ``charmeta`` command of the interpreter running the tests (this checkout's install).
CLI = [sys.executable, "-m", "charmeta.cli"]


def run_cmd(
    source: Path | str, output: Path | str, *extra: str, extractor: str = "null", workers: int = 1
) -> list[str]:
    """The argument list of ``charmeta run`` over ``source`` into ``output`` (``extra``: more flags)."""
    return [
        *CLI,
        "run",
        "--source",
        str(source),
        "--output",
        str(output),
        "--extractor",
        extractor,
        "--workers",
        str(workers),
        *extra,
    ]


def run_charmeta(
    source: Path | str,
    output: Path | str,
    *extra: str,
    extractor: str = "null",
    workers: int = 1,
    env: dict[str, str] | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess:
    """Run ``charmeta run`` to its end; stdout and stderr captured as text."""
    cmd = run_cmd(source, output, *extra, extractor=extractor, workers=workers)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
