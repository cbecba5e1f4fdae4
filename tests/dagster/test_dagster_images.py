"""Image shards through the Dagster graph (`charmeta run`), backend swap by config, embedding cache
re-runs, `charmeta extract --image`, and text-only runs staying torch-free. No network: tiny local models."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from imagekit import solid  # skips this module without torch; tiny_clip comes from conftest.py

from charmeta.cli import main

REPO = Path(__file__).resolve().parents[2]
CAPTIONS = [
    "1girl, solo, blonde_hair, long_hair, blue_eyes",
    "1boy, solo, black_hair, short_hair",
    "1girl, solo, red_hair",
    "2girls, blue_hair",
]


def _tar(path: Path) -> None:
    with tarfile.open(path, "w") as tf:

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))

        for i, cap in enumerate(CAPTIONS):
            add(f"{i:06d}.png", solid((60 * i, 100, 200 - 40 * i), noise=8, seed=i))
            add(f"{i:06d}.txt", cap.encode())
        add("000010.jpg", b"definitely not a jpeg")  # a corrupt image: an invalid row, not a crash
        add("000010.txt", b"1girl, solo, green_hair")
        add("000011.png", solid((20, 20, 20), noise=8, seed=11))  # no caption: pixels only


@pytest.fixture
def image_source(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    _tar(src / "shard-000000.tar")
    folder = src / "folder"
    folder.mkdir()
    for i, cap in enumerate(CAPTIONS[:3]):
        (folder / f"img{i}.png").write_bytes(solid((200, 50 * i, 40), noise=8, seed=20 + i))
        (folder / f"img{i}.txt").write_text(cap)
    return src


@pytest.fixture
def image_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_clip: Path) -> dict[str, str]:
    env = {
        "CHARMETA_IMAGE_MODEL": str(tiny_clip),
        "CHARMETA_IMAGE_CACHE": str(tmp_path / "emb_cache"),
        "CHARMETA_COUNTER": "none",
        "CHARMETA_WORKERS": "1",
        "HF_HUB_OFFLINE": "1",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("CHARMETA_IMAGE_HEADS", raising=False)
    monkeypatch.delenv("CHARMETA_EMBEDDER", raising=False)
    return env


def _validated(out: Path) -> dict[str, dict]:
    rows = {}
    for f in sorted((out / "validated_records").glob("*.parquet")):
        for r in pq.read_table(f).to_pylist():
            rows[r["id"]] = r
    return rows


def _stats(out: Path, stage: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((out / stage).glob("*.json"))]


def _run(src: Path, out: Path, *extra: str) -> int:
    return main(["run", "--source", str(src), "--output", str(out), "--extractor", "text", *extra])


def test_image_tar_and_folder_through_charmeta_run_then_cached_rerun(
    dagster_home: Path,
    image_source: Path,
    image_env: dict,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    out = tmp_path / "out"
    assert _run(image_source, out, "--embedder", "clip") == 0
    capsys.readouterr()
    manifest = json.loads((out / "export" / "manifest.json").read_text())
    assert manifest["records"] == 9  # 6 tar samples + 3 sidecar images: one row per input
    assert manifest["status_counts"]["invalid"] == 1
    rows = _validated(out)
    assert set(rows) == {"000000", "000001", "000002", "000003", "000010", "000011", "img0", "img1", "img2"}
    # image rows fuse caption and pixels, with provenance
    r = rows["000000"]
    assert r["input_kind"] == "image" and r["status"] == "ok" and r["hair_color"] == "Blonde"
    assert any(e.startswith("tag:") for e in r["hair_color_evidence"])
    assert any(e.startswith("pixel:") for e in r["hair_color_evidence"])
    assert rows["img1"]["hair_color"] == "Black" and rows["img1"]["input_kind"] == "image"
    assert rows["000003"]["status"] == "multi_character"
    assert rows["000010"]["status"] == "invalid" and "not an image" in rows["000010"]["reason"]
    assert rows["000011"]["status"] == "ok"  # no caption: pixel evidence only
    assert all(e.startswith("pixel:") for e in rows["000011"]["hair_color_evidence"])
    exported = [json.loads(l) for l in (out / "export" / "records.jsonl").read_text().splitlines()]
    assert {e["id"] for e in exported} >= {"000000", "img0"} and "000010" not in {e["id"] for e in exported}
    # stage outputs: normalized images + real embeddings, one embedding row per record
    ni = _stats(out, "normalized_images")
    assert sum(s["images"] for s in ni) == 9 and sum(s["invalid_images"] for s in ni) == 1
    emb = _stats(out, "embeddings")
    assert sum(s["embedded"] for s in emb) == 8 and sum(s["computed"] for s in emb) == 8
    assert all(s["embedder"] == "clip" for s in emb)
    table = pq.read_table(next((out / "embeddings").glob("shard-000000*.parquet")))
    assert table.num_rows == 6 and table["embedding"].null_count == 1  # the corrupt image has no vector
    assert json.loads((out / "attribute_heads" / "report.json").read_text())["n_images"] == 8
    from dagster import AssetKey, DagsterInstance

    mat = DagsterInstance.get().get_latest_materialization_event(AssetKey("attribute_heads"))
    assert mat is not None and mat.asset_materialization.metadata["images"].value == 8

    # re-materialize everything: every vector comes from the cache, the model is never called
    from charmeta.images import embedders

    assert embedders._MODELS, "the tiny model was loaded in-process"
    for model in embedders._MODELS.values():
        monkeypatch.setattr(model, "embed_pixels", lambda *_a, **_k: pytest.fail("model called on a cached re-run"))
    assert _run(image_source, out, "--embedder", "clip", "--force") == 0
    emb2 = _stats(out, "embeddings")
    assert sum(s["cache_hits"] for s in emb2) == 8 and sum(s["computed"] for s in emb2) == 0
    mat = DagsterInstance.get().get_latest_materialization_event(AssetKey("embeddings"))
    assert mat.asset_materialization.metadata["cache_hits"].value == 8
    assert _validated(out)["000000"]["hair_color"] == "Blonde"


def test_embedder_backend_is_a_config_change(
    dagster_home: Path,
    image_source: Path,
    image_env: dict,
    tiny_siglip: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    # none: images are decoded and validated, image rows keep their caption's attributes, no model
    out_none = tmp_path / "none"
    assert _run(image_source, out_none, "--embedder", "none") == 0
    rows = _validated(out_none)
    assert len(rows) == 9 and rows["000000"]["hair_color"] == "Blonde"
    assert not any(e.startswith("pixel:") for e in rows["000000"]["hair_color_evidence"])
    assert all(s.get("embedded", 0) == 0 for s in _stats(out_none, "embeddings"))
    # siglip: same code, another backend and model folder from the environment
    monkeypatch.setenv("CHARMETA_IMAGE_MODEL", str(tiny_siglip))
    monkeypatch.setenv("CHARMETA_EMBEDDER", "siglip")
    out_sig = tmp_path / "siglip"
    assert main(["run", "--source", str(image_source), "--output", str(out_sig)]) == 0
    emb = _stats(out_sig, "embeddings")
    assert sum(s["embedded"] for s in emb) == 8 and {s["embedder"] for s in emb} == {"siglip"}
    assert {s["model"] for s in emb} == {str(tiny_siglip)}
    rows = _validated(out_sig)
    assert any(e.startswith("pixel:") for e in rows["img0"]["hair_color_evidence"])
    capsys.readouterr()


def test_image_stage_functions_with_cache_no_dagster(
    image_source: Path, image_env: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Dagster-free stage functions: a second build of embeddings is served by the cache."""
    from charmeta.images import embedders
    from charmeta.pipeline import stages as S
    from charmeta.pipeline.image_stages import make_spec
    from charmeta.sources import Source, write_registry

    root = str(tmp_path / "root")
    specs = Source(str(image_source)).discover()
    write_registry(root, specs)
    keys = [s.key for s in specs]
    spec = make_spec("clip", model=image_env["CHARMETA_IMAGE_MODEL"])
    for stage in (S.RAW, S.NORMALIZED, S.NORMALIZED_IMAGES, S.EMBEDDINGS):
        S.run_stage(stage, root, keys, backend="null", embedder=spec, workers=1)
    assert sum(s["computed"] for s in _stats(Path(root), "embeddings")) == 8
    for model in embedders._MODELS.values():
        monkeypatch.setattr(model, "embed_pixels", lambda *_a, **_k: pytest.fail("model called"))
    res = [S.process_partition(S.EMBEDDINGS, root, k, "null", spec, force=True) for k in keys]
    assert sum(r["cache_hits"] for r in res) == 8 and sum(r["computed"] for r in res) == 0
    for stage in (S.PREDICTIONS, S.VALIDATED):
        S.run_stage(stage, root, keys, backend="null", embedder=spec, workers=1)
    total = sum(pq.ParquetFile(p).metadata.num_rows for p in (Path(root) / "validated_records").glob("*.parquet"))
    assert total == 9


