"""Offline pixel colours and the image eval harness, on the hand-labeled drawings in ``samples/drawings``.

The figures asserted here are the ones measured when the colour prototypes were
tuned (``charmeta eval --images samples/drawings --labels samples/drawings/labels.toml``):
every Hair / Eye Color named from pixels alone is right, and hair is named on most
single-character drawings. A detector or colour namer that saw nothing would fail
the coverage floor; one that guessed would fail precision.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest.importorskip("animeface")
pytest.importorskip("skimage")

from charmeta.errors import ConfigError  # noqa: E402
from charmeta.images.config import ImageConfig  # noqa: E402
from charmeta.images.evaluate import evaluate_folder, load_labels, score  # noqa: E402
from charmeta.records import Decision, Extraction  # noqa: E402

DRAWINGS = Path(__file__).resolve().parents[2] / "samples" / "drawings"
LABELS = DRAWINGS / "labels.toml"


@pytest.fixture(scope="module")
def offline_config(tmp_path_factory: pytest.TempPathFactory) -> ImageConfig:
    tmp = tmp_path_factory.mktemp("img")
    # no embedding model on this machine: the offline path (animeface + colour naming) is what is measured
    return ImageConfig(model=str(tmp / "no-model"), cache_dir=str(tmp / "c"), heads_dir=str(tmp / "h"), counter="auto")


@pytest.fixture(scope="module")
def pixel_report(offline_config: ImageConfig):
    return evaluate_folder(DRAWINGS, LABELS, use_captions=False, config=offline_config)


def test_pixel_colours_are_precise_and_cover_most_drawings(pixel_report) -> None:
    hair, eyes = pixel_report.attributes["Hair Color"], pixel_report.attributes["Eye Color"]
    assert hair.labeled == 11 and hair.precision == 1.0 and hair.coverage >= 0.6  # measured 7/11, all right
    assert eyes.predicted >= 2 and eyes.precision == 1.0  # measured 2/8 given, both right
    # attributes pixels cannot see are not invented
    assert pixel_report.attributes["Hair Length"].predicted == 0


def test_counts_from_pixels_alone(pixel_report) -> None:
    assert pixel_report.images == 15
    assert pixel_report.multi_precision == 1.0 and pixel_report.multi_recall == 1.0
    assert pixel_report.count_exact >= 14  # measured 14/15: one false face in a two-character scene


def test_extract_image_without_caption_gives_count_and_hair_colour(tmp_path: Path, offline_config) -> None:
    from charmeta.images.api import extract_image

    pic = tmp_path / "lucy.jpg"  # no .txt beside it: the pixels alone must speak
    shutil.copy(DRAWINGS / "lucy-happy.jpg", pic)
    ex = extract_image(pic, None, offline_config)
    assert ex.status == "ok" and ex.character_count == 1
    hair = ex.attributes["Hair Color"]
    assert hair.value == "Black" and hair.evidence[0].startswith("pixel:colors:hair:Black")
    assert "image model unavailable" in (ex.reason or "")  # the clear offline note


def test_scene_with_a_wrong_caption_becomes_multi_character(offline_config) -> None:
    from charmeta.images.api import extract_image

    caption = (DRAWINGS / "scene-meadow-three.txt").read_text("utf-8")
    assert "1girl" in caption and "solo" in caption
    ex = extract_image(DRAWINGS / "scene-meadow-three.jpg", caption, offline_config)
    assert ex.status == "multi_character" and ex.multi_character
    assert "count disagreement: caption says 1, pixels say 3" in ex.reason


def test_score_arithmetic_and_label_validation(tmp_path: Path) -> None:
    labels = {
        "a": {"characters": 1, "Hair Color": "Red"},
        "b": {"characters": 2},
        "c": {"characters": 1, "Hair Color": "Blue"},
    }
    res = {
        "a": Extraction(input_kind="image", character_count=1, attributes={"Hair Color": Decision("Red", 0.5, [])}),
        "b": Extraction(input_kind="image", character_count=1, multi_character=False),
        "c": Extraction(input_kind="image", character_count=2, multi_character=True,
                        attributes={"Hair Color": Decision("Black", 0.5, [])}),
    }  # fmt: skip
    rep = score(labels, res)
    hc = rep.attributes["Hair Color"]
    assert (hc.labeled, hc.predicted, hc.correct) == (2, 2, 1)
    assert (rep.multi_tp, rep.multi_fp, rep.multi_fn) == (0, 1, 1) and rep.count_exact == 1
    bad = tmp_path / "l.toml"
    bad.write_text('[x]\ncharacters = 1\n"Hair Color" = "Teal"\n')
    with pytest.raises(ConfigError, match="not in the contract vocabulary"):
        load_labels(bad)
