"""VLM caption backend: the wiring (fake captioner) and the real transformers path (a tiny BLIP that reads pixels).

What these tests prove, and how they avoid "passes if the model saw nothing":

* Wiring (fast): ``ColourCaptioner`` is a fake model whose caption is a function of
  the pixels it is handed (the mean colour of the picture's upper half names the hair).
  Two different drawings must come out with two different hair colours, each with
  ``captioner:<phrase>`` evidence, through ``extract_image`` (``charmeta extract --image``)
  and through the partition path (``normalize_batch`` -> ``extract_table``, what
  ``charmeta run`` calls); a pipeline that dropped or swapped the picture fails.
* The HF path (slow): ``build_tiny_blip`` fits a 50k-parameter BLIP to two real drawings
  (Eileen: red hair, Lucy: black hair). BLIP's text input is the same single [DEC] token
  for every picture, so different captions can only come from the pixels; the test asserts
  the generated captions differ and name the right colour, through ``AutoProcessor`` +
  ``AutoModelForImageTextToText`` loading from a folder, ``charmeta extract --image`` and
  ``charmeta run`` configured by environment only.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from charmeta.images.cache import EmbeddingCache
from charmeta.images.captioner import caption_images, to_extraction
from charmeta.images.config import ImageConfig

DRAWINGS = Path(__file__).resolve().parents[2] / "samples" / "drawings"
EILEEN, LUCY = DRAWINGS / "eileen-happy.jpg", DRAWINGS / "lucy-happy.jpg"


class ColourCaptioner:
    """A fake VLM: "a girl with <colour> hair", the colour read from the reddest region's pixels."""

    model_id = "fake-colour-captioner"
    revision = "1"
    cache_model = "fake-colour-captioner|p"

    def __init__(self) -> None:
        self.calls = 0

    def caption(self, images: list[Image.Image]) -> list[str]:
        out = []
        for im in images:
            self.calls += 1
            a = np.asarray(im.convert("RGB").resize((64, 64)), dtype=np.float32)
            redness = float(np.mean(np.clip(a[..., 0] - a[..., 1] - 40, 0, None)))
            out.append("a girl with red hair" if redness > 2.0 else "a girl with black hair")
        return out


@pytest.fixture
def text_extract() -> Any:
    from charmeta.engine import Engine

    return Engine.default().extract_text


def test_fake_captioner_reads_pixels() -> None:
    """The fake itself must tell the two drawings apart, or the wiring tests below prove nothing."""
    cap = ColourCaptioner()
    assert cap.caption([Image.open(EILEEN), Image.open(LUCY)]) == ["a girl with red hair", "a girl with black hair"]


def test_caption_becomes_attributes_with_captioner_evidence_and_is_cached(text_extract: Any) -> None:
    cap, cache = ColourCaptioner(), EmbeddingCache()
    imgs = {"sha-e": Image.open(EILEEN), "sha-l": Image.open(LUCY)}
    got = caption_images(cap, imgs, cache)
    assert got == {"sha-e": "a girl with red hair", "sha-l": "a girl with black hair"} and cap.calls == 2
    assert caption_images(cap, imgs, cache) == got and cap.calls == 2  # second time: from the cache
    assert cache.get_texts(["sha-e"], cap.cache_model, "other-revision") == {}  # keyed by revision too
    ex = to_extraction(got["sha-e"], text_extract)
    hair = ex.attributes["Hair Color"]
    assert hair.value == "Red" and hair.evidence == ["captioner:red hair"]
    assert ex.attributes["Gender"].evidence == ["captioner:girl"] and ex.character_count == 1
    assert to_extraction("", text_extract) is None and to_extraction(None, text_extract) is None


def _pipe_with(monkeypatch: pytest.MonkeyPatch, cap: Any, tmp_path: Path) -> ImageConfig:
    """An ImageConfig whose pipeline carries ``cap`` as its captioner (no CLIP, no counter)."""
    from charmeta.images import api

    cfg = ImageConfig(model=str(tmp_path / "no-clip"), cache_dir=str(tmp_path / "cache"), counter="none")
    pipe = api.ImagePipeline(cfg, captioner=cap, cache=EmbeddingCache(), unavailable="image model unavailable: test")
    monkeypatch.setitem(api._PIPELINES, cfg, pipe)
    return cfg


