"""The abstract image-model resources: one ``ConfigurableResource`` subclass per backend.

A backend class is thin: its fields are what an operator sets in the launchpad,
and ``spec_fields()`` turns them into the fields of the spec string the
Dagster-free stages take (``charmeta.pipeline.image_stages.make_spec``; the spec
is also part of the image stages' fingerprints, so switching a backend or its
model recomputes them). Nothing here imports torch or onnxruntime.

``kind`` is the backend's name in run config: the launchpad shows each part as
a selector keyed by ``kind`` (a Pydantic discriminated union, which Dagster
turns into a ``Selector``), e.g. ``embedder: {clip: {model: ...}}``. It must be
a Python identifier (Dagster config keys are), so ``animeface+haar`` is
``animeface_haar`` there; ``setting`` is the name used by ``charmeta.settings``
(``--embedder``, ``--counter``, ...), the same as ``kind`` unless it cannot be.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

from dagster import ConfigurableResource

from charmeta.errors import ConfigError
from charmeta.settings import Settings


class ImageBackend(ConfigurableResource, ABC):
    """Common to every backend class: its ``kind`` (run config) and ``setting`` (``Settings``) names."""

    #: The ``Settings`` value that selects this backend (``None``: the ``kind`` field's default).
    setting: ClassVar[str | None] = None

    @classmethod
    def kind_name(cls) -> str:
        return str(cls.model_fields["kind"].default)

    @classmethod
    def setting_name(cls) -> str:
        return cls.setting if cls.setting is not None else cls.kind_name()

    @classmethod
    def from_settings(cls, settings: Settings) -> ImageBackend:
        """This backend configured from ``settings`` (override for fields the settings carry)."""
        return cls()

    @abstractmethod
    def spec_fields(self) -> dict[str, Any]:
        """The spec fields this backend contributes (empty values are left out of the spec)."""


class ImageEmbedderResource(ImageBackend, ABC):
    """The image embedder (``embeddings``, pixel heads, zero-shot): ``Settings.embedder`` picks it."""

    @abstractmethod
    def backend_name(self) -> str:
        """The core's backend name (``charmeta.pipeline.image_stages.BACKENDS``)."""


class TaggerResource(ImageBackend, ABC):
    """The Danbooru-style tagger run in ``normalized_images``: ``Settings.tagger`` picks it."""


class CaptionerResource(ImageBackend, ABC):
    """The VLM captioner run in ``normalized_images``: ``Settings.captioner`` picks it."""


class LLMReaderResource(ImageBackend, ABC):
    """The LLM reader of the text entries the rules leave uncertain (``charmeta.llm``), a field of
    the ``extractor`` resource: ``Settings.llm_reader`` picks it. Its ``spec_fields`` are the
    ``llm`` part of the extractor spec (``charmeta.llm.reader.make_spec``); empty = no reader."""


class FaceCounterResource(ImageBackend, ABC):
    """The character counter run on the full-resolution decode: ``Settings.counter`` picks it."""


def backends_of(base: type) -> dict[str, type[ImageBackend]]:
    """Every concrete subclass of ``base`` imported so far, by ``kind`` (sorted, for a stable schema)."""
    found: dict[str, type[ImageBackend]] = {}
    todo: list[type[ImageBackend]] = list(base.__subclasses__())
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if "kind" in cls.model_fields and not getattr(cls, "__abstractmethods__", None):
            found[cls.kind_name()] = cls
    return dict(sorted(found.items()))


def backend_for(base: type, setting: str, settings: Settings) -> ImageBackend:
    """The subclass of ``base`` whose setting name is ``setting``, configured from ``settings``."""
    by_setting = {cls.setting_name(): cls for cls in backends_of(base).values()}
    cls = by_setting.get(setting) or backends_of(base).get(setting)
    if cls is None:
        raise ConfigError(
            f"unknown {base.__name__.removesuffix('Resource').lower()} backend {setting!r}: "
            f"choose from {', '.join(sorted(by_setting))}"
        )
    return cls.from_settings(settings)
