"""Disk full, said plainly: which path, how much is free, what to do.

Why a module: a full disk surfaces in many shapes - ``OSError(ENOSPC)`` in a pool worker
(then only as text in the step's failure), SQLite's ``database or disk is full`` from the
Dagster instance, Postgres' ``could not extend file`` - and without this the user sees a raw
traceback of whichever layer hit it first. Finished partitions are never at risk (each is
committed by rename + marker), so the advice is always the same: free space, re-run.
"""

from __future__ import annotations

import errno
import os
import re
import shutil

from charmeta.errors import CharmetaError

#: Texts of a full disk, as the layers print them (ENOSPC, SQLite, Postgres, Arrow).
_FULL = re.compile(
    r"No space left on device|\[Errno 28\]|ENOSPC|database or disk is full|could not extend file|disk quota exceeded",
    re.I,
)


class DiskFullError(CharmetaError):
    """A write failed because a filesystem is full (or over quota)."""


#: I/O errors that are a full disk when the disk is in fact (nearly) full: SQLite reports
#: "disk I/O error" rather than SQLITE_FULL when its journal cannot grow.
_IO = re.compile(r"disk I/O error|\[Errno 5\]|Input/output error", re.I)


def _texts(err: BaseException | str | None) -> list[str]:
    out: list[str] = []
    seen: set[int] = set()
    while isinstance(err, BaseException) and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            out.append("[Errno 28]")
        out.append(str(err))
        err = err.__cause__ or err.__context__
    if isinstance(err, str):
        out.append(err)
    return out


def nearly_full(path: str) -> bool:
    """Less than 1 MiB or 1 % left on ``path``'s filesystem."""
    try:
        usage = shutil.disk_usage(_existing(path))
    except OSError:
        return False
    return usage.free < max(1 << 20, usage.total // 100)


def is_disk_full(err: BaseException | str | None, paths: list[str] | None = None) -> bool:
    """Whether ``err`` (an exception with its causes/context, or a failure message) is a full disk;
    an I/O error counts when one of ``paths`` is on a (nearly) full filesystem."""
    texts = _texts(err)
    if any(_FULL.search(t) for t in texts):
        return True
    return any(_IO.search(t) for t in texts) and any(nearly_full(p) for p in paths or [] if p and "://" not in p)


def _fmt_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _existing(path: str) -> str:
    p = os.path.abspath(path)
    while not os.path.exists(p) and os.path.dirname(p) != p:
        p = os.path.dirname(p)
    return p


def disk_full_error(paths: list[str], detail: str = "") -> DiskFullError:
    """The error for a full disk under one of ``paths`` (each named with its free space)."""
    parts = []
    for path in dict.fromkeys(p for p in paths if p):
        if "://" in path:
            continue
        try:
            usage = shutil.disk_usage(_existing(path))
        except OSError:
            continue
        parts.append(f"{path}: {_fmt_bytes(usage.free)} free of {_fmt_bytes(usage.total)}")
    where = "; ".join(parts) or ", ".join(paths)
    msg = (
        f"disk full ({where}). Finished partitions are kept (each is committed whole or not at all): free "
        "space or move --output / DAGSTER_HOME to a bigger disk, then re-run the same command - it resumes at "
        "the unfinished partitions."
    )
    if detail:
        msg += f" [{detail.strip().splitlines()[-1][:300]}]"
    return DiskFullError(msg)
