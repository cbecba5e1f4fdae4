"""Settings of the image path, from code or environment, in one frozen object.

Why one object: the embedder, cache, predictor and counter are all keyed by it,
and Dagster resources / the CLI build it once from the environment.

Environment variables (all optional):

* ``CHARMETA_IMAGE_MODEL``    - HF model id or local folder (default: ``openai/clip-vit-base-patch32``)
* ``CHARMETA_IMAGE_BACKEND``  - ``clip`` | ``siglip`` | ``open_clip`` | ``auto`` (default ``auto``: from config.json)
* ``CHARMETA_IMAGE_REVISION`` - pinned revision (commit sha / tag) for hub ids (default ``main``)
* ``CHARMETA_IMAGE_DEVICE``   - ``auto`` | ``cpu`` | ``cuda`` | ``mps``
* ``CHARMETA_IMAGE_CACHE``    - folder of the content-addressed embedding cache
* ``CHARMETA_IMAGE_HEADS``    - folder of trained attribute heads
* ``CHARMETA_ALLOW_DOWNLOAD`` - ``1`` to let a hub id download; otherwise loading is offline-only and fails fast
* ``CHARMETA_COUNTER``        - ``auto`` | ``animeface`` | ``haar`` | ``animeface+haar`` | ``none``
* ``CHARMETA_TAGGER_MODEL``   - WD tagger: local folder (``model.onnx`` + ``selected_tags.csv``) or HF id
  (``SmilingWolf/wd-vit-tagger-v3``); unset = no tagger
* ``CHARMETA_TAGGER_REVISION`` - pinned revision of a hub tagger (default ``main``)
* ``CHARMETA_CAPTIONER_MODEL`` - VLM captioner: transformers image-text-to-text folder or HF id
  (``Salesforce/blip-image-captioning-base``, ``microsoft/Florence-2-base``, ...); unset = no captioner
* ``CHARMETA_CAPTIONER_REVISION`` - pinned revision of a hub captioner (default ``main``)
* ``CHARMETA_CAPTIONER_PROMPT`` - text prefix / instruction for the captioner (default none)
* ``CHARMETA_TAGGER_BATCH``    - images per tagger call (default 16)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

DEFAULT_MODEL = "openai/clip-vit-base-patch32"


def _default_home() -> Path:
    return Path(os.environ.get("CHARMETA_HOME", Path.home() / ".cache" / "charmeta"))


@dataclass(frozen=True)
class ImageConfig:
    """Everything that selects and tunes the image models; hashable so it can key caches."""

    model: str = DEFAULT_MODEL
    backend: str = "auto"
    revision: str = "main"
    device: str = "auto"
    batch_size: int = 32
    workers: int = 0
    fp16_on_gpu: bool = True
    allow_download: bool = False
    cache_dir: str | None = None
    heads_dir: str | None = None
    counter: str = "auto"
    max_bytes: int = 64 * 1024 * 1024
    max_side: int = 16_384
    max_pixels: int = 40_000_000
    image_size: int | None = None  # None: the model's own input size
    tagger: str | None = None  # WD tagger folder or HF id; None = no tagger
    tagger_revision: str = "main"
    tagger_batch_size: int = 16  # images per ONNX call and per cache lookup (see normalize.normalize_batch)
    captioner: str | None = None  # VLM captioner folder or HF id; None = no captioner
    captioner_revision: str = "main"
    captioner_prompt: str = ""
    captioner_max_tokens: int = 40

    @classmethod
    def from_env(cls, **overrides: object) -> ImageConfig:
        """Build from ``CHARMETA_*`` environment variables; keyword overrides win."""
        env = os.environ
        cfg = cls(
            model=env.get("CHARMETA_IMAGE_MODEL", DEFAULT_MODEL),
            backend=env.get("CHARMETA_IMAGE_BACKEND", "auto"),
            revision=env.get("CHARMETA_IMAGE_REVISION", "main"),
            device=env.get("CHARMETA_IMAGE_DEVICE", "auto"),
            allow_download=env.get("CHARMETA_ALLOW_DOWNLOAD", "") in ("1", "true", "yes"),
            cache_dir=env.get("CHARMETA_IMAGE_CACHE") or str(_default_home() / "embeddings"),
            heads_dir=env.get("CHARMETA_IMAGE_HEADS") or str(_default_home() / "heads"),
            counter=env.get("CHARMETA_COUNTER", "auto"),
            tagger=env.get("CHARMETA_TAGGER_MODEL") or None,
            tagger_revision=env.get("CHARMETA_TAGGER_REVISION") or "main",
            tagger_batch_size=int(env.get("CHARMETA_TAGGER_BATCH") or 16),
            captioner=env.get("CHARMETA_CAPTIONER_MODEL") or None,
            captioner_revision=env.get("CHARMETA_CAPTIONER_REVISION", "main"),
            captioner_prompt=env.get("CHARMETA_CAPTIONER_PROMPT", ""),
        )
        return replace(cfg, **overrides)  # type: ignore[arg-type]

    def with_(self, **changes: object) -> ImageConfig:
        return replace(self, **changes)  # type: ignore[arg-type]
