"""Images from Parquet cells, Arrow cells, zip and tar.gz members go through normalized_images ->
embeddings -> predictions exactly like tar members: with a (tiny, local) CLIP every image row
gets a real vector and a fused caption + pixel record, the same vector whatever the container."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from charmeta.bench.containers import drawn_samples, write_layouts
from charmeta.cli import main

CAPTIONS = ["1girl, solo, blonde_hair, long_hair, blue_eyes", "1boy, solo, black_hair, short_hair"]
LAYOUTS = ("webdataset", "zip", "tgz", "parquet", "arrow", "imagefolder")


@pytest.mark.slow
def test_every_container_is_embedded_and_fused(
    dagster_home: Path, tmp_path: Path, tiny_clip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for k, v in {
        "CHARMETA_IMAGE_MODEL": str(tiny_clip),
        "CHARMETA_IMAGE_CACHE": str(tmp_path / "emb_cache"),
        "CHARMETA_COUNTER": "none",
        "CHARMETA_WORKERS": "1",
        "HF_HUB_OFFLINE": "1",
    }.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("CHARMETA_IMAGE_HEADS", raising=False)
    src = tmp_path / "src"
    write_layouts(drawn_samples(6, CAPTIONS), src, layouts=LAYOUTS)
    out = tmp_path / "out"
    assert main(["run", "--source", str(src), "--output", str(out), "--embedder", "clip"]) == 0

    vectors: dict[str, dict[str, list[float]]] = {}
    for f in (out / "embeddings").glob("*.parquet"):
        t = pq.read_table(f, columns=["id", "embedding", "backend"]).to_pylist()
        assert t and all(r["embedding"] is not None and r["backend"] == "clip" for r in t), f.name
        vectors[f.name.split("-", 1)[0]] = {r["id"]: r["embedding"] for r in t}
    assert len(vectors) == len(LAYOUTS)
    first = next(iter(vectors.values()))
    for name, v in vectors.items():
        assert v.keys() == first.keys(), name
        assert all(max(abs(a - b) for a, b in zip(v[k], first[k])) < 1e-5 for k in v), name  # same pixels, same vector
    stats = [json.loads(p.read_text()) for p in (out / "embeddings").glob("*.json")]
    assert sum(s["embedded"] for s in stats) == 6 * len(LAYOUTS)
    for f in (out / "validated_records").glob("*.parquet"):
        for r in pq.read_table(f).to_pylist():
            assert r["input_kind"] == "image" and r["status"] == "ok", (f.name, r["id"], r["reason"])
            assert any(e.startswith("tag:") for e in r["hair_color_evidence"])
