"""`charmeta run` stops its local workers before the export job (the dataset-level cleaning
steps peak in the main process; idle workers would keep ~1 GB each: 3.9 GB process tree at 5M
before, 3.0 GB after)."""

from __future__ import annotations

import os
import time
from types import SimpleNamespace

from charmeta.pipeline.executor import LocalProcessExecutor, local_executor
from charmeta_dagster.commands.run import _stop_local_workers


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except OSError:
        return False


def test_local_workers_stop_and_a_later_step_gets_fresh_ones() -> None:
    pool = local_executor(2)
    assert isinstance(pool, LocalProcessExecutor)
    pids = [pool.submit(_pid, ()).result(timeout=120) for _ in range(2)]
    assert all(_alive(p) for p in pids)
    _stop_local_workers(SimpleNamespace(executor="local"))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    assert not any(_alive(p) for p in pids), "workers outlived _stop_local_workers"
    # the shared executor still works: a step that wants workers again gets new processes
    again = local_executor(2).submit(_pid, ()).result(timeout=120)
    assert again not in pids and _alive(again)
    _stop_local_workers(SimpleNamespace(executor="local"))


def test_remote_executors_are_left_alone(monkeypatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr("charmeta.pipeline.executor.close_shared", lambda: calls.append("closed"))
    _stop_local_workers(SimpleNamespace(executor="ray"))
    assert calls == []
    _stop_local_workers(SimpleNamespace(executor="local"))
    assert calls == ["closed"]


def _pid(_args: tuple) -> int:
    return os.getpid()
