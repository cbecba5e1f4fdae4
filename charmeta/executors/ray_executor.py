"""The Ray backend of the partition pool: one Ray task per partition.

Chosen over ``dagster-ray`` (read: its ``ray_executor`` submits each *Dagster step* as a
Ray job, its ``RayRunLauncher`` a whole *run*, its Pipes client an external script):
charmeta's unit of work is a partition inside a step, and the step already knows how to
commit partitions atomically, skip finished ones and report per-partition failures. So
the step keeps running where Dagster put it (run worker) and hands each partition to
Ray core as a task with its resources; ``dagster-ray`` would add a second job layer and
a dependency for nothing the pipeline uses. (Its run launcher can still place the run
worker on the cluster; see docs/deploy.md.)

What each task gets:

* ``num_cpus`` (``CHARMETA_RAY_CPUS_PER_TASK``, default 1: the pass is one core of
  Python/Arrow) and, for an image shard with an image embedder, ``num_gpus``
  (``CHARMETA_RAY_GPUS_PER_IMAGE_TASK``);
* ``max_retries`` (``CHARMETA_RAY_MAX_RETRIES``, default 3) for *system* failures: a
  worker process or node that dies mid-task. A retried partition is safe: every file
  is written to a temp name and renamed, the commit marker last, so a retry finds
  either nothing or finished stages. Exceptions the task raises are *not* retried by
  Ray (``retry_exceptions=False``): they are the partition's error, reported by the
  step like the local pool does (the assets' RetryPolicy handles transient ones);
* the driver's ``CHARMETA_*`` / ``HF_*`` / ``AWS_*`` settings as ``runtime_env`` env
  vars, so a worker on another node builds the same extractor and reaches the same
  storage. Paths must be visible to every node (shared volume or ``s3://``).

The functions sent are module-level (``charmeta_dagster.chain._chain_worker``, ...):
every node needs the same charmeta installed (the project's image), nothing is pickled
by value but the arguments.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import Future
from typing import Any

from charmeta.errors import ConfigError
from charmeta.executors import ExecutorConfig

try:  # the pipeline's executor interface, where present (submit / should_inline / is_lost / reset / close)
    from charmeta.pipeline.executor import Executor as _Base  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - older layout: the duck-typed pool shape is enough
    _Base = object  # type: ignore[assignment,misc]

log = logging.getLogger("charmeta.executors.ray")

#: Environment passed on to the workers (configuration, credentials for object storage).
ENV_PREFIXES = ("CHARMETA_", "HF_", "AWS_", "GOOGLE_", "GX_", "FSSPEC_")
#: Where the embedder spec sits in each task function's argument tuple.
_EMBEDDER_ARG = {"_chain_worker": 3, "_worker": 4}
_IMAGE_FORMATS = ("tar", "txt")


def _call(fn: Any, args: tuple) -> Any:
    """The task body: the same function the local pool runs, on a Ray worker."""
    return fn(args)


class RayExecutor(_Base):
    """``submit(fn, args) -> concurrent.futures.Future`` over Ray tasks."""

    name = "ray"

    def __init__(self, cfg: ExecutorConfig, local_cpus: int = 0) -> None:
        self.workers = max(2, local_cpus)  # the cluster sizes itself; never "inline"
        try:
            import ray
        except ImportError as exc:  # pragma: no cover - the cluster extra is not installed
            raise ConfigError("executor 'ray' needs Ray: pip install 'charmeta[cluster]'") from exc
        self.cfg = cfg
        self._ray = ray
        self._owns_ray = False
        if not ray.is_initialized():
            env_vars = {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIXES)}
            kwargs: dict[str, Any] = {
                "ignore_reinit_error": True,
                "logging_level": logging.WARNING,
                "log_to_driver": True,
                "runtime_env": {"env_vars": env_vars} if env_vars else None,
            }
            if cfg.ray_address:
                kwargs["address"] = cfg.ray_address
            else:  # a private Ray on this machine, sized like the local pool
                kwargs.update(
                    num_cpus=max(1, local_cpus),
                    include_dashboard=False,
                    object_store_memory=cfg.object_store_mb * 1024 * 1024,
                )
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            try:
                ray.init(**kwargs)
            except ConnectionError as exc:
                raise ConfigError(
                    f"cannot reach the Ray cluster at {cfg.ray_address!r} ({exc}); set CHARMETA_RAY_ADDRESS to the "
                    "head's host:port (or ray://host:10001), or leave it empty for a Ray on this machine"
                ) from exc
            self._owns_ray = True
            log.info("ray connected: %s", ray.cluster_resources())
        self._remote = ray.remote(_call)

    def resources(self, fn: Any, args: tuple) -> dict[str, Any]:
        """``num_cpus`` / ``num_gpus`` for one partition task (GPU only where it embeds images)."""
        res: dict[str, Any] = {"num_cpus": self.cfg.num_cpus_per_task}
        if self.cfg.num_gpus_per_image_task > 0 and self._embeds_images(fn, args):
            res["num_gpus"] = self.cfg.num_gpus_per_image_task
        return res

    @staticmethod
    def _embeds_images(fn: Any, args: tuple) -> bool:
        idx = _EMBEDDER_ARG.get(getattr(fn, "__name__", ""))
        if idx is None or len(args) <= idx or str(args[idx]).split(":")[0] in ("", "none"):
            return False
        try:
            from charmeta.sources import read_registry

            root, key = (args[0], args[1]) if idx == 3 else (args[1], args[2])
            return read_registry(root, key).fmt in _IMAGE_FORMATS
        except Exception:  # noqa: BLE001 - unknown shard: ask for the GPU rather than run without it
            return True

    def submit(self, fn: Any, args: tuple) -> Future:
        ref = self._remote.options(max_retries=self.cfg.max_retries, retry_exceptions=False, **self.resources(fn, args))
        return ref.remote(fn, args).future()

    def should_inline(self, n_tasks: int) -> bool:
        """Never: on a cluster even one partition goes to the workers (the GPU and the memory
        are there; the run pod that drives Dagster may be small)."""
        return False

    def is_lost(self, exc: BaseException) -> bool:
        """A worker or node died more often than ``max_retries`` allowed (the task itself did not fail)."""
        names = {k.__name__ for k in type(exc).__mro__}
        return bool(names & {"WorkerCrashedError", "NodeDiedError", "OwnerDiedError", "RaySystemError"})

    def reset(self) -> None:
        """Nothing to rebuild: Ray replaces dead workers itself."""
        return None

    def warm(self, fn: Any, arg: Any) -> None:
        """Ray workers start on demand; warming would only hold CPUs the tasks need."""
        return None

    def close(self) -> None:
        self.shutdown()

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        """Drop the connection (and the private local Ray, which lives in this process)."""
        if self._owns_ray and self._ray.is_initialized():
            self._ray.shutdown()
        self._owns_ray = False
