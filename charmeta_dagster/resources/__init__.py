"""Resources: the three things an operator swaps by config, never by code.

* ``SourceResource`` - where entries come from (folder, file, glob, ``hf://``)
  and how they are cut into partitions (``shard_rows``, ``text_field``);
* ``OutputStore`` - the output root every stage writes under;
* ``ExtractorResource`` - the extractor backend (``text`` = ``Engine.default()``,
  ``null``, or ``package.module:factory``), the image embedder, worker processes.

Defaults come from ``CHARMETA_*`` environment variables so ``charmeta ui`` and
``charmeta run`` point the same code location at a dataset; the launchpad or
``charmeta run`` override them per run through run config.
"""

from __future__ import annotations

import os
from pathlib import Path

from dagster import ConfigurableResource, InitResourceContext

from charmeta.sources import DEFAULT_SHARD_ROWS, Source
from charmeta_dagster.stages import Store, default_workers

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _env_path(name: str, default: Path) -> str:
    value = os.environ.get(name)
    if value:
        return value if "://" in value else str(Path(value).expanduser().resolve())
    return str(default)


def default_source() -> str:
    return _env_path("CHARMETA_SOURCE", PROJECT_ROOT / "samples")


def default_output() -> str:
    return _env_path("CHARMETA_OUTPUT", PROJECT_ROOT / "out" / "demo")


class SourceResource(ConfigurableResource):
    """A dataset location and how to shard it."""

    uri: str
    shard_rows: int = DEFAULT_SHARD_ROWS
    text_field: str = ""
    image_field: str = ""  # image column of Parquet / Arrow tables ("" = auto-detect)
    config: str = ""  # README ``configs`` entry to follow ("" = the card's default)

    def source(self) -> Source:
        return Source(
            self.uri,
            shard_rows=self.shard_rows,
            text_field=self.text_field or None,
            image_field=self.image_field or None,
            config=self.config or None,
        )


class OutputStore(ConfigurableResource):
    """Root folder of all stage outputs (``<root>/<stage>/<partition>.parquet``) and the export."""

    root: str

    def store(self) -> Store:
        return Store(self.root)


class ExtractorResource(ConfigurableResource):
    """Extractor / embedder backends and the number of worker processes per step (0 = auto)."""

    backend: str = "text"
    embedder: str = "none"
    workers: int = 0
    #: Where partitions run: "" = ``CHARMETA_EXECUTOR`` (default ``local`` processes), or ``ray``.
    executor: str = ""
    #: Ray head (``host:port``, ``ray://host:10001``, ``auto``); "" = ``CHARMETA_RAY_ADDRESS``.
    ray_address: str = ""

    def n_workers(self) -> int:
        return self.workers if self.workers > 0 else default_workers()

    def setup_for_execution(self, context: InitResourceContext) -> None:
        """Run config may move this run's partitions to Ray (charmeta.executors); the env decides otherwise."""
        if self.executor or self.ray_address:
            from charmeta import executors

            executors.configure(backend=self.executor, ray_address=self.ray_address)


def default_resources() -> dict[str, ConfigurableResource]:
    return {
        "source": SourceResource(
            uri=default_source(),
            shard_rows=int(os.environ.get("CHARMETA_SHARD_ROWS", DEFAULT_SHARD_ROWS)),
            text_field=os.environ.get("CHARMETA_TEXT_FIELD", ""),
            image_field=os.environ.get("CHARMETA_IMAGE_FIELD", ""),
            config=os.environ.get("CHARMETA_SOURCE_CONFIG", ""),
        ),
        "store": OutputStore(root=default_output()),
        "extractor": ExtractorResource(
            backend=os.environ.get("CHARMETA_EXTRACTOR", "text"),
            embedder=os.environ.get("CHARMETA_EMBEDDER", "none"),
        ),
    }
