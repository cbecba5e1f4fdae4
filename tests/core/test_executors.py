"""The executor choice (local pool / Ray) from env and run config; Ray task resources. No Ray started."""

from __future__ import annotations

from pathlib import Path

import pytest

from charmeta import executors
from charmeta.errors import ConfigError


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch):
    for k in ("CHARMETA_EXECUTOR", "CHARMETA_RAY_ADDRESS", "CHARMETA_RAY_GPUS_PER_IMAGE_TASK"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setattr(executors, "_OVERRIDE", None)


def test_default_is_the_local_pool() -> None:
    assert executors.current().backend == "local"
    assert not executors.is_remote()


def test_env_selects_ray_and_its_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHARMETA_EXECUTOR", "Ray")
    monkeypatch.setenv("CHARMETA_RAY_ADDRESS", "10.0.0.5:6379")
    cfg = executors.current()
    assert (cfg.backend, cfg.ray_address, cfg.max_retries) == ("ray", "10.0.0.5:6379", 3)
    assert executors.is_remote()


def test_run_config_overrides_env_and_unknown_backend_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHARMETA_RAY_ADDRESS", "from-env:1")
    cfg = executors.configure(backend="ray")
    assert cfg.ray_address == "from-env:1" and executors.current() is cfg
    with pytest.raises(ConfigError, match="local, ray"):
        executors.configure(backend="dask")
    monkeypatch.setenv("CHARMETA_EXECUTOR", "spark")
    monkeypatch.setattr(executors, "_OVERRIDE", None)
    with pytest.raises(ConfigError):
        executors.current()


def test_gpu_only_for_image_shards_with_an_embedder(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    from charmeta.executors.ray_executor import RayExecutor
    from charmeta.sources import Source, write_registry

    repo = Path(__file__).resolve().parents[2]
    specs = Source(str(repo / "samples")).discover()
    write_registry(str(tmp_path), specs)
    tar = next(s.key for s in specs if s.fmt == "tar")
    text = next(s.key for s in specs if s.fmt == "jsonl")

    def _chain_worker(args):  # noqa: ANN001, ANN202 - stands in for charmeta_dagster.chain._chain_worker by name
        return args

    ex = object.__new__(RayExecutor)
    ex.cfg = executors.ExecutorConfig(backend="ray", num_gpus_per_image_task=0.5)
    root = str(tmp_path)
    assert ex.resources(_chain_worker, (root, tar, "text", "clip:m", False, ())) == {"num_cpus": 1.0, "num_gpus": 0.5}
    assert ex.resources(_chain_worker, (root, text, "text", "clip:m", False, ())) == {"num_cpus": 1.0}
    assert ex.resources(_chain_worker, (root, tar, "text", "none", False, ())) == {"num_cpus": 1.0}
