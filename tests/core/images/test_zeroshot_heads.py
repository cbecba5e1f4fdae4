"""Prompt data validity, zero-shot decisions, weakly supervised heads (train, report, version, predict)."""

from __future__ import annotations

import numpy as np

from charmeta.contract import ATTRIBUTE_BY_KEY, UNKNOWN
from charmeta.images import rules
from charmeta.images.config import ImageConfig
from charmeta.images.embed import embed_table
from charmeta.images.embedders import load_embedder
from charmeta.images.heads import load_heads, save_heads, train_heads, weak_labels
from charmeta.images.ingest import ImageRecord
from charmeta.images.normalize import normalize_batch
from charmeta.images.predict import ImagePredictor, decide, predict_table
from charmeta.images.zeroshot import expand, zero_shot_probs

from .conftest import solid, stub_extract

COLORS = {"red_hair": (220, 30, 30), "blue_hair": (30, 30, 220), "blonde_hair": (240, 220, 90)}


def test_prompt_values_are_contract_vocabulary():
    data = rules.prompts()  # raises on any value outside the contract
    for attr, vals in data["values"].items():
        assert set(vals) == set(ATTRIBUTE_BY_KEY[attr].values) - {UNKNOWN}, attr
    assert expand("Hair Color")["Blonde"][0] == "a character with blonde hair"


def test_decide_threshold_to_unknown():
    d = decide("Hair Color", ["Red", "Blue"], np.array([0.45, 0.55]), "zero-shot", "zero_shot")
    assert d.value == "Blue" and d.confidence == 0.55
    d = decide("Ethnicity", ["Asian", "African"], np.array([0.4, 0.6]), "zero-shot", "zero_shot")
    assert d.value == UNKNOWN and d.confidence == 0.0 and "< threshold 0.70" in d.evidence[0]


def test_zero_shot_probs_shapes(tiny_siglip):
    emb = load_embedder(ImageConfig(model=str(tiny_siglip)))
    x = np.eye(emb.dim, dtype=np.float32)[:3]
    probs = zero_shot_probs(x, emb)
    values, p = probs["Hair Color"]
    assert p.shape == (3, len(values)) and np.allclose(p.sum(1), 1)
    assert zero_shot_probs(x, emb)["Hair Color"][1] is not None  # memoised text vectors


def _dataset(n_per=30):
    recs = []
    k = 0
    for tag, color in COLORS.items():
        for j in range(n_per):
            cap = f"1girl, {tag}, {'long_hair' if j % 2 else 'short_hair'}"
            recs.append(ImageRecord(f"{tag}-{j}", solid(color, noise=25, seed=k), cap))
            k += 1
    return recs


def test_heads_trained_from_captions_beat_baseline_and_are_used(tiny_clip, tmp_path):
    emb = load_embedder(ImageConfig(model=str(tiny_clip)))
    norm = normalize_batch(_dataset(), size=32)
    table = embed_table(norm, emb)
    labels = weak_labels(norm["id"].to_pylist(), norm["caption"].to_pylist(), stub_extract)
    assert labels["red_hair-0"] == {"Hair Color": "Red", "Hair Length": "Short"}
    heads, report = train_heads(table, labels, {"epochs": 200})
    by = {r["attribute"]: r for r in report}
    hc = by["Hair Color"]
    assert hc["status"] == "trained" and hc["n_test"] > 0
    assert hc["accuracy"] > hc["majority_baseline"] + 0.3, hc
    assert by["Eye Color"]["status"].startswith("skipped: 0 usable labels")
    folder = save_heads(heads, report, tmp_path, emb.model_id, emb.revision)
    loaded, version = load_heads(tmp_path, emb.model_id, emb.revision)
    assert version == folder.name and set(loaded) == set(heads)
    pred = ImagePredictor(emb, loaded, version)
    out = predict_table(table, pred, counts={"red_hair-0": 2})
    rows = out.to_pylist()
    row = rows[0]
    assert row["input_kind"] == "image" and row["multi_character"] and row["status"] == "multi_character"
    assert row["hair_color_evidence"][0].startswith(f"pixel:head@{version}:")
    got = [r["hair_color"] for r in rows]
    want = [{"red": "Red", "blu": "Blue", "blo": "Blonde"}[r["id"][:3]] for r in rows]
    assert np.mean([g == w for g, w in zip(got, want)]) > 0.8
    assert rows[0]["eye_color_evidence"][0].startswith("pixel:zero-shot:")  # no head -> zero-shot
