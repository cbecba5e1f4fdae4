"""Normalized tag sets, their exact hash and a batched MinHash + LSH band keys.

Tag set of an entry: its text lower-cased, cut at commas and ``|||`` (or at spaces when
it has neither: a raw Danbooru ``tag_string``), each tag with underscores as spaces,
backslashes removed and whitespace collapsed, empty tags and repeats dropped. So
reordered tags, case and ``_`` / space changes give the same set (an exact duplicate);
one tag more or less gives a set with Jaccard ``n / (n + 1)`` (a near duplicate).
Computed by DuckDB (one SQL expression, no Python per row).

MinHash: ``datasketch`` measured 22 us per 15-tag row here (``MinHash.update_batch``,
24 permutations): 110 s of one core at 5M rows, more than the whole 5M run's budget
(65 s today, 1.5x allowed). So the same min-wise scheme is applied to a whole partition
at once with numpy: each token's 32-bit hash goes through ``num_perm`` random odd
multipliers mod 2^32 (a bijection of the 32-bit space) xor a random mask, and
``np.minimum.reduceat`` takes each row's minimum - 0.3-0.5 s per 200k-row partition
(~3M tokens) on this shared 2-core machine, inside the pool worker that built it.
``tests/core/test_cleaning_signatures.py`` checks that its Jaccard estimates agree with
``datasketch``'s on the same sets. Bands of ``rows_per_band`` minima are folded into one
64-bit key each (the persisted LSH index: rows sharing any band key are candidates).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

#: Seed of the permutation parameters: band keys are persisted, so they must not change between runs.
SEED = 14

_SEP_RE = r",|\|\|\|"


def tags_sql(text: str) -> str:
    """DuckDB expression: the normalized tag set (sorted ``VARCHAR[]``) of the text column ``text``."""
    low = f"lower(coalesce({text}, ''))"
    split = (
        f"CASE WHEN contains({low}, ',') OR contains({low}, '|||') "
        f"THEN string_split_regex({low}, '{_SEP_RE}') ELSE string_split({low}, ' ') END"
    )
    norm = "trim(regexp_replace(replace(replace(x, '_', ' '), '\\', ''), '\\s+', ' ', 'g'))"
    return f"list_sort(list_distinct(list_filter(list_transform({split}, lambda x: {norm}), lambda x: x <> '')))"


def _params(num_perm: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(SEED)
    a = (rng.integers(0, 1 << 31, num_perm, dtype=np.uint64) * 2 + 1).astype(np.uint32)
    b = rng.integers(0, 1 << 32, num_perm, dtype=np.uint64).astype(np.uint32)
    return a, b


def minhash(hashes: pa.Array, num_perm: int) -> np.ndarray:
    """``(rows, num_perm)`` uint32 MinHash signatures of a ``list<uint64>`` array of token hashes.

    Rows without tokens get all-ones signatures (callers keep them out of the LSH)."""
    if isinstance(hashes, pa.ChunkedArray):
        hashes = hashes.combine_chunks()
    n = len(hashes)
    out = np.full((n, num_perm), np.iinfo(np.uint32).max, dtype=np.uint32)
    if n == 0:
        return out
    offsets = hashes.offsets.to_numpy().astype(np.int64)
    flat = hashes.values.to_numpy(zero_copy_only=False).astype(np.uint64)
    flat = flat[offsets[0] : offsets[-1]]
    offsets = offsets - offsets[0]
    h32 = (flat ^ (flat >> np.uint64(32))).astype(np.uint32)
    lens = np.diff(offsets)
    has = lens > 0
    if not has.any():
        return out
    starts = offsets[:-1][has]
    a, b = _params(num_perm)
    tmp = np.empty_like(h32)
    for i in range(num_perm):
        np.multiply(h32, a[i], out=tmp)
        np.bitwise_xor(tmp, b[i], out=tmp)
        out[has, i] = np.minimum.reduceat(tmp, starts)
    return out


_MIX = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0x27D4EB2F165667C5], dtype=np.uint64)


def band_keys(sig: np.ndarray, bands: int) -> np.ndarray:
    """``(rows, bands)`` uint64 keys: each band's ``num_perm // bands`` minima folded into one word."""
    n, k = sig.shape
    r = k // bands
    out = np.zeros((n, bands), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(bands):
            acc = np.full(n, np.uint64(j + 1) * _MIX[0], dtype=np.uint64)
            for i in range(r):
                acc = (acc ^ sig[:, j * r + i].astype(np.uint64)) * _MIX[(i + 1) % len(_MIX)]
                acc ^= acc >> np.uint64(29)
            out[:, j] = acc
    return out


def jaccard_sorted(a: np.ndarray, b: np.ndarray) -> float:
    """Exact Jaccard of two sorted unique hash arrays (the candidate check)."""
    if not len(a) and not len(b):
        return 1.0
    inter = len(np.intersect1d(a, b, assume_unique=True))
    return inter / (len(a) + len(b) - inter)
