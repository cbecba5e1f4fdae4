"""The app's Gradio-free core (``charmeta.app``): the views, the batch upload path and the dataset reader.

Real inputs: the bundled sample's files, the app's examples (rows of the dev set),
and a real photo (scikit-image's astronaut) for the face boxes. The browser tests
(tests/ui/test_app_browser.py) drive the same functions through Gradio.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from charmeta.app.analyze import AppCore, text_examples
from charmeta.app.batch import MAX_RECORDS, run_batch
from charmeta.app.dataset import DatasetError, find_export, load_dataset
from charmeta.app.views import TABLE_HEADERS
from charmeta.contract import CORE_KEYS

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def core() -> AppCore:
    return AppCore()


def test_each_text_example_gets_the_status_its_label_promises(core: AppCore) -> None:
    examples = text_examples()
    labels = [e["label"] for e in examples]
    for want in ("tag caption", "weighted prompt", "prose", "multi-character", "excluded"):
        assert any(want in label for label in labels), (want, labels)
    for e in examples:
        view = core.analyze_text(e["text"], e["id"])
        assert view.record["status"] == e["expect_status"], (e["id"], view.record)
        assert f"status: {e['expect_status']}" in view.status
        if e["expect_status"] == "ok":
            assert view.clean["id"] == e["id"] and set(CORE_KEYS) <= set(view.clean)
        else:
            assert view.clean["exported"] is False and view.record["reason"]
    excluded = next(e for e in examples if "excluded" in e["label"])
    assert core.analyze_text(excluded["text"]).record["reason"].startswith("safety:")
    prompt = next(e for e in examples if "weighted prompt" in e["label"])
    rows = {r[0]: r for r in core.analyze_text(prompt["text"]).rows}  # "(silver hair:1.3), (very long hair:1.2)"
    assert rows["Hair Color"][1:] == ["Grey", 0.95, "caption tag", "silver hair"]
    assert rows["Hair Length"][1:] == ["Long", 0.95, "caption tag", "very long hair"]


def test_text_views_table_and_bad_input(core: AppCore) -> None:
    view = core.analyze_text("1girl, solo, blue eyes, long hair, green kimono")
    assert view.record["attributes"]["Eye Color"] == "Blue"
    assert view.clean == {"id": "input", **view.record["attributes"]}
    table = {r[0]: dict(zip(TABLE_HEADERS, r)) for r in view.rows}
    assert table["Dress"] == {
        "attribute": "Dress",
        "value": "Green Kimono",
        "confidence": 0.95,
        "source": "caption tag",
        "evidence": "green kimono",
    }
    assert view.backends == ["text extractor: text"]
    empty = core.analyze_text("   ")
    assert empty.record["status"] == "error" and "nothing to extract" in empty.record["reason"]
    bad = core.analyze_text("a\x00b")
    assert bad.record["status"] == "invalid" and "NUL" in bad.record["reason"]


def _astronaut_png() -> bytes:
    skdata = pytest.importorskip("skimage.data")
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(skdata.astronaut()).save(buf, format="PNG")
    return buf.getvalue()


def test_image_faces_boxed_and_caption_fused(core: AppCore, tmp_path: Path) -> None:
    pytest.importorskip("cv2")
    png = tmp_path / "astronaut.png"
    png.write_bytes(_astronaut_png())
    res = core.analyze_image(str(png), "1girl, solo, short hair, brown hair", counter="haar")
    assert res.view.record["status"] == "ok", res.view.record
    assert len(res.faces) == 1 and res.view.record["character_count"] == 1
    x, y, w, h = res.faces[0]
    assert 150 < x < 220 and 40 < y < 110 and 60 < w < 130, res.faces  # her face, not the flag or the shuttle
    px = res.boxed.getpixel((x, y + h // 2))  # the box's left edge is drawn in the box colour
    assert px == (230, 30, 60), px
    rows = {r[0]: r for r in res.view.rows}
    assert rows["Hair Color"][1] == "Brown" and rows["Hair Color"][3] == "caption tag"
    assert "tag:brown hair" in rows["Hair Color"][4]
    assert res.view.backends[0] == "face detector: haar"


def test_image_bad_bytes_and_missing(core: AppCore, tmp_path: Path) -> None:
    pytest.importorskip("PIL")
    html = tmp_path / "page.png"
    html.write_bytes(b"<html><body>not an image</body></html>")
    res = core.analyze_image(str(html))
    assert res.view.record["status"] == "invalid" and "not an image" in res.view.record["reason"]
    assert res.boxed is None
    assert core.analyze_image(None).view.record["status"] == "error"
    assert "unknown face detector" in core.analyze_image(str(html), counter="yolo").view.status


def test_batch_on_sample_files_matches_the_pipeline_readers(core: AppCore, tmp_path: Path) -> None:
    res = run_batch(REPO / "samples" / "captions.jsonl", core, str(tmp_path / "a"))
    assert res.counts == {"ok": 5, "multi_character": 3, "excluded": 0, "invalid": 2}, res.message
    reasons = {r[0]: r[2] for r in res.rows}
    assert reasons["bad-empty-text"] == "empty or whitespace-only text"
    assert any(r.startswith("broken JSON line") for r in reasons.values())
    clean = [json.loads(line) for line in Path(res.clean_path).read_text().splitlines()]
    assert len(clean) == 5 and all(set(CORE_KEYS) <= set(c) for c in clean)
    rich = pq.read_table(res.parquet_path)
    assert rich.num_rows == 10 and "hair_color_evidence" in rich.column_names
    res = run_batch(REPO / "samples" / "danbooru_posts.parquet", core, str(tmp_path / "b"))
    assert sum(res.counts.values()) == 8 and res.counts["ok"] == 7


def test_batch_limits_and_bad_files(core: AppCore, tmp_path: Path) -> None:
    big = tmp_path / "many.jsonl"
    big.write_text("".join(json.dumps({"id": i, "text": "1girl, solo, red hair"}) + "\n" for i in range(120)))
    res = run_batch(big, core, str(tmp_path / "o1"))
    assert len(res.rows) == MAX_RECORDS and f"first {MAX_RECORDS}" in res.message
    png = tmp_path / "x.png"
    png.write_bytes(b"\x89PNG")
    assert "unsupported file type '.png'" in run_batch(png, core).message
    empty = tmp_path / "e.csv"
    empty.write_text("")
    assert "is empty" in run_batch(empty, core).message
    bad_pq = tmp_path / "bad.parquet"
    bad_pq.write_bytes(b"not parquet" * 10)
    res = run_batch(bad_pq, core, str(tmp_path / "o2"))
    assert res.counts["invalid"] == 1 and "no usable record" in res.message and "parquet" in res.message.lower()
    not_zip = tmp_path / "imgs.zip"
    not_zip.write_text("hello")
    assert "not a readable zip" in run_batch(not_zip, core).message
    assert "no file" in run_batch(None, core).message


def test_batch_zip_of_images_with_sidecar(core: AppCore, tmp_path: Path) -> None:
    pytest.importorskip("cv2")
    z = tmp_path / "pics.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("astronaut.png", _astronaut_png())
        zf.writestr("astronaut.txt", "1girl, solo, brown hair, short hair")
        zf.writestr("broken.jpg", b"\xff\xd8\xff\xe0 truncated")
        zf.writestr("__MACOSX/._astronaut.png", b"junk")
    res = run_batch(z, core, str(tmp_path / "o"), counter="haar")
    rows = {r[0]: r for r in res.rows}
    assert set(rows) == {"astronaut.png", "broken.jpg"}
    assert rows["astronaut.png"][1] == "ok" and rows["broken.jpg"][1] == "invalid"
    assert rows["astronaut.png"][3 + CORE_KEYS.index("Hair Color")] == "Brown"
    clean = Path(res.clean_path).read_text().splitlines()
    assert len(clean) == 1 and json.loads(clean[0])["id"] == "astronaut.png"


def test_dataset_errors_and_optional_tables(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        find_export(tmp_path / "nope")
    with pytest.raises(DatasetError, match="no export/manifest.json"):
        find_export(tmp_path)
    export = tmp_path / "export"
    export.mkdir()
    (export / "manifest.json").write_text("{not json")
    with pytest.raises(DatasetError, match="not readable JSON"):
        load_dataset(tmp_path)
    (export / "manifest.json").write_text(json.dumps({"records": 3, "status_counts": {"ok": 2, "invalid": 1}}))
    ds = load_dataset(tmp_path)
    assert ds.status_counts == {"ok": 2, "invalid": 1}
    assert "not built yet" in ds.tables["character_profiles"].note
    assert "not built yet" in ds.tables["dedup_clusters"].note
    import pyarrow as pa

    pq.write_table(pa.table({"cluster": [1, 1], "id": ["a", "b"]}), export / "dedup_clusters.parquet")
    ds = load_dataset(tmp_path)
    assert ds.tables["dedup_clusters"].rows == [[1, "a"], [1, "b"]]
    (export / "character_profiles.parquet").write_bytes(b"broken")
    assert "cannot read" in load_dataset(tmp_path).tables["character_profiles"].note
    # where the cleaning stage writes them, listed in the manifest's files
    (tmp_path / "cleaning").mkdir()
    pq.write_table(pa.table({"character": ["hilda"], "support": [3]}), tmp_path / "cleaning" / "profiles_v2.parquet")
    manifest = {"records": 3, "status_counts": {"ok": 3}, "files": {"profiles": "../cleaning/profiles_v2.parquet"}}
    (export / "manifest.json").write_text(json.dumps(manifest))
    prof = load_dataset(tmp_path).tables["character_profiles"]
    assert prof.headers == ["character", "support"] and prof.rows == [["hilda", 3]] and prof.total == 1


def test_app_command_on_a_busy_port_is_a_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    from charmeta.cli import main

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        rc = main(["app", "--port", str(port)])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and f"port {port} on 127.0.0.1 is in use" in err, err
    assert "Traceback" not in err


def test_sources_named_from_fused_image_evidence() -> None:
    from charmeta.app.views import sources_of

    ev = [
        "tag:blonde hair",
        "pixel:colors:hair:Blonde:0.41 of 812 px",
        "tagger:blonde_hair:0.93",
        "pixel:zero-shot:Blonde=0.71",
        "conflict: tag says Blonde, pixels say Brown; kept Blonde",
    ]
    sources, shown = sources_of(ev, "image")
    assert sources == ["caption tag", "pixel colors", "tagger", "zero-shot"]
    assert shown == ev  # evidence is shown as recorded, prefixes included
    assert sources_of(["hairband"], "image")[0] == ["caption tag"]  # a list attribute's bare caption tag
    assert sources_of(["long hair"], "tags") == (["caption tag"], ["long hair"])
    assert sources_of(["a knight in plate armour"], "prose")[0] == ["prose"]
    assert sources_of([], "tags") == ([], [])
