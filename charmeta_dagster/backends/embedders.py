"""Image embedder backends (``embeddings``, the pixel heads, zero-shot colours).

Each class is one backend of ``charmeta.images.embedders`` (``none``, ``auto``,
``clip``, ``siglip``, ``open_clip``); the model itself is loaded by the core
from the spec, in the worker that needs it.
"""

from __future__ import annotations

from typing import Any, Literal

from charmeta.settings import Settings
from charmeta_dagster.backends.base import ImageBackend, ImageEmbedderResource

#: ``ImageConfig.batch_size``'s default: left out of the spec (and so of the fingerprints).
DEFAULT_BATCH = 32


class NoEmbedder(ImageEmbedderResource):
    """No model: images are decoded, validated, counted (and tagged, with a tagger); image rows
    keep their caption's attributes. The default: a fresh machine has no weights."""

    kind: Literal["none"] = "none"

    def backend_name(self) -> str:
        return "none"

    def spec_fields(self) -> dict[str, Any]:
        return {}


class _ModelEmbedder(ImageEmbedderResource):
    """A model-backed embedder: a Hugging Face id (offline cache unless ``allow_download``) or a folder."""

    model: str = ""  # "" = the image library's default (CHARMETA_IMAGE_MODEL / ImageConfig)
    revision: str = ""
    batch_size: int = DEFAULT_BATCH

    @classmethod
    def from_settings(cls, settings: Settings) -> ImageBackend:
        return cls(model=settings.image_model, revision=settings.image_revision)

    def backend_name(self) -> str:
        return str(self.kind)  # type: ignore[attr-defined]

    def spec_fields(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "revision": self.revision,
            "batch_size": self.batch_size if self.batch_size != DEFAULT_BATCH else None,
        }


class AutoEmbedder(_ModelEmbedder):
    """The backend named by the model's ``config.json`` (CLIP or SigLIP)."""

    kind: Literal["auto"] = "auto"


class ClipEmbedder(_ModelEmbedder):
    """A transformers CLIP model."""

    kind: Literal["clip"] = "clip"


class SiglipEmbedder(_ModelEmbedder):
    """A transformers SigLIP model."""

    kind: Literal["siglip"] = "siglip"


class OpenClipEmbedder(_ModelEmbedder):
    """An OpenCLIP model (``hf-hub:`` id or local checkpoint)."""

    kind: Literal["open_clip"] = "open_clip"
