"""Guard: animeface must find the faces on the real drawings shipped in ``samples/drawings``.

Why: under Pillow 12.3/13 ``animeface.detect`` silently returns no face at all, and
every earlier test still passed because none asserted a detection on a real drawing.
These do, through the path the product uses (``CharacterCounter`` ->
``animeface_native``), on the hand-labeled pictures (``labels.toml``).
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

pytest.importorskip("animeface")
from PIL import Image  # noqa: E402

from charmeta.images import animeface_native  # noqa: E402
from charmeta.images.counter import CharacterCounter  # noqa: E402

DRAWINGS = Path(__file__).resolve().parents[2] / "samples" / "drawings"
LABELS = tomllib.loads((DRAWINGS / "labels.toml").read_text("utf-8"))


def _img(stem: str) -> Image.Image:
    return Image.open(DRAWINGS / f"{stem}.jpg")


@pytest.fixture(scope="module")
def counter() -> CharacterCounter:
    c = CharacterCounter("auto")
    assert c.name == "animeface"  # auto = the anime detector alone on drawings
    return c


@pytest.mark.parametrize("stem", sorted(s for s, lab in LABELS.items() if lab["characters"] == 1))
def test_one_face_on_every_single_character_drawing(counter: CharacterCounter, stem: str) -> None:
    res = counter.count(_img(stem))
    assert res.count == 1, f"{stem}: {res.count} faces"
    (face,) = res.faces
    assert face.likelihood >= 0.5 and face.box[2] >= 40  # a real face box, not a speck


def test_scenes_show_several_faces_and_the_empty_photo_none(counter: CharacterCounter) -> None:
    for stem, lab in LABELS.items():
        if lab["characters"] >= 2:
            assert counter.count(_img(stem)).count >= 2, stem
    assert counter.count(_img("scene-washington-empty")).count == 0


def test_colours_are_reproducible_and_plausible() -> None:
    im = _img("lucy-happy")
    a, b = animeface_native.detect(im), animeface_native.detect(im)
    assert a == b  # the k-means behind the colours is seeded
    assert max(a[0].hair) < 60  # Lucy's hair is black
    sylvie = animeface_native.detect(_img("sylvie-blue-normal"))[0]
    r, g, bl = sylvie.left_eye
    assert bl > r and bl > g  # Sylvie's eyes are blue
