"""``ImageEmbedder``: one interface over transformers CLIP / SigLIP (and optional open_clip).

Why the guards: model folders come from outside. Only safetensors weights are
loaded (a pickle checkpoint can run code on load), ``trust_remote_code`` is
always off, hub ids resolve offline from the local cache unless downloads are
explicitly allowed (so a machine without network fails in milliseconds with a
clear message instead of hanging on retries), and each model is loaded once per
process and shared by every caller.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from charmeta.errors import ConfigError, ModelLoadError
from charmeta.images.config import ImageConfig
from charmeta.images.embedder_base import CLIP_MEAN, CLIP_STD, SIGLIP_MEAN, SIGLIP_STD, resolve_device

log = logging.getLogger("charmeta.images.embedders")

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")
BACKENDS = ("auto", "clip", "siglip", "open_clip")


class ImageEmbedder(Protocol):
    """What the image path needs from a vision-language model."""

    model_id: str
    revision: str
    backend: str
    image_size: int
    dim: int
    logit_scale: float

    def embed_pixels(self, pixels_uint8: Any) -> np.ndarray:
        """``(N, 3, S, S)`` uint8 tensor -> ``(N, dim)`` float32 L2-normalised embeddings."""
        ...

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Prompts -> ``(N, dim)`` float32 L2-normalised embeddings."""
        ...


def check_safetensors(folder: Path) -> None:
    """Refuse a model folder whose weights are not safetensors (pickle runs code on load)."""
    files = [p.name for p in folder.iterdir() if p.is_file()]
    if any(f.endswith(".safetensors") for f in files):
        return
    pickles = [f for f in files if f.endswith(PICKLE_SUFFIXES)]
    if pickles:
        raise ModelLoadError(
            f"refusing to load {folder}: weights are a pickle checkpoint ({', '.join(sorted(pickles))}); "
            "only safetensors is accepted because unpickling can execute code. Convert it once with "
            "`safetensors` (e.g. model.save_pretrained(dir, safe_serialization=True)) on a trusted machine."
        )
    raise ModelLoadError(f"no model weights (*.safetensors) in {folder}")


def _is_pathlike(model: str) -> bool:
    return model.startswith((".", "/", "~")) or os.sep in model.strip("/").split("/", 1)[-1] or Path(model).exists()


def _hub_cached_file(repo: str, filename: str, revision: str) -> str | None:
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(repo, filename, revision=revision)
        return hit if isinstance(hit, str) else None
    except Exception:
        return None


@dataclass
class _Source:
    path: str  # local folder or hub id
    local_only: bool
    revision: str | None
    config: dict


def _resolve_source(cfg: ImageConfig) -> _Source:
    p = Path(cfg.model).expanduser()
    if p.is_dir():
        check_safetensors(p)
        conf = p / "config.json"
        if not conf.is_file():
            raise ModelLoadError(f"model folder {p} has no config.json")
        return _Source(str(p), True, None, json.loads(conf.read_text("utf-8")))
    if _is_pathlike(cfg.model) and not p.exists():
        raise ModelLoadError(f"model folder not found: {p}")
    repo, rev = cfg.model, cfg.revision
    if not cfg.allow_download:
        conf = _hub_cached_file(repo, "config.json", rev)
        if conf is None:
            raise ModelLoadError(
                f"{repo}@{rev} is not in the local Hugging Face cache and downloads are off "
                "(set CHARMETA_IMAGE_MODEL to a local folder, or CHARMETA_ALLOW_DOWNLOAD=1 on a machine with network)"
            )
        if (
            _hub_cached_file(repo, "model.safetensors", rev) is None
            and _hub_cached_file(repo, "model.safetensors.index.json", rev) is None
        ):
            if _hub_cached_file(repo, "pytorch_model.bin", rev):
                raise ModelLoadError(
                    f"refusing {repo}@{rev}: only a pickle checkpoint (pytorch_model.bin) is cached; "
                    "safetensors weights are required"
                )
            raise ModelLoadError(f"{repo}@{rev}: no safetensors weights in the local cache")
        return _Source(repo, True, rev, json.loads(Path(conf).read_text("utf-8")))
    return _Source(repo, False, rev, {})


