"""Normalized tag sets, their exact hash and a batched MinHash + LSH band keys.

Tag set of an entry: its text lower-cased, cut at commas and ``|||`` (or at spaces when
it has neither: a raw Danbooru ``tag_string``), each tag with underscores as spaces,
backslashes removed, empty tags and repeats dropped. So reordered tags, case and ``_`` /
space changes give the same set (an exact duplicate); one tag more or less gives a set
with Jaccard ``n / (n + 1)`` (a near duplicate). Arrow kernels, no Python per row.

MinHash: ``datasketch`` measured 22 us per 15-tag row here (``MinHash.update_batch``,
24 permutations) and 30 us per 23-tag row with ``MinHash.bulk`` (30 permutations, 20k
synthetic rows, loaded machine; the numpy scheme below: 1.2 us a row, band keys included):
110-150 s of one core at 5M rows, more than the whole 5M run's budget (65 s, 1.5x allowed). So the same min-wise scheme is applied to a whole partition
at once with numpy: each token's 32-bit hash goes through ``num_perm`` random odd
multipliers mod 2^32 (a bijection of the 32-bit space) xor a random mask, and
``np.minimum.reduceat`` takes each row's minimum - 0.3-0.5 s per 200k rows / 3M tokens
with 24 permutations on this shared 2-core machine, inside the pool worker that built the
partition. ``tests/core/test_cleaning_rules.py`` checks that its Jaccard estimates agree
with ``datasketch``'s on the same sets. Bands of ``rows_per_band`` minima are folded into one
64-bit key each (the persisted LSH index: rows sharing any band key are candidates).

The cleaning part computes all of it per row in one compiled pass when numba is installed
(``part_signatures`` -> ``charmeta.cleaning.jit_parts``); the numpy functions here are the
fallback and the reference it is tested against.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

#: Seed of the permutation parameters: band keys are persisted, so they must not change between runs.
SEED = 14


@dataclass
class TagCodes:
    """A batch's tags as codes: each raw tag's normalized tag, by *rank* (the normalized tags'
    order by 32-bit hash ``h32``, ties by first appearance), with the tags of one row contiguous.

    ``groups``/``starts``: row and first tag of each run of tags (a row with a comma or not: two
    sequences, each in row order; ``starts`` has one more entry, the end); ``ranks``: per raw tag,
    its rank, -1 for the empty tag; ``dictionary``/``h64``/``t32``: the normalized tags, their
    64-bit DuckDB hash and ``h32`` of it (ascending), all in rank order."""

    n: int
    groups: np.ndarray
    starts: np.ndarray
    ranks: np.ndarray
    dictionary: pa.Array
    h64: np.ndarray
    t32: np.ndarray


def tag_codes(text: pa.Array | pa.ChunkedArray, con: Any = None) -> TagCodes:
    """Each row's tags, normalized and hashed per distinct tag (see ``TagCodes``).

    Arrow kernels over the whole batch, no Python per row: rows with a comma split at commas,
    the others (raw ``tag_string``) at whitespace; then per distinct tag: lower case, ``_`` ->
    space, backslashes removed, spaces and ``|`` trimmed (the v3.1 ``|||`` marker); empty tags
    dropped. Each distinct tag is hashed once (``dictionary_encode``, then DuckDB's 64-bit
    ``hash`` over the dictionary; the DuckDB version is part of the cleaning parts' identity
    so persisted keys never mix two hash functions). Measured on 100k synthetic rows (this
    shared machine): 0.9 s of CPU through DuckDB list lambdas, ~0.4 s with Arrow kernels over
    the whole texts, ~0.25 s normalizing the distinct tags only."""
    import duckdb
    import pyarrow.compute as pc

    if isinstance(text, pa.ChunkedArray) and text.num_chunks == 1:
        text = text.chunk(0)
    n = len(text)
    # a null text has no tags: in neither set of rows (no fill_null copy of the texts); the takes
    # below also gather a chunked input into one array (no combine_chunks copy before them)
    has_comma = pc.match_substring(text, ",")
    comma_rows = np.flatnonzero(np.asarray(has_comma.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool))
    raw_rows = np.flatnonzero(np.asarray(pc.invert(has_comma).fill_null(False).to_numpy(zero_copy_only=False), bool))
    # split first, normalize the distinct raw tags only (lower case, '_', backslashes and trims
    # touch neither commas nor whitespace, so the split is the same): 10x fewer characters than
    # the texts (1.7M tags, 95k distinct per 100k synthetic rows)
    whole = len(comma_rows) == n and isinstance(text, pa.Array)
    c_lists = pc.split_pattern(text if whole else _one(text.take(pa.array(comma_rows))), ",")
    r_lists = pc.utf8_split_whitespace(_one(text.take(pa.array(raw_rows))))
    # one dictionary over both sets of tags without concatenating them (a chunked encode shares
    # its dictionary across chunks, in first-appearance order as over the concatenation)
    flat = pa.chunked_array([pc.list_flatten(c_lists), pc.list_flatten(r_lists)], type=pa.string())
    counts = np.concatenate(
        [
            pc.list_value_length(c_lists).fill_null(0).to_numpy(zero_copy_only=False),
            pc.list_value_length(r_lists).fill_null(0).to_numpy(zero_copy_only=False),
        ]
    ).astype(np.int64)
    starts = np.zeros(len(counts) + 1, np.int64)
    np.cumsum(counts, out=starts[1:])
    raw_enc = pc.dictionary_encode(flat)
    raw_codes = np.concatenate(
        [np.zeros(0, np.int32)] + [c.indices.to_numpy(zero_copy_only=False) for c in raw_enc.chunks]
    )
    raw_dict = raw_enc.chunk(0).dictionary if raw_enc.num_chunks else pa.array([], pa.string())
    del flat, raw_enc, c_lists, r_lists
    norm = pc.utf8_lower(raw_dict)
    norm = pc.utf8_trim(pc.replace_substring(pc.replace_substring(norm, "_", " "), "\\", ""), " \t\n\r|")
    enc = pc.dictionary_encode(norm)
    dictionary = enc.dictionary
    own = con is None
    con = duckdb.connect() if own else con
    try:
        dict_tbl = pa.table({"t": dictionary})  # noqa: F841 - read by DuckDB below
        dh = con.sql("SELECT hash(t) AS h FROM dict_tbl").to_arrow_table().column(0).to_numpy().astype(np.uint64)
    finally:
        if own:
            con.close()
    # rank: a distinct tag's place in (32-bit hash, first appearance) order, so that a row's
    # sorted ranks are its tokens in the ascending order the part persists
    d32 = h32(dh)
    order = np.argsort((d32.astype(np.uint64) << np.uint64(32)) | np.arange(len(dh), dtype=np.uint64))  # = lexsort
    rank = np.empty(len(dh), np.int32)
    rank[order] = np.arange(len(dh), dtype=np.int32)
    empty = np.flatnonzero(np.asarray(pc.equal(dictionary, "").to_numpy(zero_copy_only=False), dtype=bool))
    if len(empty):
        rank[empty[0]] = -1
    raw_rank = rank[enc.indices.to_numpy(zero_copy_only=False)]
    return TagCodes(
        n=n,
        groups=np.concatenate([comma_rows, raw_rows]).astype(np.int64, copy=False),
        starts=starts,
        ranks=raw_rank[raw_codes],
        dictionary=dictionary.take(pa.array(order)),
        h64=dh[order],
        t32=d32[order],
    )


def _one(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One array (a take from a chunked array gives one chunk)."""
    return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr


