"""WD tagger backend on a tiny ONNX model exported from torch, with the WD v3 signature, run on real drawings.

The model (``charmeta.images.tiny.build_tiny_wd_tagger``) is built by hand so that
it *reads the pixels*: its ``red_hair`` logit grows with the share of pixels whose
red channel exceeds green by 30+ (in the BGR order WD models take), so the test
fails if preprocessing hands it the wrong channel order or nothing at all - Eileen
(red hair) must score higher than Lucy (black hair, green dress).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
from PIL import Image  # noqa: E402

from charmeta.errors import ModelLoadError  # noqa: E402
from charmeta.images.cache import EmbeddingCache  # noqa: E402
from charmeta.images.tagger import WDTagger, resolve_files, tag_images, to_extraction  # noqa: E402
from charmeta.images.tiny import TINY_WD_TAGS, build_tiny_wd_tagger  # noqa: E402

DRAWINGS = Path(__file__).resolve().parents[2] / "samples" / "drawings"
TAGS = TINY_WD_TAGS


@pytest.fixture(scope="module")
def tagger_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_wd_tagger(tmp_path_factory.mktemp("wd") / "tiny")


def test_tagger_reads_pixels_in_bgr_and_its_tags_become_attributes(tagger_dir: Path) -> None:
    from charmeta.engine import Engine

    tg = WDTagger(str(tagger_dir))
    assert tg.image_size == 64 and tg.providers[-1] == "CPUExecutionProvider"
    eileen = Image.open(DRAWINGS / "eileen-happy.jpg")
    lucy = Image.open(DRAWINGS / "lucy-happy.jpg")
    p = tg.probabilities([eileen, lucy])
    red = TAGS.index(("red_hair", 0))
    assert p[0, red] > p[1, red] + 0.05  # Eileen's red hair moves the model; Lucy's black hair does not
    res = tg.decode(p[0], {"general": float(p[0, red]) - 1e-4, "character": 0.85})
    assert res.rating == ("general", pytest.approx(float(p[0, 0]), abs=1e-4))
    assert ("red_hair", pytest.approx(float(p[0, red]), abs=1e-4)) in res.general
    assert res.caption().startswith("rating:general, ")
    ex = to_extraction(res, Engine.default().extract_text)
    hair = ex.attributes["Hair Color"]
    assert hair.value == "Red" and hair.evidence == [f"tagger:red_hair:{p[0, red]:.2f}"]
    assert ex.character_count == 1 and ex.rating == "general"


def test_cache_by_content_hash_model_and_revision(tagger_dir: Path) -> None:
    tg = WDTagger(str(tagger_dir))
    cache = EmbeddingCache()
    img = Image.open(DRAWINGS / "lucy-happy.jpg")
    first = tag_images(tg, {"sha-a": img}, cache)["sha-a"]
    assert cache.misses == 1 and tg.revision.startswith("local-")
    again = tag_images(tg, {"sha-a": img}, cache)["sha-a"]
    assert cache.hits == 1 and np.array_equal(first, again)


def test_offline_and_bad_folders_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="downloads are off"):
        resolve_files("SmilingWolf/wd-no-such-tagger-v9", "main", allow_download=False)
    (tmp_path / "model.onnx").write_bytes(b"")
    with pytest.raises(ModelLoadError, match="selected_tags.csv"):
        resolve_files(str(tmp_path))


def _drawing_records(n: int) -> list:
    from charmeta.images.ingest import ImageRecord

    files = sorted(DRAWINGS.glob("*.jpg"))[:n]
    return [ImageRecord(p.stem, p.read_bytes(), None, "jpg") for p in files]


def test_normalize_tags_in_batches_with_one_cache_lookup_each(
    tagger_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``normalize_batch`` hands the tagger ``tagger_batch`` pictures per call (and per cache
    lookup); the tags are those of one call per picture."""
    from charmeta.images.normalize import normalize_batch

    tg = WDTagger(str(tagger_dir))
    recs = _drawing_records(7)
    one_by_one = normalize_batch(recs, size=32, tagger=tg, tagger_batch=1).column("tagger_tags").to_pylist()
    calls: list[int] = []
    real = tg.probabilities
    monkeypatch.setattr(tg, "probabilities", lambda ims: calls.append(len(ims)) or real(ims))
    cache = EmbeddingCache()
    lookups: list[int] = []
    get_many = cache.get_many
    monkeypatch.setattr(cache, "get_many", lambda keys, *a: lookups.append(len(keys)) or get_many(keys, *a))
    batched = normalize_batch(recs, size=32, tagger=tg, cache=cache, tagger_batch=3).column("tagger_tags").to_pylist()
    assert calls == [3, 3, 1] and lookups == [3, 3, 1]
    assert batched == one_by_one and all(batched)
    assert "red_hair" in batched[[r.id for r in recs].index("eileen-happy")]  # the pictures reached the model
    calls.clear()
    again = normalize_batch(recs, size=32, tagger=tg, cache=cache, tagger_batch=3).column("tagger_tags").to_pylist()
    assert again == batched and calls == []  # every picture from the cache


def test_a_picture_that_breaks_the_tagger_costs_only_its_own_tags(
    tagger_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from charmeta.images.normalize import normalize_batch

    tg = WDTagger(str(tagger_dir))
    recs = _drawing_records(4)
    real = tg.probabilities

    def thumb(im: Image.Image) -> bytes:
        return im.convert("RGB").resize((8, 8)).tobytes()

    bad = thumb(Image.open(DRAWINGS / f"{recs[2].id}.jpg"))

    def probabilities(ims: list) -> np.ndarray:
        if any(thumb(im) == bad for im in ims):
            raise RuntimeError("boom")
        return real(ims)

    monkeypatch.setattr(tg, "probabilities", probabilities)
    tbl = normalize_batch(recs, size=32, tagger=tg, tagger_batch=4).to_pylist()
    broken = [r for r in tbl if r["tagger_tags"] is None]
    assert [r["id"] for r in broken] == [recs[2].id]
    assert broken[0]["status"] == "ok" and "RuntimeError: boom" in broken[0]["reason"]
    assert all(r["tagger_tags"] and r["reason"] is None for r in tbl if r["id"] != recs[2].id)
