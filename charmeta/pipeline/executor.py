"""Where partition tasks run: the executor interface, and the local process pool behind it.

A *task* is a picklable module-level function ``fn(args) -> dict`` for one
partition (the one-pass chain, or one stage). The runtime never talks to a pool
directly; it hands tasks to an ``Executor`` and gets ``concurrent.futures.Future``
objects back, so another backend (a Ray cluster) is one subclass:

* ``submit(fn, args) -> Future`` - queue one task;
* ``should_inline(n)`` - whether ``n`` tasks are cheaper run in the caller's process;
* ``is_lost(exc)`` - whether a task's exception means the workers died (then the
  executor is rebuilt and the partition reported as failed, not the step crashed);
* ``close()`` - stop the workers.

``run_tasks`` runs a dict of partition tasks on an executor (one failing partition
does not stop the others; the failures are raised together as ``PartitionsFailed``)
and ``prefetch`` queues tasks ahead of the step that will ask for them.

``LocalProcessExecutor``: a spawn process pool (CPU-bound Python: processes, not
threads), one per process and reused by every step and run it executes - starting
spawn workers (interpreter, imports, ontology compile) costs about a second each and
a 5M-row job has dozens of steps. ``InlineExecutor`` runs tasks in the caller.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from typing import Any

log = logging.getLogger("charmeta.pipeline")

Task = Callable[[tuple], dict[str, Any]]


class PartitionsFailed(RuntimeError):
    """Some partitions of a step failed; the others were built and committed."""

    def __init__(self, stage: str, errors: dict[str, str]) -> None:
        self.stage, self.errors = stage, errors
        lines = "; ".join(f"{k}: {v}" for k, v in list(errors.items())[:20])
        super().__init__(f"{stage}: {len(errors)} partition(s) failed: {lines}")


class Executor(ABC):
    """Runs partition tasks and hands back futures (see the module docstring)."""

    #: Short name (``local``, ``inline``, ``ray``): logs and the ``--executor`` setting.
    name = "?"
    workers = 1

    @abstractmethod
    def submit(self, fn: Task, args: tuple) -> Future:
        """Queue ``fn(args)``; the future's result is the task's dict."""

    def should_inline(self, n_tasks: int) -> bool:
        """Run ``n_tasks`` in the caller's process instead (one task, or one worker); ``True`` for
        one task also lets the runtime keep steps of a few thousand rows in-process. A cluster
        backend says ``False``: there even one partition goes to the workers."""
        return self.workers < 2 or n_tasks < 2

    def is_lost(self, exc: BaseException) -> bool:
        """Whether ``exc`` means the workers died rather than the task failing."""
        return False

    def reset(self) -> None:
        """Drop the workers after ``is_lost``; the next ``submit`` starts fresh ones."""
        return None

    def warm(self, fn: Callable[[Any], Any], arg: Any) -> None:
        """Start the workers now by running ``fn(arg)`` on each (no result wanted)."""
        return None

    def close(self) -> None:
        """Stop the workers (tasks still running are abandoned)."""
        return None


class InlineExecutor(Executor):
    """Every task in the caller's process, now (tests, small runs, ``--workers 1``)."""

    name = "inline"
    workers = 1

    def submit(self, fn: Task, args: tuple) -> Future:
        fut: Future = Future()
        try:
            fut.set_result(fn(args))
        except Exception as exc:  # noqa: BLE001 - delivered through the future, as a pool would
            fut.set_exception(exc)
        return fut


class LocalProcessExecutor(Executor):
    """A spawn process pool of ``workers`` processes, shared by this process (``shared``)."""

    name = "local"

    def __init__(self, workers: int) -> None:
        self.workers = max(1, workers)
        self._pool: ProcessPoolExecutor | None = None

    @property
    def pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=get_context("spawn"))
        return self._pool

    def submit(self, fn: Task, args: tuple) -> Future:
        return self.pool.submit(fn, args)

    def is_lost(self, exc: BaseException) -> bool:
        return isinstance(exc, BrokenProcessPool)

    def reset(self) -> None:
        _forget_prefetched(self)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = None

    def warm(self, fn: Callable[[Any], Any], arg: Any) -> None:
        for _ in range(self.workers):
            self.pool.submit(fn, arg)

    def close(self) -> None:
        """Stop the workers now, without waiting for each to tear down its interpreter.

        For a caller that is done with the pool (``charmeta run`` before it exits): every task
        it submitted has been awaited, so the workers are idle; a graceful shutdown would wait a
        second or more for them to free their extractor caches. A task still running (an
        interrupted run) is killed like any kill -9: its outputs are temp files, swept by the
        next writer."""
        if self._pool is not None:
            for proc in list((getattr(self._pool, "_processes", None) or {}).values()):
                if proc.is_alive():
                    proc.terminate()
        self.reset()

    _SHARED: LocalProcessExecutor | None = None

    @classmethod
    def shared(cls, workers: int) -> LocalProcessExecutor:
        """This process's pool of ``workers`` processes (a different size replaces it)."""
        current = cls._SHARED
        if current is None or current.workers != max(1, workers):
            if current is not None:
                current.reset()
            cls._SHARED = current = cls(workers)
        return current