def token_hashes(text: pa.Array, con: Any = None) -> tuple[np.ndarray, np.ndarray, pa.Array, np.ndarray]:
    """Each row's normalized tag set as ``(row, token hash)`` pairs, unique per row, sorted by row and
    within a row by the 32-bit hash ``h32`` (ties by first appearance). Returns ``(rows, hashes,
    dictionary, dictionary index per pair)``: numpy over ``tag_codes`` (one sort of all pairs)."""
    codes = tag_codes(text, con)
    rows, ranks = _sorted_pairs(codes)
    return rows, codes.h64[ranks], codes.dictionary, ranks


def _sorted_pairs(codes: TagCodes) -> tuple[np.ndarray, np.ndarray]:
    """``(row, rank)`` pairs, unique, sorted: one sort of ``row << bits | rank`` keys."""
    rows = np.repeat(codes.groups, np.diff(codes.starts))
    shift = np.int64(max(int(len(codes.h64)).bit_length(), 1))
    key = (rows << shift) | (codes.ranks.astype(np.int64) + 1)  # the empty tag (-1) sorts first in its row
    key.sort()
    first = np.ones(len(key), dtype=bool)
    first[1:] = key[1:] != key[:-1]
    low = (key & ((np.int64(1) << shift) - 1)) - 1
    first &= low >= 0
    return key[first] >> shift, low[first]


