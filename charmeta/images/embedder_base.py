"""What every image-embedder backend shares: the normalisation constants and the device choice.

Why a module of its own: ``embedders`` picks a backend and imports the optional ``open_clip_backend``
when it is chosen, while that backend needs these same constants; kept in ``embedders`` the two
imported each other (an import cycle). Both import them from here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from charmeta.errors import ConfigError

T = TypeVar("T")


class LoadedModels(Generic[T]):
    """Models loaded once per process and shared, by the settings that chose them (the tagger, the
    captioner and the local LLM reader each keep one): a model is seconds to load and hundreds of MB,
    and every batch of every partition in a worker asks for it again. The lock makes two threads
    asking at once load it once."""

    def __init__(self) -> None:
        self._models: dict[Hashable, T] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable, load: Callable[[], T]) -> T:
        with self._lock:
            if key not in self._models:
                self._models[key] = load()
            return self._models[key]


CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
SIGLIP_MEAN, SIGLIP_STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


def resolve_device(name: str = "auto") -> str:
    """``auto``: CUDA, then Apple MPS, then CPU; an explicit ``cuda`` on a machine without one is a
    ``ConfigError`` at start-up rather than a torch error on the first batch."""
    import torch

    if name != "auto":
        if name == "cuda" and not torch.cuda.is_available():
            raise ConfigError("CHARMETA_IMAGE_DEVICE=cuda but no CUDA device is available; use auto or cpu")
        return name
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"
