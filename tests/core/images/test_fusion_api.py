"""Fusion of caption and pixel evidence, and the one-image API (including the offline path)."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from charmeta.fusion import fuse, fuse_counts, fuse_decision
from charmeta.images.api import extract_image
from charmeta.images.config import ImageConfig
from charmeta.records import Decision, Extraction, to_cli_json

from .conftest import solid, stub_extract


def test_fuse_decision_rules():
    t, p = Decision("Blonde", 0.9, ["blonde_hair"]), Decision("Blonde", 0.6, ["pixel:zero-shot:Blonde=0.60"])
    d = fuse_decision("Hair Color", t, p)
    assert d.value == "Blonde" and d.confidence == pytest.approx(0.96) and not d.conflict
    assert d.evidence == ["tag:blonde_hair", "pixel:zero-shot:Blonde=0.60"]
    d = fuse_decision("Hair Color", t, Decision("Black", 0.8, ["pixel:head:Black=0.80"]))
    assert d.value == "Blonde" and d.conflict and d.confidence == pytest.approx(0.9 * (1 - 0.5 * 0.8))
    assert d.evidence[-1] == "conflict: tag says Blonde, pixels say Black; kept Blonde"
    d = fuse_decision("Hair Color", None, Decision("Red", 0.7, ["pixel:head:Red=0.70"]))
    assert d.value == "Red" and not d.conflict
    d = fuse_decision("Hair Color", Decision("Unknown", 0.0, []), Decision("Unknown", 0.0, ["pixel:x"]))
    assert d.value == "Unknown"


def test_fuse_counts():
    assert fuse_counts(1, 2, "haar") == (1, True, "character count disagrees: caption says 1, pixels say 2 (haar)")
    assert fuse_counts(None, 2) == (2, True, None)
    assert fuse_counts(1, 1) == (1, False, None)
    assert fuse_counts(None, None) == (None, False, None)


def test_fuse_keeps_caption_metadata_and_invalid_caption_note():
    text = stub_extract("1girl, red_hair")
    text.characters = ["hakurei_reimu"]
    ex = fuse(text, None, pixel_count=1)
    assert ex.input_kind == "image" and ex.characters == ["hakurei_reimu"]
    assert ex.attributes["Hair Color"].value == "Red" and ex.attributes["Hair Color"].evidence == ["tag:red_hair"]
    ex = fuse(Extraction.invalid("empty or whitespace-only text"), None)
    assert ex.status == "ok" and ex.reason == "caption ignored: empty or whitespace-only text"


@pytest.fixture
def cfg(tiny_clip, tmp_path) -> ImageConfig:
    return ImageConfig(
        model=str(tiny_clip), cache_dir=str(tmp_path / "c"), heads_dir=str(tmp_path / "h"), counter="haar"
    )


def test_extract_image_with_tiny_model(cfg, tmp_path):
    p = tmp_path / "x.png"
    p.write_bytes(solid((230, 40, 40), (64, 64)))
    ex = extract_image(p, "1girl, red_hair", cfg, text_extract=stub_extract)
    assert ex.status == "ok" and ex.input_kind == "image" and ex.character_count == 1
    hc = ex.attributes["Hair Color"]
    assert hc.value == "Red" and hc.evidence[0] == "tag:red_hair"
    assert any(e.startswith("pixel:zero-shot:") for e in hc.evidence)
    js = to_cli_json(ex, "x")
    assert js["attributes"]["Hair Color"] == "Red"
    assert extract_image(p, None, cfg).attributes["Hair Color"].evidence[0].startswith("pixel:")


def test_extract_image_invalid_and_offline(tmp_path, cfg):
    assert extract_image(b"", None, cfg).reason == "zero-byte image"
    assert extract_image(tmp_path / "missing.jpg", None, cfg).reason.startswith("image file not found")
    off = ImageConfig(model="nobody/no-such-model", cache_dir=str(tmp_path / "c2"), counter="none")
    ex = extract_image(solid((0, 0, 0)), "1girl, blonde_hair, long_hair", off, text_extract=stub_extract)
    assert ex.status == "ok"
    assert ex.attributes["Hair Color"].value == "Blonde" and ex.attributes["Hair Length"].value == "Long"
    assert ex.reason.startswith("image model unavailable: nobody/no-such-model@main is not in the local")


def test_multi_character_from_pixels_without_caption(cfg):
    skdata = pytest.importorskip("skimage.data")
    face = Image.fromarray(skdata.astronaut()).resize((512, 512))
    pair = Image.new("RGB", (1024, 512), "white")
    pair.paste(face, (0, 0))
    pair.paste(face.transpose(Image.Transpose.FLIP_LEFT_RIGHT), (512, 0))
    buf = io.BytesIO()
    pair.save(buf, "JPEG", quality=90)
    ex = extract_image(buf.getvalue(), None, cfg)
    assert ex.multi_character and ex.status == "multi_character" and ex.character_count == 2
    ex = extract_image(buf.getvalue(), "1girl, solo", cfg, text_extract=stub_extract)
    assert ex.multi_character and ex.character_count == 1
    assert "character count disagrees: caption says 1, pixels say 2 (haar)" in ex.reason


def test_extract_image_with_project_caption_extractor(cfg):
    pytest.importorskip("charmeta.extractors.text")
    ex = extract_image(solid((240, 220, 90), (64, 64)), "1girl, solo, blonde_hair, long_hair, blue_eyes", cfg)
    assert ex.status == "ok" and ex.character_count == 1
    assert ex.attributes["Hair Color"].value == "Blonde"
    assert ex.attributes["Hair Color"].evidence[0].startswith("tag:")
    assert any(e.startswith("pixel:") for e in ex.attributes["Hair Color"].evidence)
