"""Duplicate clusters over every partition: exact, near (MinHash LSH) and image duplicates.

Inputs are the persisted per-partition parts (``charmeta.cleaning.parts``), read a few
columns at a time, never all pairs:

1. **exact**: entries with the same normalized tag set hash form one group (text rows);
   image rows group by image ``sha256`` instead (two pictures with the same tags are two
   entries, one picture posted twice is one);
2. **near (text)**: one representative per exact group; per LSH band, representatives
   sharing a band key are candidates, each linked to its bucket's first member (a star,
   so a bucket of m costs m - 1 checks, not m^2); a candidate pair is kept when the
   exact Jaccard of the two tag sets (re-read for the candidates only) is >= ``dedup.jaccard``;
3. **near (image)**: the 64-bit perceptual hash (``imagehash.phash``, computed by the
   image stage) cut into ``phash_bands`` bands; rows sharing a band are candidates,
   kept when the Hamming distance is <= ``phash_max_distance`` and, where both rows
   have an embedding, the cosine (``faiss`` inner product over the candidates'
   normalized vectors) is >= ``cosine``;
4. connected components of the kept links (``scipy.sparse.csgraph``) are the clusters.

The export keeps one entry per cluster by ``dedup.keep_rule`` (ok first, most complete,
highest mean confidence, smallest id); every other member gets ``duplicate_of`` = the
kept one's id. Only rows of clusters with two or more members are written
(``<root>/cleaning/dedup_clusters.parquet``); the catalog view gives every other entry
its own id as ``cluster_id``.

Memory: at 5M entries the per-row arrays kept at once are ~25 bytes a row (partition
index, position, set hash, rank keys) plus one band column at a time (8 bytes a row).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from charmeta.cleaning.config import CleaningPolicy, load_policy
from charmeta.cleaning.parts import part_paths
from charmeta.cleaning.profiles import CLEAN_DIR

log = logging.getLogger("charmeta.cleaning")

CLUSTERS_FILE = "dedup_clusters.parquet"
#: Bands sorted at once. Two: the step's peak is the verification (token lists), not the band
#: loop, since the verification needs no per-chunk key arrays (``jit.py``) and the per-row
#: columns left the loop (``_keepers``): at 3M rows, 3 interleaved pairs, 1 -> 2 threads took
#: the step from 4.7-6.4 to 4.1-5.5 s wall with the same CPU (5.0-7.0 vs 5.0-5.9 s) and peak RSS
#: (978-997 vs 917-1,031 MB). (Before both changes two bands and two numpy chunks at once took
#: the 5M step from 1.57 to 1.76 GB for no wall gain.)
THREADS = 2
STATS_FILE = "dedup_stats.json"


def clusters_path(root: str) -> str:
    return os.path.join(root, CLEAN_DIR, CLUSTERS_FILE)


def _hash_str(values: pa.Array) -> np.ndarray:
    """64-bit hashes of strings (image sha256 hex: its first 16 hex digits are already uniform)."""
    return np.array([int(s[:16], 16) ^ 0x5BD1E995 if s else 0 for s in values.to_pylist()], dtype=np.uint64)


def _uniq(x: np.ndarray) -> np.ndarray:
    """Sorted distinct values by sort + neighbour test (numpy 2's ``np.unique`` took ~2 us a value here)."""
    if not len(x):
        return x
    x = np.sort(x)
    keep = np.ones(len(x), dtype=bool)
    keep[1:] = x[1:] != x[:-1]
    return x[keep]


def stable_order(keys: np.ndarray) -> np.ndarray:
    """``np.argsort(keys, kind="stable")`` of uint64 ``keys`` (sorted by key, ties by index)."""
    return _sorted(keys)[0]


def _sorted(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(order, keys[order])`` with ``order`` = ``np.argsort(keys, kind="stable")``, by one
    ``np.sort`` of ``(key's high bits | index)`` words instead of a merge sort of indices.

    Why: the band loop and the exact groups sort every row's 64-bit key (7 sorts of ~5M at
    5M rows); numpy's stable argsort took 0.59-0.71 s per 5M random keys here, the packed
    sort 0.16-0.27 s (numpy's SIMD sort of plain words). The key's low ``bits(n)`` bits make room
    for the index, so two different keys can share the high part (~6 pairs per 5M 64-bit
    hashes): those runs (found by binary search in the sorted high parts) are re-sorted by the
    full key, so the order is exactly the stable argsort's, whatever the keys."""
    n = len(keys)
    if n < 2:
        return np.arange(n, dtype=np.int64), keys.copy()
    nb = np.uint64(max(1, (n - 1).bit_length()))
    packed = keys.astype(np.uint64, copy=False) >> nb  # in place from here: ~24 bytes a row at the peak
    packed <<= nb
    packed |= np.arange(n, dtype=np.uint64)
    packed.sort()
    order = (packed & ((np.uint64(1) << nb) - np.uint64(1))).view(np.int64)
    hi = packed
    hi >>= nb
    k = keys[order]
    bad = (hi[1:] == hi[:-1]) & (k[1:] != k[:-1])
    if bad.any():  # distinct keys with the same high bits: re-sort their runs by the full key
        shared = _uniq(hi[1:][bad])
        if len(shared) > 1000:  # not hashes (a test's small integers): the plain stable sort
            order = np.argsort(keys, kind="stable")
            return order, keys[order]
        for a, b in zip(np.searchsorted(hi, shared, "left"), np.searchsorted(hi, shared, "right")):
            seg = order[a:b]
            order[a:b] = seg[np.lexsort((seg, keys[seg]))]  # runs are ordered by high bits, so by key
            k[a:b] = keys[order[a:b]]
    return order, k


def _groups(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(first row of each distinct value, group index per row)`` by one stable sort
    (``np.unique(..., return_inverse=True)`` measured ~2 us a row here, 20x a sort)."""
    order, v = _sorted(values)
    new = np.ones(len(v), dtype=bool)
    new[1:] = v[1:] != v[:-1]
    gid_sorted = np.cumsum(new) - 1
    group = np.empty(len(v), dtype=np.int64)
    group[order] = gid_sorted
    return order[new], group


def _star_edges(keys: np.ndarray, nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Links (member, bucket head) among ``nodes`` that share a key (one sort, no pairs): the
    head is the bucket's first node in ``nodes`` order."""
    if len(keys) < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    order, k = _sorted(keys)
    nd = nodes[order]
    new = np.ones(len(k), dtype=bool)
    new[1:] = k[1:] != k[:-1]
    del k
    starts = np.flatnonzero(new)
    size = np.diff(np.append(starts, len(nd)))
    return nd[~new], np.repeat(nd[starts], size - 1)  # each bucket's members after its head, the head


def build_clusters(root: str, keys: list[str], policy: CleaningPolicy | None = None) -> dict[str, Any]:
    """Cluster the entries of ``keys``; writes ``dedup_clusters.parquet`` and returns stats."""
    warm = threading.Thread(target=_warm_kernel, name="charmeta-jit-warm", daemon=True)
    warm.start()  # numba's import + cached-code load (~1 s) while the parts are read
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    policy = policy or load_policy()
    keys = [k for k in keys if os.path.exists(part_paths(root, k)[0])]
    files = [part_paths(root, k)[0] for k in keys]
    # what every row needs; position, status, completeness and confidence are read in ``_keepers``
    # for the rows of multi-member clusters only (~18 bytes a row less at the step's peak)
    base_cols = ["set_hash", "ntok", "sha256", "phash"]
    sizes, set_hash, img, phash, ntok = [], [], [], [], []
    for f in files:
        t = pq.read_table(f, columns=base_cols)
        n = t.num_rows
        sizes.append(n)
        ntok.append(t["ntok"].to_numpy())
        sh = t["set_hash"].to_numpy().astype(np.uint64)
        sha = t["sha256"].combine_chunks()
        is_img = pc.is_valid(sha).to_numpy(zero_copy_only=False)
        if is_img.any():
            sh = sh.copy()
            sh[is_img] = _hash_str(sha.filter(pa.array(is_img)))
            img.append(is_img)
            phash.append(t["phash"].combine_chunks())
        else:
            img.append(np.zeros(n, bool))
            phash.append(None)
        set_hash.append(sh)
    n = int(sum(sizes))
    stats: dict[str, Any] = {"entries": n, "partitions": len(files)}
    if n == 0:
        _write(root, _empty())
        stats.update(clusters=0, clusters_multi=0, duplicates=0, duplicate_rate=0.0, exact_links=0, near_links=0)
        with open(os.path.join(root, CLEAN_DIR, STATS_FILE), "w", encoding="utf-8") as fh:
            json.dump(stats, fh)
        return stats
    img_a, sh_a = np.concatenate(img), np.concatenate(set_hash)
    ntok_a = np.concatenate(ntok)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    del img, set_hash, ntok

    # 1. exact groups: one node per distinct set hash
    first, group = _groups(sh_a)
    n_groups = len(first)
    rep = first  # representative row of each group
    src_l, dst_l = [], []
    # 2. text near duplicates among representatives
    rep_mask = np.zeros(n, bool)
    rep_mask[rep] = True
    rep_mask &= ~img_a
    del first, rep
    cand_u, cand_v = [], []
    if policy.dedup_enabled and rep_mask.any():

        def band_edges(j: int) -> tuple[np.ndarray, np.ndarray]:
            got = [_band(f, j) for f in files]
            band = np.concatenate([g[0] for g in got])
            sel = rep_mask & np.concatenate([g[1] for g in got])
            del got
            return _star_edges(band[sel], np.flatnonzero(sel))

        # ``THREADS`` bands at a time (Parquet reads and numpy sorts release the GIL): ~80 bytes a row each
        with ThreadPoolExecutor(THREADS) as pool:
            for u, v in pool.map(band_edges, range(policy.bands)):
                cand_u.append(u)
                cand_v.append(v)
    near_links = 0
    if cand_u:
        cu, cv = np.concatenate(cand_u), np.concatenate(cand_v)
        if len(cu):
            pair = _uniq(np.minimum(cu, cv).astype(np.int64) * n + np.maximum(cu, cv))
            cu, cv = pair // n, pair % n
            # J(A, B) <= min(|A|, |B|) / max(|A|, |B|): pairs whose sizes differ too much cannot pass
            small, large = np.minimum(ntok_a[cu], ntok_a[cv]), np.maximum(ntok_a[cu], ntok_a[cv])
            size_ok = small >= policy.jaccard * large
            stats["text_candidates_size_pruned"] = int((~size_ok).sum())
            cu, cv = cu[size_ok], cv[size_ok]
            keep = _verify_text(files, offsets, ntok_a, cu, cv, policy.jaccard)
            src_l.append(group[cu[keep]])
            dst_l.append(group[cv[keep]])
            near_links = int(keep.sum())
    stats["text_candidates"] = int(sum(len(u) for u in cand_u))
    # 3. image near duplicates
    image_links = 0
    if policy.dedup_enabled and img_a.any():
        iu, iv = _image_links(root, keys, files, offsets, phash, img_a, rep_mask | img_a, policy)
        src_l.append(group[iu])
        dst_l.append(group[iv])
        image_links = len(iu)
    # 4. components over groups
    if src_l:
        s, d = np.concatenate(src_l), np.concatenate(dst_l)
    else:
        s = d = np.zeros(0, np.int64)
    graph = coo_matrix((np.ones(len(s), np.int8), (s, d)), shape=(n_groups, n_groups))
    _, comp_of_group = connected_components(graph, directed=False)
    cluster = comp_of_group[group]
    sizes = np.bincount(cluster)
    multi = np.flatnonzero(sizes[cluster] > 1)
    stats.update(
        exact_links=int(n - n_groups),
        near_links=near_links,
        image_links=image_links,
        clusters=int(len(sizes)),
        clusters_multi=int((sizes > 1).sum()),
        duplicates=int(n - len(sizes)),
        duplicate_rate=round(float(n - len(sizes)) / n, 6),
    )
    table = _keepers(files, keys, offsets, multi, cluster, sh_a, group, policy)
    _write(root, table)
    dup_ok = pc.sum(pc.and_(pc.is_valid(table["duplicate_of"]), pc.equal(table["status"], "ok"))).as_py() or 0
    stats["ok_duplicates_dropped"] = int(dup_ok)
    with open(os.path.join(root, CLEAN_DIR, STATS_FILE), "w", encoding="utf-8") as fh:
        json.dump(stats, fh)
    return stats


def _jaccard_kernel() -> Any:
    """The compiled exact-Jaccard merge, or None (``compiled.load``: tried once per process)."""
    from charmeta.cleaning import compiled

    return compiled.load("charmeta.cleaning.jit", "jaccard_at_least", "exact Jaccard by the slower numpy merge")


def _warm_kernel() -> None:
    """Import and load (or compile) the exact-Jaccard kernel for the argument types
    ``_verify_text`` passes: numba's import and the load of its cached machine code took
    ~1.3 s of the clusters step on the loaded machine, now spent while the main thread reads."""
    jaccard_at_least = _jaccard_kernel()
    if jaccard_at_least is None:
        return
    one = np.zeros(1, np.int64)
    jaccard_at_least(one, one, np.zeros(1, np.uint32), one, one, 0.5, np.zeros(1, bool), np.int64(0), np.int64(1))


def _band(path: str, j: int) -> tuple[np.ndarray, np.ndarray]:
    """Band ``j``'s keys of a part and whether each row has one."""
    col = pq.read_table(path, columns=[f"b{j}"]).column(0).combine_chunks()
    valid = pc.is_valid(col).to_numpy(zero_copy_only=False)
    return col.fill_null(0).to_numpy().astype(np.uint64), valid


def _rows_tokens(
    files: list[str], offsets: np.ndarray, rows: np.ndarray, bound: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(lengths, starts, values)`` of the 32-bit token lists of the (sorted, unique) global
    ``rows``, read once per part into one preallocated buffer of ``bound`` (>= the total)
    values: concatenating per-part Arrow chunks held the candidates' tokens twice (~300 MB
    at 5M rows)."""
    lens = np.zeros(len(rows), np.int64)
    values = np.empty(bound, np.uint32)  # untouched pages past the end cost nothing
    part = np.searchsorted(offsets, rows, side="right") - 1
    bounds = np.searchsorted(part, np.arange(len(files) + 1))
    at = 0
    for p in range(len(files)):
        lo, hi = bounds[p], bounds[p + 1]
        if lo == hi:
            continue
        local = rows[lo:hi] - offsets[p]
        col = pq.read_table(files[p], columns=["tokens"]).column(0).combine_chunks().take(pa.array(local))
        flat = col.flatten().to_numpy(zero_copy_only=False)
        values[at : at + len(flat)] = flat
        at += len(flat)
        lens[lo:hi] = col.value_lengths().fill_null(0).to_numpy(zero_copy_only=False)
        del col, flat
    return lens, np.cumsum(lens) - lens, values[:at]


#: Candidate pairs checked at once by the numpy fallback (bounds its memory: ~40 bytes per tag of a pair).
VERIFY_CHUNK = 100_000
#: Threads of the compiled check (it allocates nothing: the second core costs no memory).
VERIFY_THREADS = 2


def _verify_text(
    files: list[str], offsets: np.ndarray, ntok: np.ndarray, u: np.ndarray, v: np.ndarray, thr: float
) -> np.ndarray:
    """Exact Jaccard >= ``thr`` for each candidate pair.

    The candidates' token lists are read once (one pass over the parts, only the candidate
    rows kept: ~4 bytes a tag, ~60 bytes a row; before, every chunk of pairs re-read every
    part's whole token column: 3.1 of the clusters step's 10 s at 1M rows). Each part's lists
    are ascending (``signatures.sorted_token_lists``), so two lists intersect by one merge:
    compiled (``charmeta.cleaning.jit``, ``VERIFY_THREADS`` threads) when numba is installed,
    else vectorised per chunk of pairs (``_jaccard_at_least``)."""
    keep = np.zeros(len(u), dtype=bool)
    if not len(u):
        return keep
    rows = _uniq(np.concatenate([u, v]))
    remap = np.zeros(int(offsets[-1]), np.int64)  # global row -> its place in ``rows`` (a binary search
    remap[rows] = np.arange(len(rows))  # per pair end was 0.6 s at 3M rows; this is a gather)
    iu, iv = remap[u], remap[v]
    del remap  # before the token lists: not both at the step's peak
    lens, starts, values = _rows_tokens(files, offsets, rows, int(ntok[rows].sum()))
    del rows
    jaccard_at_least = _jaccard_kernel()
    if jaccard_at_least is None:  # numba missing or unusable: the numpy merge, one chunk of pairs at a time
        for lo in range(0, len(u), VERIFY_CHUNK):
            hi = lo + VERIFY_CHUNK
            keep[lo:hi] = _jaccard_at_least(lens, starts, values, iu[lo:hi], iv[lo:hi], thr)
        return keep
    cuts = np.linspace(0, len(u), VERIFY_THREADS + 1).astype(np.int64)
    with ThreadPoolExecutor(VERIFY_THREADS) as pool:  # numba releases the GIL (nogil)
        list(
            pool.map(
                lambda k: jaccard_at_least(lens, starts, values, iu, iv, float(thr), keep, cuts[k], cuts[k + 1]),
                range(VERIFY_THREADS),
            )
        )
    return keep


def _side_keys(lens: np.ndarray, starts: np.ndarray, values: np.ndarray, at: np.ndarray) -> np.ndarray:
    """``pair << 32 | token`` of one side of every pair: ascending when each list is."""
    ln = lens[at]
    total = int(ln.sum())
    shift = np.repeat(starts[at] - (np.cumsum(ln) - ln), ln)  # list start minus its place in the output
    elem = values[np.arange(total, dtype=np.int64) + shift].astype(np.uint64)
    return (np.repeat(np.arange(len(at), dtype=np.uint64), ln) << np.uint64(32)) | elem


def _jaccard_at_least(
    lens: np.ndarray, starts: np.ndarray, values: np.ndarray, iu: np.ndarray, iv: np.ndarray, thr: float
) -> np.ndarray:
    """Exact Jaccard of the lists at ``iu`` and ``iv`` (ascending, distinct) >= ``thr``."""
    key = np.concatenate([_side_keys(lens, starts, values, iu), _side_keys(lens, starts, values, iv)])
    key.sort(kind="stable")  # two ascending runs: timsort merges them in one linear pass
    dup = key[1:] == key[:-1]
    inter = (
        np.bincount((key[1:][dup] >> np.uint64(32)).astype(np.int64), minlength=len(iu))
        if dup.any()
        else np.zeros(len(iu), np.int64)
    )
    union = lens[iu] + lens[iv] - inter
    return (union > 0) & (inter >= thr * np.maximum(union, 1))


def _image_links(
    root: str,
    keys: list[str],
    files: list[str],
    offsets: np.ndarray,
    phash: list[Any],
    img_a: np.ndarray,
    nodes_mask: np.ndarray,
    policy: CleaningPolicy,
) -> tuple[np.ndarray, np.ndarray]:
    """Perceptual-hash banding, then Hamming distance and (when embedded) cosine via faiss."""
    rows = np.flatnonzero(img_a)
    hexes: list[str | None] = []
    for p, ph in enumerate(phash):
        if ph is not None:
            loc = rows[(rows >= offsets[p]) & (rows < offsets[p + 1])] - offsets[p]
            hexes += ph.take(pa.array(loc)).to_pylist()
    have = np.array([h is not None and len(h) == 16 for h in hexes], bool)
    rows = rows[have]
    if len(rows) < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    bits = np.array([int(h, 16) for h, ok in zip(hexes, have) if ok], dtype=np.uint64)
    width = 64 // policy.phash_bands
    cu, cv = [], []
    for j in range(policy.phash_bands):
        band = (bits >> np.uint64(j * width)) & np.uint64((1 << width) - 1)
        u, v = _star_edges(band, np.arange(len(rows)))
        cu.append(u)
        cv.append(v)
    u, v = np.concatenate(cu), np.concatenate(cv)
    if not len(u):
        return u, v
    pair = _uniq(np.minimum(u, v) * len(rows) + np.maximum(u, v))
    u, v = pair // len(rows), pair % len(rows)
    x = bits[u] ^ bits[v]
    dist = np.array([bin(int(t)).count("1") for t in x])
    keep = dist <= policy.phash_max_distance
    u, v = u[keep], v[keep]
    cos = _cosines(root, keys, offsets, rows, u, v)
    if cos is not None:
        keep = np.isnan(cos) | (cos >= policy.cosine)
        u, v = u[keep], v[keep]
    return rows[u], rows[v]


def _cosines(
    root: str, keys: list[str], offsets: np.ndarray, rows: np.ndarray, u: np.ndarray, v: np.ndarray
) -> np.ndarray | None:
    """Cosine of each candidate pair's image embeddings (NaN where one has none), through a
    faiss inner-product index over the candidates' L2-normalized vectors."""
    import logging

    # faiss's loader logs each CPU-specific build it tries (and the ImportError of those missing) at INFO
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    import faiss

    if not len(u):
        return None
    need = _uniq(np.concatenate([u, v]))
    vec: dict[int, np.ndarray] = {}
    g = rows[need]
    part = np.searchsorted(offsets, g, side="right") - 1
    for p in _uniq(part):
        path = os.path.join(root, "embeddings", keys[p] + ".parquet")
        if not os.path.exists(path):
            continue
        t = pq.read_table(path, columns=["source_position", "embedding"])
        by_pos = dict(zip(t["source_position"].to_pylist(), t["embedding"].to_pylist()))
        posc = pq.read_table(part_paths(root, keys[p])[0], columns=["pos"]).column(0).to_numpy()
        for i, gg in zip(need[part == p], g[part == p]):
            e = by_pos.get(int(posc[gg - offsets[p]]))
            if e is not None:
                vec[int(i)] = np.asarray(e, dtype=np.float32)
    if not vec:
        return None
    ids = np.array(sorted(vec), dtype=np.int64)
    mat = np.stack([vec[int(i)] for i in ids]).astype(np.float32)
    faiss.normalize_L2(mat)
    index = faiss.IndexIDMap(faiss.IndexFlatIP(mat.shape[1]))
    index.add_with_ids(mat, ids)
    out = np.full(len(u), np.nan)
    have = {int(i): k for k, i in enumerate(ids)}
    for k, (a, b) in enumerate(zip(u, v)):
        if int(a) in have and int(b) in have:
            out[k] = float(index.index.reconstruct(have[int(a)]) @ index.index.reconstruct(have[int(b)]))
    return out


def _keepers(
    files: list[str],
    keys: list[str],
    offsets: np.ndarray,
    multi: np.ndarray,
    cluster: np.ndarray,
    sh: np.ndarray,
    group: np.ndarray,
    policy: CleaningPolicy,
) -> pa.Table:
    """The rows of multi-member clusters with ``cluster_id``, ``duplicate_of`` and ``kind``."""
    if not len(multi):
        return _empty()
    part = np.searchsorted(offsets, multi, side="right") - 1
    bounds = np.searchsorted(part, np.arange(len(files) + 1))  # ``multi`` is ascending, so is ``part``
    cols_read = ["id", "status", "pos", "completeness", "confidence"]
    got = [
        pq.read_table(files[p], columns=cols_read).take(pa.array(multi[bounds[p] : bounds[p + 1]] - offsets[p]))
        for p in range(len(files))
        if bounds[p + 1] > bounds[p]
    ]

    def column(name: str) -> pa.Array:
        return pa.concat_arrays([t[name].combine_chunks() for t in got])

    id_arr = column("id").cast(pa.string())
    status_arr = column("status").cast(pa.string())
    ok = pa.array(np.asarray(pc.equal(status_arr, "ok").to_numpy(zero_copy_only=False), bool))
    comp = pa.array(column("completeness").to_numpy(zero_copy_only=False))
    conf = pa.array(column("confidence").to_numpy(zero_copy_only=False))
    pos = column("pos").to_numpy(zero_copy_only=False)
    sort_keys: list[tuple[str, str]] = [("cluster", "ascending")]
    cols: dict[str, Any] = {"cluster": pa.array(cluster[multi])}
    for rule in policy.keep_rule:
        if rule == "ok_first":
            cols["ok"] = ok
            sort_keys.append(("ok", "descending"))
        elif rule == "completeness":
            cols["completeness"] = comp
            sort_keys.append(("completeness", "descending"))
        elif rule == "confidence":
            cols["confidence"] = conf
            sort_keys.append(("confidence", "descending"))
    cols["id"] = id_arr
    sort_keys.append(("id", "ascending"))
    order = pc.sort_indices(pa.table(cols), sort_keys=sort_keys).to_numpy()
    cl = cluster[multi][order]
    head = np.ones(len(cl), bool)
    head[1:] = cl[1:] != cl[:-1]
    head_idx = np.maximum.accumulate(np.where(head, np.arange(len(cl)), 0))
    ids_sorted = id_arr.take(pa.array(order))
    keeper_id = ids_sorted.take(pa.array(head_idx))
    # cluster_id = the smallest id of the cluster: first of each cluster when sorted by (cluster, id)
    by_id = pc.sort_indices(
        pa.table({"c": pa.array(cl), "id": ids_sorted}), sort_keys=[("c", "ascending"), ("id", "ascending")]
    )
    by_id_np = by_id.to_numpy()
    first = np.ones(len(cl), bool)
    first[1:] = cl[by_id_np][1:] != cl[by_id_np][:-1]
    min_at = by_id_np[first]  # per cluster (in ascending cluster order), its smallest id's place
    cluster_rank = np.cumsum(head) - 1  # clusters are contiguous in ``cl`` and ascending
    cluster_id = ids_sorted.take(pa.array(min_at[cluster_rank]))
    grp = group[multi][order]
    exact = grp == grp[head_idx]  # same tag set (or image) as the kept entry
    g_rows = multi[order]
    kind = np.where(head, "kept", np.where(exact, "exact", "near"))
    return pa.table(
        {
            "partition": pa.DictionaryArray.from_arrays(
                pa.array(part[order].astype(np.int32)), pa.array(keys, pa.string())
            ).cast(pa.string()),
            "source_position": pa.array(pos[order]),
            "id": ids_sorted,
            "status": status_arr.take(pa.array(order)),
            "cluster_id": cluster_id,
            "cluster_size": pa.array(np.bincount(cluster)[cl].astype(np.int64)),
            "duplicate_of": pc.if_else(pa.array(head), pa.scalar(None, pa.string()), keeper_id),
            "kind": pa.array(kind, pa.string()),
            "set_hash": pa.array(sh[g_rows]),
        }
    )


def _empty() -> pa.Table:
    return pa.table(
        {
            "partition": pa.array([], pa.string()),
            "source_position": pa.array([], pa.int64()),
            "id": pa.array([], pa.string()),
            "status": pa.array([], pa.string()),
            "cluster_id": pa.array([], pa.string()),
            "cluster_size": pa.array([], pa.int64()),
            "duplicate_of": pa.array([], pa.string()),
            "kind": pa.array([], pa.string()),
            "set_hash": pa.array([], pa.uint64()),
        }
    )


def _write(root: str, table: pa.Table) -> None:
    out = clusters_path(root)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    tmp = out + f".tmp-{os.getpid()}"
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, out)


def read_clusters(root: str) -> pa.Table:
    p = clusters_path(root)
    return pq.read_table(p) if os.path.exists(p) else _empty()
