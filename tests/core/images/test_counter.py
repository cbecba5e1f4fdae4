"""CharacterCounter on real photos shipped with scikit-image (offline weights: OpenCV cascade, animeface)."""

from __future__ import annotations

import pytest
from PIL import Image

from charmeta.images.counter import CharacterCounter, merge_boxes

skdata = pytest.importorskip("skimage.data")
pytest.importorskip("cv2")


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    return Image.fromarray(skdata.astronaut())


def test_one_face_two_faces_none(astronaut):
    c = CharacterCounter("auto")
    assert "haar" in c.name
    assert c.count(astronaut).count == 1
    pair = Image.new("RGB", (1024, 512), "white")
    half = astronaut.resize((512, 512))
    pair.paste(half, (0, 0))
    pair.paste(half.transpose(Image.Transpose.FLIP_LEFT_RIGHT), (512, 0))
    assert c.count(pair).count == 2
    assert c.count(Image.fromarray(skdata.coffee())).count == 0


def test_none_backend_and_merge():
    assert CharacterCounter("none").count(Image.new("RGB", (8, 8))).count is None
    assert merge_boxes([(0, 0, 10, 10), (1, 1, 10, 10), (50, 50, 10, 10)]) == [(0, 0, 10, 10), (50, 50, 10, 10)]
    with pytest.raises(ValueError, match="unknown counter backend"):
        CharacterCounter("yolo")