def as_lists(rows: np.ndarray, values: np.ndarray, n: int) -> pa.Array:
    """``(row, value)`` pairs sorted by row -> a ``list<value>`` array of ``n`` rows."""
    lens = np.bincount(rows, minlength=n) if len(rows) else np.zeros(n, np.int64)
    offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values))


def h32(hashes: np.ndarray) -> np.ndarray:
    """The 32-bit token hashes persisted per row (high xor low word of the 64-bit hash)."""
    return (hashes ^ (hashes >> np.uint64(32))).astype(np.uint32)


def sorted_token_lists(rows: np.ndarray, hashes: np.ndarray, n: int, t32: np.ndarray | None = None) -> pa.Array:
    """Each row's distinct 32-bit token hashes in ascending order, as ``list<uint32>``.

    Sorted within the row so that the exact-Jaccard check of candidate pairs
    (``dedup._jaccard_at_least``) finds the intersection of two rows by merging two sorted
    runs instead of sorting every candidate pair's tokens. ``token_hashes`` already returns
    its pairs in that order (checked here: ~5 ms per 100k rows instead of a second sort of
    the partition's ~2.3M tokens, ~0.05 s); other inputs are sorted. ``t32``: ``h32(hashes)``
    when the caller has it."""
    t32 = h32(hashes) if t32 is None else t32
    if len(rows) > 1:
        same = rows[1:] == rows[:-1]
        ordered = bool(np.all(rows[1:] >= rows[:-1])) and not bool(np.any(same & (t32[1:] < t32[:-1])))
    else:
        ordered, same = True, np.zeros(0, bool)
    if ordered:
        first = np.ones(len(rows), dtype=bool)
        first[1:] = ~(same & (t32[1:] == t32[:-1]))
        return as_lists(rows[first], t32[first], n) if not first.all() else as_lists(rows, t32, n)
    key = (rows.astype(np.uint64) << np.uint64(32)) | t32.astype(np.uint64)
    key.sort()
    if len(key):
        first = np.ones(len(key), dtype=bool)
        first[1:] = key[1:] != key[:-1]
        key = key[first]
    return as_lists((key >> np.uint64(32)).astype(np.int64), (key & np.uint64(0xFFFFFFFF)).astype(np.uint32), n)


