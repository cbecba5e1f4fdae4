"""What every image-embedder backend shares: the normalisation constants and the device choice.

Why a module of its own: ``embedders`` picks a backend and imports the optional ``open_clip_backend``
when it is chosen, while that backend needs these same constants; kept in ``embedders`` the two
imported each other (an import cycle). Both import them from here.
"""

from __future__ import annotations

from charmeta.errors import ConfigError

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
