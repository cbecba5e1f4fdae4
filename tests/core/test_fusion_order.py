"""Fusion of caption, tagger and pixel sources per attribute: default order and a per-attribute order from data."""

from __future__ import annotations

import pytest

from charmeta.engine import Engine
from charmeta.fusion import fuse_image
from charmeta.images import rules
from charmeta.images.tagger import TagResult, to_extraction
from charmeta.records import Decision, Extraction


@pytest.fixture(scope="module")
def sources() -> tuple[Extraction, Extraction, Extraction]:
    eng = Engine.default()
    caption = eng.extract_text("1girl, solo, blonde hair, long hair")
    tagger = to_extraction(
        TagResult([("1girl", 0.99), ("solo", 0.97), ("red_hair", 0.91)], [], ("general", 0.9)), eng.extract_text
    )
    pixels = Extraction(
        input_kind="image", attributes={"Hair Color": Decision("Orange", 0.5, ["pixel:colors:hair:Orange:0.62"])}
    )
    return caption, tagger, pixels


def test_caption_beats_tagger_beats_pixels_and_keeps_both_sides(sources) -> None:
    caption, tagger, pixels = sources
    out = fuse_image(caption, tagger, pixels, pixel_count=1, pixel_backend="animeface")
    hair = out.attributes["Hair Color"]
    assert hair.value == "Blonde" and hair.conflict
    assert "tag:blonde hair" in hair.evidence and "tagger:red_hair:0.91" in hair.evidence
    assert any(e.startswith("pixel:colors:hair:Orange") for e in hair.evidence)
    no_caption = fuse_image(None, tagger, pixels, pixel_count=1)
    assert no_caption.attributes["Hair Color"].value == "Red"  # tagger over pixel colours
    assert no_caption.rating == "general" and no_caption.character_count == 1


def test_per_attribute_source_order_from_data(sources, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    fusion = importlib.import_module("charmeta.fusion")  # the module as it is now (patched and called alike)
    caption, tagger, pixels = sources

    def policy(attribute: str) -> dict:
        pol = dict(rules.fusion_policy(attribute))
        if attribute == "Hair Color":
            pol["source_order"] = ["tagger", "caption", "pixels"]
        return pol

    monkeypatch.setattr(fusion, "_policy", policy)
    out = fusion.fuse_image(caption, tagger, pixels, pixel_count=1)
    hair = out.attributes["Hair Color"]
    assert hair.value == "Red" and hair.conflict and "tag:blonde hair" in hair.evidence
    assert out.attributes["Hair Length"].value == "Long"  # other attributes keep the default order
