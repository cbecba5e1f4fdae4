"""The executor interface: tasks in, futures out; failures per partition; a dead worker is reported."""

from __future__ import annotations

import os
from concurrent.futures import Future

import pytest

from charmeta.pipeline import executor as E


def square(args: tuple) -> dict:
    (n,) = args
    if n == 3:
        raise ValueError("three is bad")
    return {"key": str(n), "value": n * n, "pid": os.getpid()}


def die(args: tuple) -> dict:
    os._exit(9)  # a worker killed mid-task (OOM, kill -9)


class RecordingExecutor(E.Executor):
    """A minimal backend: what a Ray executor has to provide."""

    name = "recording"

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.submitted: list[tuple] = []

    def submit(self, fn: E.Task, args: tuple) -> Future:
        self.submitted.append(args)
        return E.InlineExecutor().submit(fn, args)


def test_results_come_back_in_key_order_and_failures_together() -> None:
    ex = RecordingExecutor(workers=2)
    jobs = {str(n): (n,) for n in (5, 1, 2)}
    done: list[str] = []
    out = E.run_tasks(square, jobs, "step", ex, on_done=lambda r: done.append(r["key"]))
    assert [r["value"] for r in out] == [25, 1, 4] and sorted(done) == ["1", "2", "5"]
    assert ex.submitted == [(5,), (1,), (2,)]  # every task went through the executor
    with pytest.raises(E.PartitionsFailed) as err:
        E.run_tasks(square, {"1": (1,), "3": (3,), "2": (2,)}, "step", ex)
    assert err.value.errors == {"3": "ValueError: three is bad"} and err.value.stage == "step"


def test_one_worker_or_one_task_runs_in_the_caller() -> None:
    ex = RecordingExecutor(workers=1)
    out = E.run_tasks(square, {"1": (1,), "2": (2,)}, "step", ex)
    assert ex.submitted == [] and {r["pid"] for r in out} == {os.getpid()}
    assert E.local_executor(1).should_inline(5) and E.local_executor(3).should_inline(1)


def test_local_pool_runs_in_other_processes_and_prefetch_is_adopted() -> None:
    pool = E.LocalProcessExecutor(2)
    try:
        jobs = {str(n): (n,) for n in (1, 2, 4)}
        assert E.prefetch(square, jobs, pool) == 3
        assert E.prefetch(square, jobs, pool) == 0  # already queued
        out = E.run_tasks(square, jobs, "step", pool)
        assert [r["value"] for r in out] == [1, 4, 16] and os.getpid() not in {r["pid"] for r in out}
        assert not E._PREFETCHED  # adopted, not submitted twice
    finally:
        pool.close()


def test_a_dead_worker_fails_its_partition_and_the_next_step_gets_fresh_workers() -> None:
    pool = E.LocalProcessExecutor(2)
    try:
        with pytest.raises(E.PartitionsFailed) as err:
            E.run_tasks(die, {"a": (1,), "b": (2,)}, "step", pool)
        assert all("worker process died" in v for v in err.value.errors.values())
        out = E.run_tasks(square, {"1": (1,), "2": (2,)}, "step", pool)
        assert [r["value"] for r in out] == [1, 4]
    finally:
        pool.close()


def test_shared_pool_is_one_per_size() -> None:
    a = E.LocalProcessExecutor.shared(2)
    try:
        assert E.LocalProcessExecutor.shared(2) is a
        b = E.LocalProcessExecutor.shared(3)
        assert b is not a and b.workers == 3
    finally:
        E.close_shared()
