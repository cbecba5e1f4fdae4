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

import dagster as dg
from dagster import ConfigurableResource

from charmeta.pipeline.executor import default_workers
from charmeta.pipeline.image_stages import embedder_config_from_env, make_spec
from charmeta.pipeline.layout import Layout
from charmeta.sources import DEFAULT_SHARD_ROWS, Source

PROJECT_ROOT = Path(__file__).resolve().parents[3]


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

    def source(self) -> Source:
        return Source(self.uri, shard_rows=self.shard_rows, text_field=self.text_field or None)


class OutputStore(ConfigurableResource):
    """Root folder of all stage outputs (``<root>/<stage>/<partition>.parquet``) and the export."""

    root: str

    def store(self) -> Layout:
        return Layout(self.root)


class ExtractorResource(ConfigurableResource):
    """Extractor / embedder backends and the number of worker processes per step (0 = auto)."""

    backend: str = "text"
    embedder: str = "none"
    workers: int = 0

    def n_workers(self) -> int:
        return self.workers if self.workers > 0 else default_workers()


def default_resources() -> dict[str, ConfigurableResource]:
    return {
        "source": SourceResource(
            uri=default_source(),
            shard_rows=int(os.environ.get("CHARMETA_SHARD_ROWS", DEFAULT_SHARD_ROWS)),
            text_field=os.environ.get("CHARMETA_TEXT_FIELD", ""),
        ),
        "store": OutputStore(root=default_output()),
        "extractor": ExtractorResource(
            backend=os.environ.get("CHARMETA_EXTRACTOR", "text"),
            embedder=os.environ.get("CHARMETA_EMBEDDER", "none"),
        ),
    }


# ---------------------------------------------------------------------------
# image embedder
# ---------------------------------------------------------------------------
"""The ``ImageEmbedder`` resource: which vision-language model embeds the images, by config or env.

``backend``: ``none`` (default: images are decoded, validated and counted, and
image rows get their caption's attributes, but no model is loaded), ``clip``,
``siglip``, ``open_clip`` or ``auto`` (from the model's config.json). ``model``
is a Hugging Face id (offline cache unless ``allow_download``) or a local
folder. Empty fields fall back to ``CHARMETA_IMAGE_*`` (see
``charmeta.images.config``); the embedding cache defaults to
``~/.cache/charmeta/embeddings`` and the heads to ``<output>/attribute_heads``.

Swapping the backend is a run-config change (launchpad / ``charmeta run
--embedder``) or ``CHARMETA_EMBEDDER=...``; no code edit. The resource only
builds a spec string; nothing here imports torch."""


class ImageEmbedderResource(ConfigurableResource):
    """Image embedder backend + model for ``normalized_images`` / ``embeddings`` / ``attribute_heads``."""

    backend: str = "none"
    model: str = ""
    revision: str = ""
    device: str = ""
    cache_dir: str = ""
    heads_dir: str = ""
    counter: str = ""
    batch_size: int = 32

    def spec(self) -> str:
        """The embedder spec the Dagster-free stages take (also part of the fingerprints)."""
        return make_spec(
            self.backend,
            model=self.model,
            revision=self.revision,
            device=self.device,
            cache_dir=self.cache_dir,
            heads_dir=self.heads_dir,
            counter=self.counter,
            batch_size=self.batch_size if self.batch_size != 32 else None,
        )


def image_embedder_from_env(backend: str | None = None) -> ImageEmbedderResource:
    return ImageEmbedderResource(**embedder_config_from_env(backend))  # type: ignore[arg-type]


def embedder_spec(image_embedder: ImageEmbedderResource | None, legacy: str = "none") -> str:
    """The resource's spec; ``ExtractorResource.embedder`` (a backend name) when the resource says none."""
    if image_embedder is not None and image_embedder.backend != "none":
        return image_embedder.spec()
    return legacy or "none"


@dg.definitions
def resources() -> dg.Definitions:
    """The code location's resources, built when it loads (settings are read then, not at import)."""
    return dg.Definitions(
        resources={**default_resources(), "image_embedder": image_embedder_from_env()},
        executor=dg.in_process_executor,
    )
