"""charmeta.progress: a live line on a terminal, JSON lines otherwise, fed by commit markers."""

from __future__ import annotations

import io
import json
import logging
import os
import time
from pathlib import Path

import pytest

from charmeta.progress import MarkerWatcher, Progress


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_terminal_gets_one_live_line() -> None:
    out = _Tty()
    p = Progress(4, 4000, stream=out)
    p.update(1, 1000)
    p.update(2, 2000)
    p.close()
    text = out.getvalue()
    assert "partitions 2/4" in text and "2.00k/4.00k rows" in text, text
    assert "\r" in text and text.count("\n") <= 1  # redrawn in place, one line


def test_non_terminal_gets_json_lines(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="charmeta.progress")
    p = Progress(2, 200, stream=io.StringIO(), log_every_s=0.0)
    p.update(1, 100)
    p.close()
    events = [json.loads(r.getMessage()) for r in caplog.records]
    assert events[0]["partitions_done"] == 1 and events[0]["rows_total"] == 200
    assert events[-1]["rows_done"] == 100 and events[-1]["event"] == "progress"
    assert all("eta_s" in e and "rows_per_s" in e for e in events)


def test_marker_watcher_counts_only_this_jobs_markers(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="charmeta.progress")
    old = tmp_path / "a.json"
    old.write_text("{}")
    os.utime(old, (time.time() - 3600, time.time() - 3600))  # a previous build's marker
    p = Progress(2, 30, stream=io.StringIO(), log_every_s=0.0)
    with MarkerWatcher(p, {"a": 10, "b": 20}, lambda k: str(tmp_path / f"{k}.json"), interval_s=0.05) as w:
        (tmp_path / "b.json").write_text("{}")
        time.sleep(0.3)
        assert p.partitions == 1 and p.rows == 20
        (tmp_path / "a.json").write_text("{}")  # rebuilt now
        w.poll()
    assert p.partitions == 2 and p.rows == 30


def test_partitions_of_unknown_size_are_measured_when_done(tmp_path: Path) -> None:
    """Whole-file shards (``stop=None``) have no row count up front: the finished ones give it,
    and the total is estimated from them, so rows/s and the ETA mean something."""
    p = Progress(3, 0, stream=io.StringIO(), log_every_s=0.0)
    w = MarkerWatcher(p, {"a": 0, "b": 0, "c": 0}, lambda k: str(tmp_path / f"{k}.json"), rows_when_done=lambda k: 100)
    (tmp_path / "a.json").write_text("{}")
    w.poll()
    assert p.rows == 100 and p.total_rows == 300 and p.partitions == 1