def _shutdown_shared() -> None:
    if LocalProcessExecutor._SHARED is not None:
        LocalProcessExecutor._SHARED.reset()


atexit.register(_shutdown_shared)


def local_executor(workers: int) -> Executor:
    """The default executor for ``workers`` processes: the shared pool, or inline for one."""
    return LocalProcessExecutor.shared(workers) if workers > 1 else InlineExecutor()


def close_shared() -> None:
    """Stop this process's shared pool, if one was started (``charmeta run`` at exit)."""
    if LocalProcessExecutor._SHARED is not None:
        LocalProcessExecutor._SHARED.close()


def default_workers() -> int:
    """Worker processes per step when not configured: the CPUs this process may use."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


# ---------------------------------------------------------------------------
# running a step's tasks
# ---------------------------------------------------------------------------
#: Tasks queued ahead of the step that will want them: ``(fn, args) -> (executor, Future)``.
_PREFETCHED: dict[tuple[Task, tuple], tuple[Executor, Future]] = {}


def _forget_prefetched(executor: Executor) -> None:
    for k in [k for k, (ex, _) in _PREFETCHED.items() if ex is executor]:
        del _PREFETCHED[k]  # their futures belong to the workers being dropped


def prefetch(fn: Task, jobs: dict[str, tuple], executor: Executor) -> int:
    """Queue ``fn(args)`` for every job now; the step that later asks for the same
    ``(fn, args)`` (``run_tasks``) adopts the future instead of submitting again.

    Why: ``charmeta run`` executes its Dagster runs one after the other. Without this the
    pool idles at every run boundary - the run's last round (one partition left, one core
    busy), its checks and bookkeeping, the next run's start - about half a partition's time
    per run. Outputs are committed per partition exactly as in the step itself, so work
    done ahead for a run that then fails is kept, as it would be for any finished partition.
    Returns the number of tasks queued.
    """
    if executor.workers < 2 or not jobs:
        return 0
    n = 0
    for args in jobs.values():
        if (fn, args) not in _PREFETCHED:
            _PREFETCHED[(fn, args)] = (executor, executor.submit(fn, args))
            n += 1
    return n


def _adopt_or_submit(executor: Executor, fn: Task, args: tuple) -> tuple[Executor, Future]:
    queued = _PREFETCHED.pop((fn, args), None)
    if queued is not None:
        ex, fut = queued
        if not fut.cancelled() and not (fut.done() and ex.is_lost(fut.exception() or Exception())):
            return ex, fut
    return executor, executor.submit(fn, args)


def run_tasks(
    fn: Task,
    jobs: dict[str, tuple],
    label: str,
    executor: Executor,
    on_done: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """``fn(args)`` for every partition key of ``jobs`` on ``executor`` (in this process when
    it says so), results in key order. One failing partition does not stop the others; the
    failures are raised together as ``PartitionsFailed`` once every other partition is done."""
    keys = list(jobs)
    results: dict[str, dict[str, Any]] = {}
    errors: dict[str, str] = {}

    def record(key: str, ex: Executor, get: Callable[[], dict[str, Any]]) -> None:
        try:
            r = get()
        except Exception as exc:
            if ex.is_lost(exc):  # a worker died (OOM, kill): the next step gets fresh workers
                ex.reset()
                log.error("%s %s failed: worker process died: %r", label, key, exc)
                errors[key] = f"worker process died: {exc}"
                return
            log.error("%s %s failed: %r", label, key, exc)
            errors[key] = f"{type(exc).__name__}: {exc}"
            return
        results[key] = r
        if on_done:
            on_done(r)

    prefetched = any((fn, jobs[k]) in _PREFETCHED for k in keys)
    if executor.should_inline(len(keys)) and not prefetched:
        inline = InlineExecutor()
        for k in keys:
            record(k, inline, functools.partial(fn, jobs[k]))
    else:
        futures = {}
        for k in keys:
            ex, fut = _adopt_or_submit(executor, fn, jobs[k])
            futures[fut] = (k, ex)
        for fut in as_completed(futures):
            k, ex = futures[fut]
            record(k, ex, fut.result)
    if errors:
        raise PartitionsFailed(label, {k: errors[k] for k in keys if k in errors})
    return [results[k] for k in keys]
