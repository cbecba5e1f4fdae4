"""Temp files of writers that were killed: found by the pid in their name, removed once that
process is gone.

Every output (stage Parquet, export parts, check facts) is written to
``<path>.tmp-<pid>`` and renamed into place, so a ``kill -9`` leaves at most a temp
file behind, never a half-written output; the next writer of the same path sweeps it.
"""

from __future__ import annotations

import os


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (a dead writer's temp files may be swept)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale_tmp(path: str) -> int:
    """Remove ``<path>.tmp-<pid>`` files left by a killed (dead) writer; never a live one's."""
    d, base = os.path.split(path)
    stem = base.rsplit(".", 1)[0]
    removed = 0
    try:
        names = os.listdir(d)
    except FileNotFoundError:
        return 0
    for n in names:
        head, sep, pid = n.rpartition(".tmp-")
        if (
            sep
            and head in (base, stem + ".json")
            and pid.isdigit()
            and int(pid) != os.getpid()
            and not pid_alive(int(pid))
        ):
            try:
                os.remove(os.path.join(d, n))
                removed += 1
            except FileNotFoundError:
                pass
    return removed