def _params(num_perm: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(SEED)
    a = (rng.integers(0, 1 << 31, num_perm, dtype=np.uint64) * 2 + 1).astype(np.uint32)
    b = rng.integers(0, 1 << 32, num_perm, dtype=np.uint64).astype(np.uint32)
    return a, b


def minhash(rows: np.ndarray, hashes: np.ndarray, n: int, num_perm: int, t32: np.ndarray | None = None) -> np.ndarray:
    """``(n, num_perm)`` uint32 MinHash signatures from ``(row, token hash)`` pairs sorted by row.

    Rows without tokens get all-ones signatures (callers keep them out of the LSH).
    ``t32``: ``h32(hashes)`` when the caller has it."""
    # one contiguous row per permutation (returned transposed, a view): a column per
    # permutation of an (n, num_perm) array was a strided write, ~40% of this function's time
    out = np.full((num_perm, n), np.iinfo(np.uint32).max, dtype=np.uint32)
    if not len(rows):
        return out.T
    t32 = h32(hashes) if t32 is None else t32
    starts = np.flatnonzero(np.concatenate([[True], rows[1:] != rows[:-1]]))
    has = rows[starts]
    a, b = _params(num_perm)
    tmp = np.empty_like(t32)
    for i in range(num_perm):
        np.multiply(t32, a[i], out=tmp)
        np.bitwise_xor(tmp, b[i], out=tmp)
        out[i, has] = np.minimum.reduceat(tmp, starts)
    return out.T


def set_hashes(rows: np.ndarray, hashes: np.ndarray, n: int) -> np.ndarray:
    """Order-free 64-bit hash of each row's (unique) token set: the wrapping sum of the tokens'
    hashes after a splitmix64 finalizer (0 for a row without tokens)."""
    out = np.zeros(n, dtype=np.uint64)
    if not len(rows):
        return out
    z = _splitmix(hashes)
    starts = np.flatnonzero(np.concatenate([[True], rows[1:] != rows[:-1]]))
    with np.errstate(over="ignore"):
        out[rows[starts]] = np.add.reduceat(z, starts)
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


@dataclass
class PartSignatures:
    """Per row of a batch: distinct tag count, exact set hash, whether a flagged tag is among its
    tags, its ascending distinct 32-bit token hashes (``list<uint32>``) and LSH band keys."""

    ntok: np.ndarray
    set_hash: np.ndarray
    flagged: np.ndarray
    tokens: pa.Array
    keys: np.ndarray


def part_signatures(codes: TagCodes, num_perm: int, bands: int, flag: np.ndarray) -> PartSignatures:
    """Everything the cleaning part derives from the tags, per row (``flag``: bool per rank).

    Compiled in one pass over the tags when numba is installed (``charmeta.cleaning.jit_parts``:
    each row's ranks sorted in place, then its MinHash minima, band keys, set hash and flags),
    else numpy: one sort of all ``(row, rank)`` pairs, ``minhash``'s 30 passes, ``band_keys``,
    ``set_hashes``, bincounts - ~0.28 s of CPU per 100k rows against ~0.05 s compiled (this
    shared machine, realistic 100k-row partition). Both give the same arrays, bit for bit
    (``tests/core/test_cleaning_parts.py``)."""
    kernel = _kernel(len(codes.ranks))
    n = codes.n
    if kernel is None:
        rows, ranks = _sorted_pairs(codes)
        hashes, t32 = codes.h64[ranks], codes.t32[ranks]
        return PartSignatures(
            ntok=np.bincount(rows, minlength=n).astype(np.int32),
            set_hash=set_hashes(rows, hashes, n),
            flagged=np.bincount(rows, weights=flag[ranks], minlength=n) > 0 if len(rows) else np.zeros(n, bool),
            tokens=sorted_token_lists(rows, hashes, n, t32=t32),
            keys=band_keys(minhash(rows, hashes, n, num_perm, t32=t32), bands),
        )
    a, b = _params(num_perm)
    ntok = np.zeros(n, np.int32)
    set_hash = np.zeros(n, np.uint64)
    flagged = np.zeros(n, np.bool_)
    keys = np.empty((n, bands), dtype=np.uint64)
    # rows without tokens: the keys of an all-ones signature, as minhash leaves them
    keys[:] = band_keys(np.full((1, num_perm), np.iinfo(np.uint32).max, dtype=np.uint32), bands)[0]
    lens = np.diff(codes.starts)
    offsets = np.empty(n + 1, np.int32)
    values = np.empty(len(codes.ranks), np.uint32)
    written = kernel(
        codes.groups,
        np.argsort(codes.groups, kind="stable"),  # two ascending runs (rows with / without a comma)
        codes.starts,
        codes.ranks,
        codes.t32,
        _splitmix(codes.h64),
        flag.astype(np.uint8),
        a,
        b,
        _MIX,
        bands,
        np.empty(int(lens.max()) if len(lens) else 0, np.int32),
        ntok,
        set_hash,
        flagged,
        keys,
        offsets,
        values,
    )
    tokens = pa.ListArray.from_arrays(pa.array(offsets), pa.array(values[:written]))
    return PartSignatures(ntok=ntok, set_hash=set_hash, flagged=flagged, tokens=tokens, keys=keys)


def _splitmix(hashes: np.ndarray) -> np.ndarray:
    """splitmix64 finalizer of each 64-bit hash (``set_hashes`` sums these per row)."""
    with np.errstate(over="ignore"):
        z = hashes + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return z


#: Tags under which a process that has not loaded the compiled loops yet takes the numpy path:
#: importing numba and loading the cached loops costs ~0.2-0.3 s once per process, what the
#: numpy path spends on ~1-2M tags (a 100k-row partition has ~2.3M; a test partition a few hundred).
JIT_MIN_TAGS = 1_000_000
_JIT = ("charmeta.cleaning.jit_parts", "row_signatures")


def _kernel(n_tags: int) -> Any:
    """The compiled part loops, or None without numba (``compiled.load``: tried once per process)
    or for a small batch in a process that has not tried them yet."""
    from charmeta.cleaning import compiled

    if n_tags < JIT_MIN_TAGS and not compiled.loaded(*_JIT):
        return None
    return compiled.load(*_JIT, "part signatures by numpy (~0.2-0.3 s more per 100k rows)")


def jaccard_sorted(a: np.ndarray, b: np.ndarray) -> float:
    """Exact Jaccard of two sorted unique hash arrays (the candidate check)."""
    if not len(a) and not len(b):
        return 1.0
    inter = len(np.intersect1d(a, b, assume_unique=True))
    return inter / (len(a) + len(b) - inter)
