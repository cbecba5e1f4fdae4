"""Captioner backends: a VLM writes a caption per picture in ``normalized_images``, read by the
prose reader (evidence ``captioner:<phrase>``; ``charmeta.images.captioner``)."""

from __future__ import annotations

from typing import Any, Literal

from charmeta.settings import Settings
from charmeta_dagster.backends.base import CaptionerResource, ImageBackend


class NoCaptioner(CaptionerResource):
    """No captioner (the default: ``Settings.captioner`` is empty)."""

    kind: Literal["none"] = "none"

    def spec_fields(self) -> dict[str, Any]:
        return {}


class TransformersCaptioner(CaptionerResource):
    """A transformers image-text-to-text model (BLIP, BLIP-2, Florence-2, Qwen2-VL): a folder or a
    Hugging Face id (offline cache unless downloads are allowed); ``prompt`` is BLIP's text prefix
    or a chat VLM's instruction."""

    kind: Literal["transformers"] = "transformers"
    model: str
    revision: str = ""
    prompt: str = ""

    @classmethod
    def from_settings(cls, settings: Settings) -> ImageBackend:
        return cls(model=settings.captioner, prompt=settings.captioner_prompt)

    def spec_fields(self) -> dict[str, Any]:
        return {"captioner": self.model, "captioner_revision": self.revision, "captioner_prompt": self.prompt}
