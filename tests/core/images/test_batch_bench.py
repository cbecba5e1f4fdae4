"""Partition-level extract_table, the heads step, DataLoader workers, and the benchmark module."""

from __future__ import annotations

import numpy as np

from charmeta.images import bench
from charmeta.images.api import ImagePipeline
from charmeta.images.batch import extract_table
from charmeta.images.config import ImageConfig
from charmeta.images.counter import CharacterCounter
from charmeta.images.embed import EmbedStats, embed_table, embedding_matrix
from charmeta.images.heads import attribute_heads_step
from charmeta.images.ingest import ImageRecord
from charmeta.images.normalize import normalize_batch

from .conftest import solid, stub_extract


def test_extract_table_fuses_and_keeps_invalid_rows(tiny_clip, tmp_path):
    cfg = ImageConfig(model=str(tiny_clip), cache_dir=str(tmp_path), heads_dir=str(tmp_path / "h"), counter="none")
    pipe = ImagePipeline.load(cfg)
    recs = [
        ImageRecord("a", solid((200, 20, 20)), "1girl, red_hair"),
        ImageRecord("b", b"\x89PNG\r\n\x1a\nxx"),
        ImageRecord("c", solid((20, 20, 200)), None),
    ]
    norm = normalize_batch(recs, size=pipe.embedder.image_size, counter=CharacterCounter("none"))
    out = extract_table(norm, pipe, stub_extract).to_pylist()
    assert [r["status"] for r in out] == ["ok", "invalid", "ok"]
    assert out[0]["hair_color"] == "Red" and out[0]["hair_color_evidence"][0] == "tag:red_hair"
    assert out[1]["reason"].startswith("corrupt PNG: signature present")
    assert out[2]["hair_color_evidence"][0].startswith("pixel:zero-shot:")
    off = ImagePipeline.load(ImageConfig(model="nobody/none", counter="none"))
    out = extract_table(norm, off, stub_extract).to_pylist()
    assert out[0]["hair_color"] == "Red" and "image model unavailable" in out[0]["reason"]


def test_heads_step_versions_and_reports(tiny_clip, tmp_path):
    pipe = ImagePipeline.load(ImageConfig(model=str(tiny_clip), counter="none"))
    recs = [
        ImageRecord(f"{t}{i}", solid(c, noise=20, seed=i + 100 * k), f"1girl, {t}")
        for k, (t, c) in enumerate({"red_hair": (220, 30, 30), "blue_hair": (30, 30, 220)}.items())
        for i in range(20)
    ]
    norm = normalize_batch(recs, size=32)
    emb = embed_table(norm, pipe.embedder)
    res = attribute_heads_step(norm, emb, stub_extract, tmp_path, pipe.embedder.model_id, pipe.embedder.revision)
    assert res["version"] and res["n_labelled_images"] == 40
    hc = next(r for r in res["report"] if r["attribute"] == "Hair Color")
    assert hc["status"] == "trained" and hc["accuracy"] >= 0.9
    # a fresh pipeline over the same heads dir now predicts Hair Color with the head
    p2 = ImagePipeline.load(ImageConfig(model=str(tiny_clip), heads_dir=str(tmp_path), counter="none"))
    assert p2.predictor.heads_version == res["version"] and "Hair Color" in p2.predictor.heads


def test_dataloader_workers_match_inline(tiny_clip):
    pipe = ImagePipeline.load(ImageConfig(model=str(tiny_clip), counter="none"))
    norm = normalize_batch([ImageRecord(str(i), solid((i * 40, 10, 10))) for i in range(5)], size=32)
    s = EmbedStats()
    a = embedding_matrix(embed_table(norm, pipe.embedder, None, 2, 0))
    b = embedding_matrix(embed_table(norm, pipe.embedder, None, 2, 1, s))
    assert np.allclose(a, b, atol=1e-5) and s.batches == 3 and 0 <= s.data_wait_share <= 1


def test_bench_prints_all_figures(capsys):
    assert bench.main(["-n", "8", "--batch-size", "4"]) == 0
    out = capsys.readouterr().out
    for label in ("decode+normalize", "embedding", "end to end", "data-wait share"):
        assert label in out


def test_a_poison_image_falls_back_to_per_record(tiny_clip, tmp_path, monkeypatch):
    """The image model raising on a batch retries record by record: only the poison row is invalid."""
    import charmeta.images.batch as batch_mod

    cfg = ImageConfig(model=str(tiny_clip), cache_dir=str(tmp_path), heads_dir=str(tmp_path / "h"), counter="none")
    pipe = ImagePipeline.load(cfg)
    recs = [
        ImageRecord(k, solid(c), None) for k, c in (("a", (200, 20, 20)), ("poison", (1, 2, 3)), ("c", (20, 20, 200)))
    ]
    norm = normalize_batch(recs, size=pipe.embedder.image_size, counter=CharacterCounter("none"))
    real = batch_mod.embed_table
    calls = []

    def flaky(table, *args, **kwargs):
        calls.append(table.num_rows)
        if "poison" in table.column("id").to_pylist():
            raise RuntimeError("CUDA error: device-side assert")
        return real(table, *args, **kwargs)

    monkeypatch.setattr(batch_mod, "embed_table", flaky)
    out = extract_table(norm, pipe, stub_extract).to_pylist()
    assert [r["status"] for r in out] == ["ok", "invalid", "ok"]
    assert out[1]["reason"].startswith("image model failed: RuntimeError")
    assert calls == [3, 1, 1, 1]
