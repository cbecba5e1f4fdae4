"""Pixel attribute decisions: a trained head when one exists, zero-shot otherwise, Unknown below threshold.

Why Unknown below threshold: the contract says Unknown when there is no
evidence; a 0.3 "Blonde" from a prompt is not evidence. The near-miss is still
kept in the evidence string so a reviewer can see what the model leaned to.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from charmeta.contract import UNKNOWN
from charmeta.images import rules
from charmeta.images.cache import EmbeddingCache
from charmeta.images.embedders import ImageEmbedder
from charmeta.images.heads import Head
from charmeta.records import Decision, Extraction, extractions_to_table


def decide(attr: str, values: list[str], p: np.ndarray, source: str, section: str) -> Decision:
    """One attribute from one probability row, with the threshold and margin rule of the data file."""
    r = rules.rule(attr, section)
    order = np.argsort(-p)
    top, second = float(p[order[0]]), float(p[order[1]]) if len(order) > 1 else 0.0
    best = values[int(order[0])]
    ev = f"pixel:{source}:{best}={top:.2f}"
    if top < r["threshold"] or top - second < r["min_margin"]:
        return Decision(UNKNOWN, 0.0, [ev + f" (< threshold {r['threshold']:.2f})"])
    return Decision(best, round(top, 4), [ev])


class ImagePredictor:
    """Embeddings -> per-attribute ``Decision`` dicts; heads override zero-shot per attribute."""

    def __init__(
        self,
        embedder: ImageEmbedder | None = None,
        heads: dict[str, Head] | None = None,
        heads_version: str | None = None,
        cache: EmbeddingCache | None = None,
        zero_shot: bool = True,
    ) -> None:
        self.embedder, self.heads, self.cache = embedder, heads or {}, cache
        self.heads_version = heads_version
        self.zero_shot = zero_shot and embedder is not None and getattr(embedder, "tokenizer", True) is not None

    def predict(self, emb: np.ndarray) -> list[dict[str, Decision]]:
        out: list[dict[str, Decision]] = [{} for _ in range(len(emb))]
        if len(emb) == 0:
            return out
        if self.zero_shot:
            from charmeta.images.zeroshot import zero_shot_probs

            for attr, (values, probs) in zero_shot_probs(emb, self.embedder, self.cache).items():  # type: ignore[arg-type]
                if attr in self.heads:
                    continue
                for i in range(len(emb)):
                    out[i][attr] = decide(attr, values, probs[i], "zero-shot", "zero_shot")
        for attr, head in self.heads.items():
            probs = head.probs(emb)
            tag = f"head@{self.heads_version}" if self.heads_version else "head"
            for i in range(len(emb)):
                out[i][attr] = decide(attr, head.classes, probs[i], tag, "heads")
        return out


def predict_table(
    embeddings: pa.Table, predictor: ImagePredictor, counts: dict[str, int | None] | None = None
) -> pa.Table:
    """An ``embed_table`` output -> rich-schema table (``input_kind='image'``), pixel evidence only.

    ``counts`` (id -> characters counted in the pixels) flags multi-character images.
    """
    from charmeta.images.embed import embedding_matrix

    ids = embeddings["id"].to_pylist()
    decisions = predictor.predict(embedding_matrix(embeddings))
    exs = []
    for rid, attrs in zip(ids, decisions):
        n = (counts or {}).get(rid)
        multi = n is not None and n >= 2
        exs.append(
            Extraction(
                input_kind="image",
                status="multi_character" if multi else "ok",
                character_count=n,
                multi_character=multi,
                attributes=attrs,
            )
        )
    return extractions_to_table(exs, ids)
