"""The clusters step's fast paths give exactly what the plain ones give (issue 14's cost pass):
``dedup.stable_order`` = ``np.argsort(kind="stable")``, the compiled exact Jaccard = the numpy merge
= a set computation in Python."""

from __future__ import annotations

import numpy as np
import pytest

from charmeta.cleaning import dedup


@pytest.mark.parametrize("n", [0, 1, 2, 3, 17, 5_000, 100_000])
@pytest.mark.parametrize("kind", ["hashes", "few_values", "repeats", "same_high_bits", "dense"])
def test_stable_order_is_the_stable_argsort(n: int, kind: str) -> None:
    rng = np.random.default_rng(n)
    if kind == "hashes":
        keys = rng.integers(0, 2**64 - 1, n, dtype=np.uint64)
    elif kind == "few_values":
        keys = rng.integers(0, 7, n).astype(np.uint64)
    elif kind == "repeats":  # exact duplicates: equal keys keep index order
        pool = rng.integers(0, 2**64 - 1, max(n // 4, 1), dtype=np.uint64)
        keys = pool[rng.integers(0, len(pool), n)]
    elif kind == "dense":  # many distinct keys per high part: the plain stable sort takes over
        keys = rng.integers(0, 1 << 30, n).astype(np.uint64)
    else:  # distinct keys sharing their high bits: the re-sorted runs
        keys = (rng.integers(0, 3, n).astype(np.uint64) << np.uint64(61)) | rng.integers(0, 1 << 16, n).astype(
            np.uint64
        )
    got = dedup.stable_order(keys)
    assert np.array_equal(got, np.argsort(keys, kind="stable"))


def test_star_edges_link_each_bucket_member_to_its_first_node() -> None:
    rng = np.random.default_rng(5)
    keys = rng.integers(0, 300, 4_000).astype(np.uint64)
    nodes = np.sort(rng.choice(40_000, 4_000, replace=False))
    member, head = dedup._star_edges(keys, nodes)
    expected = {}
    for key, node in zip(keys, nodes):
        expected.setdefault(int(key), []).append(int(node))
    want = sorted((m, b[0]) for b in expected.values() for m in b[1:])
    assert sorted(zip(member.tolist(), head.tolist())) == want
    assert len(want) == 4_000 - len(expected)


def _lists(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[set[int]]]:
    """``n`` ascending distinct token lists, many of them near copies of each other."""
    sets: list[set[int]] = []
    for i in range(n):
        if i and rng.random() < 0.6:  # a near copy of an earlier list: one or two tags more or less
            s = set(sets[int(rng.integers(0, i))])
            for _ in range(int(rng.integers(0, 3))):
                if s and rng.random() < 0.5:
                    s.discard(next(iter(s)))
                else:
                    s.add(int(rng.integers(0, 40)))
        else:
            s = set(rng.integers(0, 40, int(rng.integers(0, 20))).tolist())
        sets.append(s)
    lens = np.array([len(s) for s in sets], np.int64)
    starts = np.cumsum(lens) - lens
    values = np.array([t for s in sets for t in sorted(s)], np.uint32)
    return lens, starts, values, sets


def test_compiled_exact_jaccard_is_the_numpy_merge_and_the_set_formula() -> None:
    pytest.importorskip("numba")
    from charmeta.cleaning.jit import jaccard_at_least

    rng = np.random.default_rng(14)
    lens, starts, values, sets = _lists(rng, 400)
    iu = rng.integers(0, len(sets), 20_000)
    iv = rng.integers(0, len(sets), 20_000)
    for thr in (0.5, 0.8, 0.9):
        expected = np.array(
            [
                len(sets[a] | sets[b]) > 0 and len(sets[a] & sets[b]) >= thr * len(sets[a] | sets[b])
                for a, b in zip(iu, iv)
            ]
        )
        assert 0 < expected.sum() < len(expected)  # both outcomes occur
        out = np.zeros(len(iu), bool)
        jaccard_at_least(lens, starts, values, iu, iv, thr, out, 0, len(iu))
        assert np.array_equal(out, expected)
        assert np.array_equal(dedup._jaccard_at_least(lens, starts, values, iu, iv, thr), expected)