def test_extract_image_fuses_the_captioners_reading(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, text_extract: Any
) -> None:
    from charmeta.images.api import extract_image

    cfg = _pipe_with(monkeypatch, ColourCaptioner(), tmp_path)
    red = extract_image(EILEEN, config=cfg, text_extract=text_extract)
    black = extract_image(LUCY, config=cfg, text_extract=text_extract)
    assert red.attributes["Hair Color"].value == "Red" and black.attributes["Hair Color"].value == "Black"
    assert red.attributes["Hair Color"].evidence == ["captioner:red hair"]
    # the record's own caption outranks the captioner (fusion.json: caption > tagger > captioner > pixels)
    both = extract_image(EILEEN, caption="1girl, solo, blonde hair", config=cfg, text_extract=text_extract)
    hair = both.attributes["Hair Color"]
    assert hair.value == "Blonde" and hair.conflict and "captioner:red hair" in hair.evidence
    assert any(e.startswith("tag:") for e in hair.evidence)


def test_partition_path_carries_the_caption(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, text_extract: Any) -> None:
    """``normalize_batch`` stores the generated caption (``vlm_caption``), ``extract_table`` reads it."""
    from charmeta.images.batch import extract_table
    from charmeta.images.ingest import ImageRecord
    from charmeta.images.normalize import normalize_batch

    cap = ColourCaptioner()
    recs = [
        ImageRecord("e", EILEEN.read_bytes(), None, "jpg", "s", 0),
        ImageRecord("l", LUCY.read_bytes(), None, "jpg", "s", 1),
    ]
    norm = normalize_batch(recs, size=32, captioner=cap, cache=EmbeddingCache())
    assert norm["vlm_caption"].to_pylist() == ["a girl with red hair", "a girl with black hair"]
    from charmeta.images.api import ImagePipeline

    rows = extract_table(norm, ImagePipeline(ImageConfig()), text_extract=text_extract).to_pylist()
    assert [r["hair_color"] for r in rows] == ["Red", "Black"]
    assert rows[0]["hair_color_evidence"] == ["captioner:red hair"] and rows[0]["status"] == "ok"


def test_captioner_count_is_cross_checked_with_faces(text_extract: Any) -> None:
    from charmeta.fusion import fuse_image

    cap = to_extraction("two girls with red hair", text_extract)
    out = fuse_image(None, None, None, pixel_count=1, pixel_backend="animeface", captioner=cap)
    assert out.status == "multi_character" and out.character_count == 1  # the faces' count, flagged
    assert fuse_image(None, None, None, pixel_count=None, captioner=cap).character_count == 2  # no counter ran
    assert "count disagreement: captioner says 2, pixels say 1 (animeface)" in out.reason
    # with a caption too, each count is checked against the faces (not against the captioner's count)
    text = text_extract("2girls, red hair")
    out = fuse_image(text, None, None, pixel_count=3, pixel_backend="animeface", captioner=cap)
    assert "count disagreement: caption says 2, pixels say 3 (animeface)" in out.reason
    assert "count disagreement: captioner says 2, pixels say 3 (animeface)" in out.reason
    assert out.character_count == 2 and out.status == "multi_character"


def test_a_captioner_pixel_conflict_names_the_captioner(text_extract: Any) -> None:
    from charmeta.fusion import fuse_image
    from charmeta.records import Decision, Extraction

    cap = to_extraction("a girl with black hair, wearing a red dress", text_extract)
    pix = Extraction(
        "image",
        attributes={
            "Hair Color": Decision("Orange", 0.6, ["colors:hair:Orange"]),
            "Dress": Decision("Blue Dress", 0.5, ["model:blue dress"]),
        },
    )
    out = fuse_image(None, None, pix, pixel_count=1, captioner=cap)
    # default order (caption > tagger > captioner > pixels): the captioner wins, the conflict names it
    dress = out.attributes["Dress"]
    assert dress.value == "Red Dress" and dress.conflict
    assert any(
        e.endswith("conflict: captioner says Red Dress, pixels say Blue Dress; kept Red Dress") for e in dress.evidence
    )
    # Hair / Eye Color (fusion.json): the precision-tuned pixel colours outrank the captioner
    hair = out.attributes["Hair Color"]
    assert hair.value == "Orange" and hair.conflict
    assert hair.evidence[-1] == "conflict: pixels says Orange, captioner says Black; kept Orange"


