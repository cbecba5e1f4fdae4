"""Tagger backends: run on every decoded image in ``normalized_images``, their tags read by
the tag engine (evidence ``tagger:<tag>:<score>``)."""

from __future__ import annotations

from typing import Any, Literal

from charmeta.settings import Settings
from charmeta_dagster.backends.base import ImageBackend, TaggerResource

#: ``ImageConfig.tagger_batch_size``'s default: left out of the spec.
DEFAULT_TAGGER_BATCH = 16


class NoTagger(TaggerResource):
    """No tagger (the default: ``Settings.tagger`` is empty)."""

    kind: Literal["none"] = "none"

    def spec_fields(self) -> dict[str, Any]:
        return {}


class WDTagger(TaggerResource):
    """A SmilingWolf WD-format ONNX tagger (``model.onnx`` + ``selected_tags.csv``) under ONNX
    Runtime (CUDA provider when installed). ``model``: a folder or a Hugging Face id."""

    kind: Literal["wd"] = "wd"
    model: str
    revision: str = ""
    batch_size: int = DEFAULT_TAGGER_BATCH  # images per ONNX call (and per cache lookup)

    @classmethod
    def from_settings(cls, settings: Settings) -> ImageBackend:
        return cls(model=settings.tagger, revision=settings.tagger_revision, batch_size=settings.tagger_batch_size)

    def spec_fields(self) -> dict[str, Any]:
        return {
            "tagger": self.model,
            "tagger_revision": self.revision,
            "tagger_batch_size": self.batch_size if self.batch_size != DEFAULT_TAGGER_BATCH else None,
        }
