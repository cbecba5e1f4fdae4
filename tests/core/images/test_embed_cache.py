"""Embedders (tiny CLIP / SigLIP built locally), loading guards, the content-addressed cache."""

from __future__ import annotations

import shutil
import time

import numpy as np
import pytest

from charmeta.errors import ModelLoadError
from charmeta.images.cache import EmbeddingCache
from charmeta.images.config import ImageConfig
from charmeta.images.embed import EmbedStats, embed_table, embedding_matrix
from charmeta.images.embedders import clear_loaded_models, load_embedder
from charmeta.images.ingest import ImageRecord
from charmeta.images.normalize import normalize_batch

from .conftest import solid


def _norm(colors, size=32):
    recs = [ImageRecord(f"i{k}", solid(c, seed=k, noise=5)) for k, c in enumerate(colors)]
    return normalize_batch(recs, size=size)


@pytest.mark.parametrize("which", ["tiny_clip", "tiny_siglip"])
def test_embed_table_and_cache(which, request):
    folder = request.getfixturevalue(which)
    emb = load_embedder(ImageConfig(model=str(folder)))
    assert emb is load_embedder(ImageConfig(model=str(folder)))  # loaded once per process
    assert emb.backend == which.split("_")[1] and emb.revision.startswith("local-")
    norm = _norm([(255, 0, 0), (0, 0, 255), (0, 255, 0)])
    cache = EmbeddingCache()
    s1 = EmbedStats()
    t1 = embed_table(norm, emb, cache, batch_size=2, stats=s1)
    assert t1.num_rows == 3 and s1.computed == 3 and s1.cached == 0 and s1.batches == 2
    m = embedding_matrix(t1)
    assert m.shape == (3, emb.dim) and np.allclose(np.linalg.norm(m, axis=1), 1, atol=1e-4)
    s2 = EmbedStats()
    t2 = embed_table(norm, emb, cache, stats=s2)
    assert s2.cached == 3 and s2.computed == 0 and all(t2["cached"].to_pylist())
    assert np.allclose(embedding_matrix(t2), m, atol=1e-6)
    assert emb.embed_texts(["a character with red hair"]).shape == (1, emb.dim)


def test_duplicates_embedded_once_and_invalid_skipped(tiny_clip):
    emb = load_embedder(ImageConfig(model=str(tiny_clip)))
    data = solid((10, 200, 10))
    norm = normalize_batch([ImageRecord("a", data), ImageRecord("b", data), ImageRecord("c", b"")], size=32)
    s = EmbedStats()
    t = embed_table(norm, emb, None, stats=s)
    assert t["id"].to_pylist() == ["a", "b"] and s.computed == 1


def test_persistent_cache_across_instances(tiny_clip, tmp_path):
    emb = load_embedder(ImageConfig(model=str(tiny_clip)))
    norm = _norm([(1, 2, 3)])
    embed_table(norm, emb, EmbeddingCache.in_dir(tmp_path))
    c2 = EmbeddingCache.in_dir(tmp_path)
    assert c2.count() == 1
    assert c2.get_many([norm["sha256"][0].as_py()], emb.model_id, emb.revision)
    assert not c2.get_many([norm["sha256"][0].as_py()], emb.model_id, "other-revision")


def test_pickle_checkpoint_refused(tiny_clip, tmp_path):
    bad = tmp_path / "pickled"
    bad.mkdir()
    shutil.copy(tiny_clip / "config.json", bad / "config.json")
    (bad / "pytorch_model.bin").write_bytes(b"\x80\x04not really")
    with pytest.raises(ModelLoadError, match="pickle checkpoint.*only safetensors"):
        load_embedder(ImageConfig(model=str(bad)))


def test_offline_hub_id_fails_fast(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    clear_loaded_models()
    t = time.perf_counter()
    with pytest.raises(ModelLoadError, match="not in the local Hugging Face cache and downloads are off"):
        load_embedder(ImageConfig(model="openai/clip-vit-base-patch32", revision="3d74acf9"))
    assert time.perf_counter() - t < 5


def test_missing_folder_and_bad_backend(tmp_path):
    from charmeta.errors import ConfigError

    with pytest.raises(ModelLoadError, match="model folder not found"):
        load_embedder(ImageConfig(model=str(tmp_path / "nope")))
    with pytest.raises(ConfigError, match="unknown image backend"):
        load_embedder(ImageConfig(model=str(tmp_path), backend="dino"))
