"""Recognising a full disk in the shapes the layers report it (no disk is filled here; the real
fault is tests/reliability/test_disk_full.py)."""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

from charmeta.diskspace import disk_full_error, is_disk_full


def test_enospc_sqlite_full_and_wrapped_causes_are_recognised() -> None:
    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert is_disk_full(sqlite3.OperationalError("database or disk is full"))
    try:
        try:
            raise OSError(errno.ENOSPC, "x")
        except OSError as inner:
            raise RuntimeError("step failed") from inner
    except RuntimeError as outer:
        assert is_disk_full(outer)
    assert is_disk_full("OSError: [Errno 28] No space left on device: '/out/raw_shards/a.parquet.tmp-1'")
    assert not is_disk_full(ValueError("bad row"))


def test_io_error_counts_only_when_the_disk_is_nearly_full(tmp_path: Path) -> None:
    io = sqlite3.OperationalError("disk I/O error")
    assert not is_disk_full(io, [str(tmp_path)])  # this test's disk has room: a real I/O error
    assert not is_disk_full(io)


def test_message_names_the_path_and_free_space(tmp_path: Path) -> None:
    msg = str(disk_full_error([str(tmp_path / "not-yet" / "out"), "s3://bucket/x"], "OSError: [Errno 28] x"))
    assert str(tmp_path / "not-yet" / "out") in msg and " free of " in msg and "re-run" in msg
