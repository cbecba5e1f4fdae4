"""The synthetic generator's realism (issue 14): characters repeat with Zipf frequencies and
some rows are near-duplicate reposts; the default stays uniform with unique texts."""

from __future__ import annotations

import numpy as np

from charmeta.synth.captions import FORMATS, Realism, build_chunk, build_pools


def _norm(text: str) -> frozenset[str]:
    sep = ", " if ", " in text else " "
    return frozenset(t.strip().lower().replace("_", " ") for t in text.split(sep) if t.strip())


def test_realism_adds_near_duplicates_and_skewed_characters() -> None:
    pools = build_pools()
    n = 4000
    plain = build_chunk(np.random.default_rng(1), pools, n, 0, 0, 0, n)
    real = build_chunk(np.random.default_rng(1), pools, n, 0, 0, 0, n, Realism(zipf=1.0, near_dups=0.05))
    texts = [t for t, f in zip(real.texts.to_pylist(), real.fmt) if t and FORMATS[f] != "prose"]
    sets = [_norm(t) for t in texts]
    exact = len(sets) - len(set(sets))
    near = 0
    seen: dict[frozenset, int] = {}
    for s in sets:
        for t in list(seen)[-300:]:
            if s != t and len(s & t) / len(s | t) >= 0.8:
                near += 1
                break
        seen[s] = 1
    assert exact > 20 and near > 10  # ~5% reposts: reordered / case-changed (exact) and one tag more or less
    plain_texts = [t for t, k in zip(plain.texts.to_pylist(), plain.kind) if k == 0]
    assert len(set(plain_texts)) == len(plain_texts)  # the default keeps every text unique

    def top_share(chunk) -> float:  # noqa: ANN001
        names = [t.split(", ")[2] if t and t.count(", ") > 3 else None for t in chunk.texts.to_pylist()]
        vals, counts = np.unique([x for x in names if x], return_counts=True)
        return float(np.sort(counts)[-10:].sum() / counts.sum())

    assert top_share(real) > 3 * top_share(plain)
