"""Resources: the things an operator swaps by config, never by code.

* ``SourceResource`` - where entries come from (folder, file, glob, ``hf://``)
  and how they are cut into partitions (``shard_rows``, ``text_field``);
* ``OutputStore`` - the output root every stage writes under;
* ``ExtractorResource`` - the extractor backend: abstract, one subclass per
  backend (``TextExtractor`` = ``Engine.default()``, ``NullExtractor``,
  ``FactoryExtractor`` = ``package.module:factory``), each with an ``llm_reader``
  field (``NoLLMReader``, ``OpenAIEndpointReader``, ``TransformersLLMReader``:
  ``charmeta_dagster.backends.llm_readers``) that reads the uncertain entries again;
* ``PoolExecutorResource`` - where a step's partition tasks run: abstract, one
  subclass per executor (``LocalPool``: a spawn process pool on this machine);
* ``ImageModelsResource`` (key ``image_models``) - the image models, one abstract
  resource per part with one subclass per backend (``charmeta_dagster.backends``):
  ``embedder`` (``NoEmbedder``, ``AutoEmbedder``, ``ClipEmbedder``, ``SiglipEmbedder``,
  ``OpenClipEmbedder``), ``tagger`` (``NoTagger``, ``WDTagger``), ``counter``
  (``AutoCounter``, ``AnimeFaceCounter``, ``HaarCounter``, ``AnimeFaceHaarCounter``,
  ``NoCounter``), ``captioner`` (``NoCaptioner``, ``TransformersCaptioner``); each a selector in the launchpad, e.g.
  ``image_models: {config: {embedder: {clip: {model: ...}}, counter: {animeface: {}}}}``.

Which subclass is bound, and every default, comes from the code location's
settings (``charmeta.settings.Settings``: ``charmeta run`` flags, or the
``CHARMETA_*`` environment ``charmeta ui`` hands its webserver and daemon);
the launchpad overrides their fields per run through run config.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Union

import dagster as dg
from dagster import ConfigurableResource
from pydantic import Field

from charmeta.pipeline.executor import Executor
from charmeta.pipeline.image_stages import make_spec
from charmeta.pipeline.layout import Layout
from charmeta.settings import Settings
from charmeta.sources import DEFAULT_SHARD_ROWS, Source
from charmeta_dagster.backends import (
    CaptionerResource,
    FaceCounterResource,
    ImageEmbedderResource,
    LLMReaderResource,
    TaggerResource,
    backend_for,
    backends_of,
)
from charmeta_dagster.backends.captioners import NoCaptioner
from charmeta_dagster.backends.counters import AutoCounter
from charmeta_dagster.backends.embedders import NoEmbedder
from charmeta_dagster.backends.llm_readers import NoLLMReader
from charmeta_dagster.backends.taggers import NoTagger
from charmeta_dagster.pools import executor_for
from charmeta_dagster.settings import code_location_settings

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _path(value: str, default: Path) -> str:
    if value:
        return value if "://" in value else str(Path(value).expanduser().resolve())
    return str(default)


def default_source(settings: Settings | None = None) -> str:
    """The settings' source, else the bundled ``samples/``."""
    return _path((settings or Settings.load()).source, PROJECT_ROOT / "samples")


def default_output(settings: Settings | None = None) -> str:
    """The settings' output root, else ``out/demo`` (where ``make demo`` writes)."""
    return _path((settings or Settings.load()).output, PROJECT_ROOT / "out" / "demo")


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

    def store(self) -> Layout:
        return Layout(self.root)


def one_of(base: type) -> Any:
    """``Annotated[Union[<every backend of base>], Field(discriminator="kind")]``: a selector in
    the launchpad (Dagster maps a discriminated union to a ``Selector`` keyed by ``kind``)."""
    members = tuple(backends_of(base).values())
    return Annotated[Union[members], Field(discriminator="kind")]  # noqa: UP007 - built at run time


# ---------------------------------------------------------------------------
# extractor backends
# ---------------------------------------------------------------------------
class ExtractorResource(ConfigurableResource, ABC):
    """The extractor backend of ``attribute_predictions`` and, in ``llm_reader``, the LLM reader
    that follows it (``spec()`` is part of the predictions fingerprint)."""

    if TYPE_CHECKING:
        llm_reader: LLMReaderResource
    else:
        llm_reader: one_of(LLMReaderResource) = Field(default_factory=NoLLMReader)

    @abstractmethod
    def backend(self) -> str:
        """The base backend name the Dagster-free runtime takes (``charmeta.pipeline.engines``)."""

    def spec(self) -> str:
        """``backend()``, or with an LLM reader the JSON spec of both (``charmeta.llm.reader.make_spec``:
        the same string ``Settings.extractor_spec`` gives ``charmeta run``)."""
        llm = self.llm_reader.spec_fields()
        if not llm:
            return self.backend()
        from charmeta.llm.reader import make_spec as llm_spec

        return llm_spec(self.backend(), **llm)


class TextExtractor(ExtractorResource):
    """The tag / prose extractor (``Engine.default()``)."""

    def backend(self) -> str:
        return "text"


class NullExtractor(ExtractorResource):
    """Extracts nothing: measures the platform's own cost."""

    def backend(self) -> str:
        return "null"


class FactoryExtractor(ExtractorResource):
    """``factory`` = ``package.module:attr``, returning an ``Engine`` or an extractor."""

    factory: str

    def backend(self) -> str:
        return self.factory


def extractor_resource(name: str, settings: Settings | None = None) -> ExtractorResource:
    """The subclass for an ``extractor`` setting, with the LLM reader ``settings`` name (none by default)."""
    llm: Any = backend_for(LLMReaderResource, settings.llm_reader or "none", settings) if settings else NoLLMReader()
    if name in ("text", "default"):
        return TextExtractor(llm_reader=llm)
    if name == "null":
        return NullExtractor(llm_reader=llm)
    return FactoryExtractor(factory=name, llm_reader=llm)