def test_offline_hub_id_is_a_note_and_the_caption_is_kept(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from charmeta.images import api

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache
    cfg = ImageConfig(
        model=str(tmp_path / "no-clip"),
        cache_dir=str(tmp_path / "cache"),
        counter="none",
        captioner="Salesforce/blip-image-captioning-base",
    )
    monkeypatch.setattr(api, "_PIPELINES", {})
    ex = api.extract_image(EILEEN, caption="1girl, solo, red hair", config=cfg)
    assert ex.attributes["Hair Color"].value == "Red"  # the caption's attributes are kept
    assert "captioner unavailable" in ex.reason and "CHARMETA_CAPTIONER_MODEL" in ex.reason


# ---------------------------------------------------------------------------
# the transformers path on a tiny BLIP fitted to two drawings
# ---------------------------------------------------------------------------
TEACH = {"eileen-happy": "a girl with red hair and blue eyes", "lucy-happy": "a girl with black hair smiling"}


@pytest.fixture(scope="module")
def tiny_blip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch")
    from charmeta.images.tiny import build_tiny_blip

    teach = [(Image.open(DRAWINGS / f"{k}.jpg"), v) for k, v in TEACH.items()]
    return build_tiny_blip(tmp_path_factory.mktemp("blip") / "tiny", teach=teach, steps=60)


@pytest.mark.slow
def test_transformers_captioner_generates_from_pixels(tiny_blip: Path) -> None:
    from charmeta.images.captioner import Captioner

    cap = Captioner(str(tiny_blip))
    got = cap.caption([Image.open(EILEEN), Image.open(LUCY)])
    assert got[0] != got[1]  # same text input, different pictures: the pixels reached the model
    assert got == list(TEACH.values())
    assert cap.revision.startswith("local-") and cap.device == "cpu"


@pytest.mark.slow
def test_cli_extract_image_with_the_captioner(
    tiny_blip: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from charmeta.cli import main
    from charmeta.images import api

    monkeypatch.setattr(api, "_PIPELINES", {})
    monkeypatch.setenv("CHARMETA_CAPTIONER_MODEL", str(tiny_blip))
    monkeypatch.setenv("CHARMETA_IMAGE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CHARMETA_IMAGE_MODEL", str(tmp_path / "no-clip"))
    monkeypatch.setenv("CHARMETA_COUNTER", "none")
    for path, colour, phrase in ((EILEEN, "Red", "red hair"), (LUCY, "Black", "black hair")):
        assert main(["extract", "--image", str(path)]) == 0
        rec = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert rec["attributes"]["Hair Color"] == colour
        assert f"captioner:{phrase}" in rec["evidence"]["Hair Color"]


@pytest.mark.slow
def test_charmeta_run_with_the_captioner(
    tiny_blip: Path, dagster_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``charmeta run`` on captionless drawings, the captioner chosen by environment only."""
    import duckdb

    from charmeta.cli import main

    src = tmp_path / "src"
    src.mkdir()
    for stem in TEACH:
        shutil.copy(DRAWINGS / f"{stem}.jpg", src / f"{stem}.jpg")
        (src / f"{stem}.txt").write_text("")  # no caption: only the captioner (and faces) speak
    monkeypatch.setenv("CHARMETA_CAPTIONER_MODEL", str(tiny_blip))
    monkeypatch.setenv("CHARMETA_IMAGE_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out"
    assert main(["run", "--source", str(src), "--output", str(out), "--workers", "1"]) == 0
    con = duckdb.connect(str(out / "export" / "catalog.duckdb"), read_only=True)
    rows = {
        r[0]: r[1:]
        for r in con.execute("SELECT id, status, hair_color, hair_color_evidence FROM validated_records").fetchall()
    }
    con.close()
    assert set(rows) == set(TEACH)
    assert rows["eileen-happy"][1] == "Red" and "captioner:red hair" in rows["eileen-happy"][2]
    assert rows["lucy-happy"][1] == "Black" and "captioner:black hair" in rows["lucy-happy"][2]


def test_partition_path_captions_in_batches() -> None:
    """``normalize_batch`` hands the captioner ``tagger_batch`` pictures per call (one call per
    picture before), with the same captions."""
    from charmeta.images.ingest import ImageRecord
    from charmeta.images.normalize import normalize_batch

    files = sorted(DRAWINGS.glob("*.jpg"))[:6]
    recs = [ImageRecord(str(i), p.read_bytes(), None, "jpg", "s", i) for i, p in enumerate(files)]
    one_by_one = normalize_batch(recs, size=32, captioner=ColourCaptioner(), tagger_batch=1)["vlm_caption"]
    sizes: list[int] = []
    cap = ColourCaptioner()
    real = cap.caption
    cap.caption = lambda ims: sizes.append(len(ims)) or real(ims)  # type: ignore[method-assign]
    got = normalize_batch(recs, size=32, captioner=cap, tagger_batch=4)["vlm_caption"].to_pylist()
    assert sizes == [4, 2]
    assert got == one_by_one.to_pylist() and set(got) == {"a girl with red hair", "a girl with black hair"}