def _cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    full = {**os.environ, **env, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "charmeta.cli", *args], capture_output=True, text=True, timeout=180, env=full, cwd=cwd
    )


def test_extract_image_cli_tiny_model_and_offline(image_source: Path, tiny_clip: Path, tmp_path: Path) -> None:
    img = image_source / "folder" / "img0.png"  # sidecar img0.txt is the caption
    env = {
        "CHARMETA_IMAGE_CACHE": str(tmp_path / "c"),
        "CHARMETA_IMAGE_HEADS": str(tmp_path / "h"),
        "CHARMETA_COUNTER": "none",
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_OFFLINE": "1",
    }
    res = _cli(["extract", "--image", str(img)], {**env, "CHARMETA_IMAGE_MODEL": str(tiny_clip)}, tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["input_kind"] == "image" and out["status"] == "ok" and out["reason"] is None
    assert out["attributes"]["Hair Color"] == "Blonde"
    assert any(e.startswith("pixel:") for e in out["evidence"]["Hair Color"])
    # offline with a hub id that is not cached: the caption's attributes plus the note, exit 0
    res = _cli(
        ["extract", "--image", str(img)], {**env, "CHARMETA_IMAGE_MODEL": "openai/clip-vit-base-patch32"}, tmp_path
    )
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert "image model unavailable" in out["reason"]
    assert out["attributes"]["Hair Color"] == "Blonde" and out["evidence"]["Hair Color"] == ["tag:blonde hair"]


def test_text_only_run_does_not_import_torch(sample_dir: Path, tmp_path: Path) -> None:
    code = (
        "import sys; from charmeta.cli import main; "
        f"rc = main(['run', '--source', {str(sample_dir)!r}, '--output', {str(tmp_path / 'o')!r}, "
        "'--extractor', 'null', '--shard-rows', '4']); "
        "print('TORCH', 'torch' in sys.modules, 'RC', rc)"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "DAGSTER_HOME": str(tmp_path / "dh"), "CHARMETA_WORKERS": "1"}
    env.pop("CHARMETA_EMBEDDER", None)
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path
    )
    assert "TORCH False RC 0" in res.stdout, res.stdout[-1000:] + res.stderr[-3000:]
    out = tmp_path / "o"
    assert all(s["images"] == 0 for s in _stats(out, "normalized_images"))
    assert sum(pq.ParquetFile(p).metadata.num_rows for p in (out / "normalized_images").glob("*.parquet")) == 0
