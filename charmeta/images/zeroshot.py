"""Zero-shot attribute scores: image embedding vs prompt-ensemble text embeddings.

Why ensembles: a single prompt is brittle ("blonde hair" vs "golden hair",
photo vs drawing); averaging the normalised embeddings of every template x
phrase gives a steadier class vector. Text embeddings are computed once per
(model, revision, prompt set) per process and persisted in the embedding cache.
"""

from __future__ import annotations

import hashlib

import numpy as np

from charmeta.images import rules
from charmeta.images.cache import EmbeddingCache
from charmeta.images.embedders import ImageEmbedder

_CLASS_VECS: dict[tuple, dict[str, tuple[list[str], np.ndarray]]] = {}


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def expand(attribute: str, data: dict | None = None) -> dict[str, list[str]]:
    """All prompts of each value of ``attribute`` (templates x phrases)."""
    data = data or rules.prompts()
    templates = data["templates"][attribute]
    return {v: [t.format(p) for t in templates for p in phrases] for v, phrases in data["values"][attribute].items()}


def _embed_prompts(texts: list[str], embedder: ImageEmbedder, cache: EmbeddingCache | None) -> np.ndarray:
    keys = [_sha(t) for t in texts]
    known = cache.get_many(keys, embedder.model_id, embedder.revision, table="text_emb") if cache else {}
    todo = [t for t, k in zip(texts, keys) if k not in known]
    fresh: dict[str, np.ndarray] = {}
    if todo:
        vecs = embedder.embed_texts(todo)
        fresh = {_sha(t): v for t, v in zip(todo, vecs)}
        if cache is not None:
            cache.put_many(fresh, embedder.model_id, embedder.revision, table="text_emb")
    return np.stack([known.get(k, fresh.get(k)) for k in keys])


def class_vectors(
    embedder: ImageEmbedder, cache: EmbeddingCache | None = None
) -> dict[str, tuple[list[str], np.ndarray]]:
    """Per attribute: (values, ``(V, dim)`` unit class vectors). Memoised per process."""
    data = rules.prompts()
    key = (embedder.model_id, embedder.revision, data.get("version"), id(data))
    hit = _CLASS_VECS.get(key)
    if hit is not None:
        return hit
    out: dict[str, tuple[list[str], np.ndarray]] = {}
    for attr in data["values"]:
        per_value = expand(attr, data)
        values = list(per_value)
        flat = [p for v in values for p in per_value[v]]
        vecs = _embed_prompts(flat, embedder, cache)
        mats, i = [], 0
        for v in values:
            n = len(per_value[v])
            m = vecs[i : i + n].mean(axis=0)
            mats.append(m / (np.linalg.norm(m) + 1e-12))
            i += n
        out[attr] = (values, np.stack(mats).astype(np.float32))
    _CLASS_VECS[key] = out
    return out


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def zero_shot_probs(
    emb: np.ndarray, embedder: ImageEmbedder, cache: EmbeddingCache | None = None
) -> dict[str, tuple[list[str], np.ndarray]]:
    """Per attribute: (values, ``(N, V)`` probabilities) with the data-file temperature."""
    out = {}
    for attr, (values, mat) in class_vectors(embedder, cache).items():
        t = float(rules.rule(attr)["temperature"]) or 1.0
        out[attr] = (values, softmax(embedder.logit_scale * (emb @ mat.T) / t))
    return out
