"""The partition executors by name (``executor`` setting), without importing Dagster.

``local``: this process's spawn pool (``charmeta.pipeline.executor``). ``ray``: the Ray
backend of the deployment (``charmeta.executors``), one per configuration and process
(``ray.init`` happens once). ``charmeta run`` takes its executor from here before
Dagster loads (to queue the partitions early), and the ``pool`` resources take theirs
from here during a run, so both hand their tasks to the same object.
"""

from __future__ import annotations

from typing import Any

from charmeta.pipeline.executor import Executor, local_executor

_REMOTE: dict[Any, Executor] = {}


def executor_for(kind: str, workers: int, ray_address: str = "") -> Executor:
    """The executor ``kind`` (``local`` or ``ray``) for ``workers`` local processes."""
    if kind in ("", "local"):
        return local_executor(workers)
    from charmeta import executors

    cfg = executors.configure(backend=kind, ray_address=ray_address)  # validates the name
    ex = _REMOTE.get(cfg)
    if ex is None:
        made = executors.make_executor(workers, cfg)
        assert isinstance(made, Executor), f"executor {kind!r} does not implement charmeta.pipeline.executor.Executor"
        ex = _REMOTE[cfg] = made
    return ex


def close_all() -> None:
    """Stop every executor this process started (``charmeta run`` at exit)."""
    from charmeta.pipeline.executor import close_shared

    close_shared()
    for ex in _REMOTE.values():
        ex.close()
    _REMOTE.clear()
