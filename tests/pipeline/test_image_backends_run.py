"""`charmeta run` on real drawings with the offline pixel backends and a tiny WD tagger chosen by config only.

Why end to end: the tagger and the colour namer are only useful if the pipeline's
image stages call them, keep one row per input and put their provenance in the
rich records. The tagger is the hand-built WD-signature model of
``charmeta.images.tiny.build_tiny_wd_tagger`` (its ``red_hair`` output follows red pixels), so the
assertions fail if the run never hands it the pictures.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest

pytest.importorskip("animeface")
torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from charmeta.cli import main  # noqa: E402
from charmeta.images.tiny import build_tiny_wd_tagger  # noqa: E402

DRAWINGS = Path(__file__).resolve().parents[2] / "samples" / "drawings"


@pytest.mark.slow
def test_run_with_tagger_and_pixel_colours(dagster_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for stem in ("eileen-happy", "lucy-happy", "scene-meadow-three"):
        shutil.copy(DRAWINGS / f"{stem}.jpg", src / f"{stem}.jpg")
    (src / "eileen-happy.txt").write_text("")  # no caption: tagger + pixels must speak
    (src / "lucy-happy.txt").write_text("")
    shutil.copy(DRAWINGS / "scene-meadow-three.txt", src)  # says "1girl, solo" over three faces
    monkeypatch.setenv("CHARMETA_TAGGER_MODEL", str(build_tiny_wd_tagger(tmp_path / "wd-tiny")))
    monkeypatch.setenv("CHARMETA_IMAGE_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out"
    assert main(["run", "--source", str(src), "--output", str(out), "--workers", "1"]) == 0
    con = duckdb.connect(str(out / "export" / "catalog.duckdb"), read_only=True)
    rows = {
        r[0]: r[1:]
        for r in con.execute(
            "SELECT id, status, character_count, hair_color, hair_color_evidence, reason FROM validated_records"
        ).fetchall()
    }
    con.close()
    assert set(rows) == {"eileen-happy", "lucy-happy", "scene-meadow-three"}  # one row per input
    status, count, hair, evidence, _ = rows["eileen-happy"]
    assert status == "ok" and count == 1 and hair == "Red"
    assert any(e.startswith("tagger:red_hair:") for e in evidence)  # the tagger's tag, with its score
    assert any(e.startswith("pixel:colors:hair:Red") for e in evidence)  # and the pixels agree
    status, count, hair, evidence, _ = rows["lucy-happy"]
    assert hair == "Black" and not any(e.startswith("tagger:red_hair") for e in evidence)
    status, _, _, _, reason = rows["scene-meadow-three"]
    assert status == "multi_character" and "count disagreement" in reason
