"""Optional open_clip backend (``CHARMETA_IMAGE_BACKEND=open_clip``), used only when installed.

Why separate: open_clip is not a dependency of the ``images`` extra; this module
keeps its import out of the common path and turns its absence into a clear error.
The model string is ``<arch>:<local .safetensors file>``, e.g. ``ViT-B-32:/models/vitb32.safetensors``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from charmeta.errors import ModelLoadError
from charmeta.images.config import ImageConfig
from charmeta.images.embedder_base import CLIP_MEAN, CLIP_STD, resolve_device


class OpenClipEmbedder:
    def __init__(self, cfg: ImageConfig) -> None:
        try:
            import open_clip
            import torch
        except ImportError as exc:
            raise ModelLoadError("backend open_clip selected but the open_clip package is not installed") from exc
        arch, _, weights = cfg.model.partition(":")
        if not weights.endswith(".safetensors") or not Path(weights).is_file():
            raise ModelLoadError(f"open_clip needs '<arch>:<local file>.safetensors', got {cfg.model!r}")
        self.device = resolve_device(cfg.device)
        model, _, _ = open_clip.create_model_and_transforms(arch, pretrained=weights)
        self.model = model.to(self.device).eval()
        self.tokenizer = open_clip.get_tokenizer(arch)
        self.model_id, self.revision, self.backend = cfg.model, "local", "open_clip"
        size = getattr(self.model.visual, "image_size", 224)
        self.image_size = int(cfg.image_size or (size[0] if isinstance(size, (tuple, list)) else size))
        self.dim = int(self.model.text_projection.shape[1])
        self.logit_scale = float(self.model.logit_scale.exp().item())
        self._mean = torch.tensor(CLIP_MEAN, device=self.device).view(1, 3, 1, 1) * 255.0
        self._std = torch.tensor(CLIP_STD, device=self.device).view(1, 3, 1, 1) * 255.0

    def embed_pixels(self, pixels_uint8: Any) -> np.ndarray:
        import torch

        with torch.inference_mode():
            x = (pixels_uint8.to(self.device).float() - self._mean) / self._std
            f = torch.nn.functional.normalize(self.model.encode_image(x).float(), dim=-1)
        return f.cpu().numpy().astype(np.float32)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            f = self.model.encode_text(self.tokenizer(list(texts)).to(self.device)).float()
            f = torch.nn.functional.normalize(f, dim=-1)
        return f.cpu().numpy().astype(np.float32)
