"""Shared fixtures: tiny local models (built once per session), synthetic images, a stub caption extractor."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from PIL import Image  # noqa: E402

from charmeta.records import Decision, Extraction  # noqa: E402

#: tag -> (attribute, value): just enough of a caption extractor for weak labels and fusion tests.
STUB_TAGS = {
    "blonde_hair": ("Hair Color", "Blonde"),
    "red_hair": ("Hair Color", "Red"),
    "blue_hair": ("Hair Color", "Blue"),
    "black_hair": ("Hair Color", "Black"),
    "long_hair": ("Hair Length", "Long"),
    "short_hair": ("Hair Length", "Short"),
    "blue_eyes": ("Eye Color", "Blue"),
}
COUNT_TAGS = {"1girl": 1, "1boy": 1, "2girls": 2, "solo": 1}


def stub_extract(caption: str) -> Extraction:
    """Stand-in for the project's caption extractor (the real one lives in charmeta.extractors.text)."""
    tags = [t.strip() for t in caption.split(",") if t.strip()]
    attrs = {}
    for t in tags:
        if t in STUB_TAGS:
            k, v = STUB_TAGS[t]
            attrs[k] = Decision(v, 0.95, [t])
    counts = [COUNT_TAGS[t] for t in tags if t in COUNT_TAGS]
    n = max(counts) if counts else None
    multi = bool(n and n >= 2)
    return Extraction(
        input_kind="tags",
        status="multi_character" if multi else "ok",
        character_count=n,
        multi_character=multi,
        attributes=attrs,
    )


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory) -> Path:
    from charmeta.images.tiny import build_tiny_clip

    return build_tiny_clip(tmp_path_factory.mktemp("tiny_clip"))


@pytest.fixture(scope="session")
def tiny_siglip(tmp_path_factory) -> Path:
    from charmeta.images.tiny import build_tiny_siglip

    return build_tiny_siglip(tmp_path_factory.mktemp("tiny_siglip"))


def solid(
    color: tuple[int, int, int], size: tuple[int, int] = (48, 40), fmt: str = "PNG", noise: int = 0, seed: int = 0
) -> bytes:
    import numpy as np

    rng = np.random.default_rng(seed)
    arr = np.zeros((size[1], size[0], 3), np.int16) + np.array(color, np.int16)
    if noise:
        arr += rng.integers(-noise, noise + 1, arr.shape).astype(np.int16)
    img = Image.fromarray(arr.clip(0, 255).astype("uint8"), "RGB")
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()