def quiet_transformers() -> None:
    """No download bars or warnings from transformers (loading here, saving the tiny test models)."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def pretrained_source(
    model: str, revision: str, allow_download: bool, who: str, setting: str
) -> tuple[_Source, dict[str, Any]]:
    """Where a transformers model other than an embedder (the captioner, the local LLM reader) loads
    from, and the ``from_pretrained`` keywords: the embedders' rules (a local folder or the offline hub
    cache unless downloads are allowed; safetensors only; no remote code). A load error starts with
    ``who`` and names ``setting``, the variable that chose the model."""
    quiet_transformers()
    if not allow_download:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never wait on a network that is not there
    try:
        src = _resolve_source(ImageConfig(model=model, revision=revision, allow_download=allow_download))
    except ModelLoadError as exc:
        raise ModelLoadError(f"{who}: {exc}".replace("CHARMETA_IMAGE_MODEL", setting)) from exc
    kw: dict[str, Any] = dict(trust_remote_code=False, local_files_only=src.local_only)
    if src.revision:
        kw["revision"] = src.revision
    return src, kw


def local_revision(folder: Path) -> str:
    """A content revision for a local folder: sha256 over its config and weight files.

    Why: the embedding cache is keyed by (image, model, revision); a folder path
    alone would serve stale vectors after the weights in it are replaced.
    """
    import hashlib

    h = hashlib.sha256()
    for p in sorted(folder.iterdir()):
        if p.is_file() and (p.suffix == ".safetensors" or p.name == "config.json"):
            h.update(p.name.encode())
            with p.open("rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
    return "local-" + h.hexdigest()[:16]


class HFDualEncoder:
    """CLIP or SigLIP through transformers; fp16 on CUDA, eval mode, no grad."""

    def __init__(self, cfg: ImageConfig) -> None:
        import torch
        from transformers import AutoTokenizer

        quiet_transformers()
        src = _resolve_source(cfg)
        backend = cfg.backend
        mtype = str(src.config.get("model_type", ""))
        if backend == "auto":
            backend = "siglip" if mtype.startswith("siglip") else "clip"
        if backend == "clip":
            from transformers import CLIPModel as Model
        elif backend == "siglip":
            from transformers import SiglipModel as Model  # type: ignore[no-redef]
        else:
            raise ConfigError(f"backend {backend!r} is not a transformers dual encoder; choose from {BACKENDS}")
        kw: dict[str, Any] = dict(use_safetensors=True, trust_remote_code=False, local_files_only=src.local_only)
        if src.revision:
            kw["revision"] = src.revision
        self.device = resolve_device(cfg.device)
        try:
            model = Model.from_pretrained(src.path, **kw)
        except Exception as exc:
            raise ModelLoadError(f"cannot load {backend} model {cfg.model}: {type(exc).__name__}: {exc}") from exc
        self.dtype = torch.float16 if (self.device == "cuda" and cfg.fp16_on_gpu) else torch.float32
        self.model = model.to(self.device, dtype=self.dtype).eval()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(
                src.path,
                trust_remote_code=False,
                **{k: v for k, v in kw.items() if k in ("local_files_only", "revision")},
            )
        except Exception as exc:  # heads still work without a text side; zero-shot will not
            log.warning("no tokenizer for %s (%s): zero-shot disabled, heads only", cfg.model, exc)
            self.tokenizer = None
        self.model_id, self.backend = cfg.model, backend
        self.revision = src.revision or local_revision(Path(src.path))
        vc = self.model.config.vision_config
        self.image_size = int(cfg.image_size or vc.image_size)
        self.dim = int(getattr(self.model.config, "projection_dim", 0) or self.model.config.text_config.hidden_size)
        pre = Path(src.path) / "preprocessor_config.json"
        mean, std = (SIGLIP_MEAN, SIGLIP_STD) if backend == "siglip" else (CLIP_MEAN, CLIP_STD)
        if pre.is_file():
            pc = json.loads(pre.read_text("utf-8"))
            mean, std = tuple(pc.get("image_mean", mean)), tuple(pc.get("image_std", std))
        self._mean = torch.tensor(mean, device=self.device, dtype=self.dtype).view(1, 3, 1, 1) * 255.0
        self._std = torch.tensor(std, device=self.device, dtype=self.dtype).view(1, 3, 1, 1) * 255.0
        self.logit_scale = float(self.model.logit_scale.exp().item())
        self.text_max_len = int(getattr(self.model.config.text_config, "max_position_embeddings", 77))

    @staticmethod
    def _features(out: Any) -> Any:
        return out.pooler_output if hasattr(out, "pooler_output") else out

    def embed_pixels(self, pixels_uint8: Any) -> np.ndarray:
        import torch

        with torch.inference_mode():
            x = pixels_uint8.to(self.device, non_blocking=True).to(self.dtype)
            x = (x - self._mean) / self._std
            f = self._features(self.model.get_image_features(pixel_values=x)).float()
            f = torch.nn.functional.normalize(f, dim=-1)
        return f.cpu().numpy().astype(np.float32)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        if self.tokenizer is None:
            raise ModelLoadError(f"{self.model_id} has no tokenizer: zero-shot prompts cannot be embedded")
        pad = "max_length" if self.backend == "siglip" else True
        enc = self.tokenizer(
            list(texts), padding=pad, truncation=True, max_length=self.text_max_len, return_tensors="pt"
        )
        enc = {k: v.to(self.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
        if self.backend == "siglip":
            enc.pop("attention_mask", None)  # SigLIP was trained without a text mask
        with torch.inference_mode():
            f = self._features(self.model.get_text_features(**enc)).float()
            f = torch.nn.functional.normalize(f, dim=-1)
        return f.cpu().numpy().astype(np.float32)


_MODELS: dict[tuple, ImageEmbedder] = {}
_LOCK = threading.Lock()


def load_embedder(cfg: ImageConfig) -> ImageEmbedder:
    """The process-wide embedder for ``cfg`` (loaded on first use, then shared)."""
    if cfg.backend not in BACKENDS:
        raise ConfigError(f"unknown image backend {cfg.backend!r}; choose from {BACKENDS}")
    key = (cfg.model, cfg.backend, cfg.revision, cfg.device, cfg.fp16_on_gpu, cfg.image_size)
    with _LOCK:
        hit = _MODELS.get(key)
        if hit is None:
            if not cfg.allow_download:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")  # belt and braces: never wait on network
            if cfg.backend == "open_clip":
                from charmeta.images.open_clip_backend import OpenClipEmbedder

                hit = OpenClipEmbedder(cfg)
            else:
                hit = HFDualEncoder(cfg)
            _MODELS[key] = hit
        return hit


def clear_loaded_models() -> None:
    """Forget loaded models (tests; freeing GPU memory between benchmark runs)."""
    with _LOCK:
        _MODELS.clear()