# ---------------------------------------------------------------------------
# pool executors
# ---------------------------------------------------------------------------
class PoolExecutorResource(ConfigurableResource, ABC):
    """Where the partition tasks of a step run (``charmeta.pipeline.executor.Executor``)."""

    workers: int = 0  # 0: the settings' workers, else the CPU count

    def n_workers(self) -> int:
        return self.workers if self.workers > 0 else code_location_settings().resolved_workers()

    @abstractmethod
    def executor(self) -> Executor:
        """The executor the step hands its partition tasks to."""


class LocalPool(PoolExecutorResource):
    """A spawn process pool on this machine, shared by every step and run of the process."""

    def executor(self) -> Executor:
        return executor_for("local", self.n_workers())


class RayPool(PoolExecutorResource):
    """One Ray task per partition (``charmeta.executors.ray_executor``): a cluster's head, or a
    private Ray on this machine when ``ray_address`` is empty; task resources and retries
    from the ``ray_*`` settings."""

    ray_address: str = ""  # host:port, ray://host:10001 or auto; "" = the settings' (a private local Ray)

    def executor(self) -> Executor:
        return executor_for("ray", self.n_workers(), self.ray_address or code_location_settings().ray_address)


#: ``executor`` setting -> resource class.
POOL_EXECUTORS: dict[str, type[PoolExecutorResource]] = {"local": LocalPool, "ray": RayPool}


def pool_resource(settings: Settings) -> PoolExecutorResource:
    try:
        cls = POOL_EXECUTORS[settings.executor]
    except KeyError:
        raise dg.DagsterInvariantViolationError(
            f"unknown executor {settings.executor!r}: choose from {', '.join(POOL_EXECUTORS)}"
        ) from None
    if cls is RayPool:
        return RayPool(workers=settings.workers, ray_address=settings.ray_address)
    return cls(workers=settings.workers)


# ---------------------------------------------------------------------------
# image models
# ---------------------------------------------------------------------------
class ImageModelsResource(ConfigurableResource):
    """The image models of ``normalized_images`` / ``embeddings`` / ``attribute_heads``: one
    backend per part, each picked in the launchpad (see ``charmeta_dagster.backends``).

    ``embedder`` (default ``none``: images are decoded, validated and counted, and image rows
    get their caption's attributes, but no model is loaded), ``tagger`` (default ``none``),
    ``counter`` (default ``auto``: animeface when it loads), ``captioner`` (default ``none``). ``device`` applies to every
    model; the embedding / tagger cache defaults to ``~/.cache/charmeta/embeddings`` and the
    heads to ``<output>/attribute_heads``. The resource only builds a spec string (part of
    the fingerprints); nothing here imports torch or onnxruntime.
    """

    if TYPE_CHECKING:
        embedder: ImageEmbedderResource
        tagger: TaggerResource
        counter: FaceCounterResource
        captioner: CaptionerResource
    else:
        embedder: one_of(ImageEmbedderResource) = Field(default_factory=NoEmbedder)
        tagger: one_of(TaggerResource) = Field(default_factory=NoTagger)
        counter: one_of(FaceCounterResource) = Field(default_factory=AutoCounter)
        captioner: one_of(CaptionerResource) = Field(default_factory=NoCaptioner)
    device: str = ""  # torch device / ONNX provider choice for every model ("" = auto)
    cache_dir: str = ""
    heads_dir: str = ""

    @classmethod
    def from_settings(cls, settings: Settings) -> ImageModelsResource:
        """The backends and fields ``settings`` name (``--embedder``, ``--tagger``, ``--counter``, ...)."""
        return cls(
            embedder=backend_for(ImageEmbedderResource, settings.embedder, settings),
            tagger=backend_for(TaggerResource, "wd" if settings.tagger else "none", settings),
            counter=backend_for(FaceCounterResource, settings.counter or "auto", settings),
            captioner=backend_for(CaptionerResource, "transformers" if settings.captioner else "none", settings),
            device=settings.image_device,
            cache_dir=settings.image_cache,
            heads_dir=settings.image_heads,
        )

    def spec(self) -> str:
        """The spec the Dagster-free stages take (also part of the fingerprints)."""
        fields = {
            **self.embedder.spec_fields(),
            **self.tagger.spec_fields(),
            **self.counter.spec_fields(),
            **self.captioner.spec_fields(),
            "device": self.device,
            "cache_dir": self.cache_dir,
            "heads_dir": self.heads_dir,
        }
        return make_spec(self.embedder.backend_name(), **fields)


def embedder_spec(image_models: ImageModelsResource | None) -> str:
    """The resource's spec (``none`` when there is no resource)."""
    return image_models.spec() if image_models is not None else "none"


def resources_for(settings: Settings) -> dict[str, ConfigurableResource]:
    """Every resource of the code location, bound and configured from ``settings``."""
    return {
        "source": SourceResource(
            uri=default_source(settings),
            shard_rows=settings.shard_rows,
            text_field=settings.text_field,
            image_field=settings.image_field,
            config=settings.source_config,
        ),
        "store": OutputStore(root=default_output(settings)),
        "extractor": extractor_resource(settings.extractor, settings),
        "pool": pool_resource(settings),
        "image_models": ImageModelsResource.from_settings(settings),
    }


@dg.definitions
def resources() -> dg.Definitions:
    """The code location's resources, built when it loads, from its settings."""
    return dg.Definitions(resources=resources_for(code_location_settings()), executor=dg.in_process_executor)
