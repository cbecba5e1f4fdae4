"""Where a step's partitions run: the local process pool (default) or a Ray cluster.

The pipeline's steps hand every partition to one executor with the shape of
``concurrent.futures.Executor`` - ``submit(fn, args) -> Future`` and
``shutdown(wait, cancel_futures)`` - so ``run_tasks`` collects results the same
way whichever backend computed them. The backend is chosen by
``CHARMETA_EXECUTOR`` (``local`` | ``ray``; the ``executor`` setting), and bound in
the code location as the ``pool`` resource (``LocalPool`` / ``RayPool``, whose
``ray_address`` the launchpad can set; ``configure``).

Why not Dagster's own executors: a charmeta step holds many partitions (one
``shards_job`` run covers up to 10), and the work worth distributing is one task
per partition inside that step, not one task per Dagster step.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any

from charmeta.errors import ConfigError

BACKENDS = ("local", "ray")


@dataclass(frozen=True)
class ExecutorConfig:
    """The pool backend and, for Ray, how to reach it and what each task asks for.

    ``ray_address``: ``""`` starts a private Ray on this machine (tests, one box);
    ``auto`` joins the cluster this node belongs to; ``host:port`` a head's GCS;
    ``ray://host:10001`` Ray Client from outside the cluster."""

    backend: str = "local"
    ray_address: str = ""
    num_cpus_per_task: float = 1.0
    num_gpus_per_image_task: float = 0.0
    max_retries: int = 3
    #: Object store of a private local Ray (MB); results are small dicts, data stays in files.
    object_store_mb: int = 200

    @classmethod
    def from_env(cls) -> ExecutorConfig:
        env = os.environ.get
        cfg = cls(
            backend=(env("CHARMETA_EXECUTOR") or "local").strip().lower(),
            ray_address=env("CHARMETA_RAY_ADDRESS", ""),
            num_cpus_per_task=float(env("CHARMETA_RAY_CPUS_PER_TASK", "1")),
            num_gpus_per_image_task=float(env("CHARMETA_RAY_GPUS_PER_IMAGE_TASK", "0")),
            max_retries=int(env("CHARMETA_RAY_MAX_RETRIES", "3")),
            object_store_mb=int(env("CHARMETA_RAY_OBJECT_STORE_MB", "200")),
        )
        cfg.validate()
        return cfg

    def validate(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(f"executor backend {self.backend!r} unknown: use one of {', '.join(BACKENDS)}")
        if self.num_cpus_per_task <= 0 or self.num_gpus_per_image_task < 0 or self.max_retries < 0:
            raise ConfigError("ray task resources: cpus per task > 0, gpus per image task >= 0, max_retries >= 0")


_OVERRIDE: ExecutorConfig | None = None


def configure(backend: str = "", ray_address: str = "", **fields: Any) -> ExecutorConfig:
    """Set this process's executor from run config (empty fields keep the environment's value)."""
    global _OVERRIDE
    cfg = ExecutorConfig.from_env()
    changes = {k: v for k, v in {"backend": backend.strip().lower(), "ray_address": ray_address, **fields}.items() if v}
    cfg = replace(cfg, **changes)
    cfg.validate()
    _OVERRIDE = cfg
    return cfg


def current() -> ExecutorConfig:
    return _OVERRIDE or ExecutorConfig.from_env()


def is_remote() -> bool:
    """Whether partitions go to a cluster (then even small steps are sent there: the driver
    may be a small pod, and the GPU lives on the workers)."""
    return current().backend != "local"


def make_executor(workers: int, cfg: ExecutorConfig | None = None) -> Any:
    """The pool for ``workers`` local processes, or the Ray executor for ``cfg``."""
    cfg = cfg or current()
    if cfg.backend == "ray":
        from charmeta.executors.ray_executor import RayExecutor

        return RayExecutor(cfg, local_cpus=workers)
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    return ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"))
