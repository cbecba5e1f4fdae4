"""``embeddings``: normalized images -> vectors, batched, cache first, decode in DataLoader workers.

Why this shape: decode (PNG -> tensor) is CPU work that can overlap the model
when ``workers > 0``; the cache lookup happens before any decode so known
images cost one sqlite read. ``EmbedStats`` records the time spent waiting on
data vs inside the model, which the benchmark reports.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from charmeta.images.cache import EmbeddingCache
from charmeta.images.embedders import ImageEmbedder


@dataclass
class EmbedStats:
    images: int = 0
    cached: int = 0
    computed: int = 0
    data_wait_s: float = 0.0
    model_s: float = 0.0
    wall_s: float = 0.0
    batches: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def data_wait_share(self) -> float:
        busy = self.data_wait_s + self.model_s
        return self.data_wait_s / busy if busy else 0.0


class _PngDataset:
    """Map-style dataset over PNG bytes -> uint8 CHW tensors (runs in DataLoader workers)."""

    def __init__(self, pngs: Sequence[bytes], size: int) -> None:
        self.pngs, self.size = list(pngs), size

    def __len__(self) -> int:
        return len(self.pngs)

    def __getitem__(self, i: int):  # type: ignore[no-untyped-def]
        import torch

        from charmeta.images.normalize import decode_png, letterbox

        img = decode_png(self.pngs[i])
        if img.size != (self.size, self.size):  # normalized at another size than this model's
            img = letterbox(img, self.size)
        arr = np.asarray(img, dtype=np.uint8)
        return torch.from_numpy(arr.copy()).permute(2, 0, 1)


def embed_pngs(
    pngs: Sequence[bytes],
    embedder: ImageEmbedder,
    batch_size: int = 32,
    workers: int = 0,
    stats: EmbedStats | None = None,
) -> np.ndarray:
    """Embed PNG-encoded images in batches; returns ``(N, dim)`` float32."""
    import torch
    from torch.utils.data import DataLoader

    stats = stats if stats is not None else EmbedStats()
    if not pngs:
        return np.zeros((0, embedder.dim), np.float32)
    loader = DataLoader(
        _PngDataset(pngs, embedder.image_size),
        batch_size=batch_size,
        num_workers=workers,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=False,
    )
    out: list[np.ndarray] = []
    it = iter(loader)
    while True:
        t0 = time.perf_counter()
        try:
            batch = next(it)
        except StopIteration:
            break
        t1 = time.perf_counter()
        out.append(embedder.embed_pixels(batch))
        t2 = time.perf_counter()
        stats.data_wait_s += t1 - t0
        stats.model_s += t2 - t1
        stats.batches += 1
    return np.concatenate(out, axis=0)


def embeddings_schema(dim: int) -> pa.Schema:
    return pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("sha256", pa.string(), nullable=False),
            pa.field("model", pa.string(), nullable=False),
            pa.field("revision", pa.string(), nullable=False),
            pa.field("embedding", pa.list_(pa.float32(), dim)),
            pa.field("cached", pa.bool_()),
        ]
    )


def embed_table(
    normalized: pa.Table,
    embedder: ImageEmbedder,
    cache: EmbeddingCache | None = None,
    batch_size: int = 32,
    workers: int = 0,
    stats: EmbedStats | None = None,
) -> pa.Table:
    """Embed the ``ok`` rows of a ``normalized_images`` table; invalid rows are skipped.

    Duplicate images (same sha256) are embedded once. The result carries
    ``cached`` so a run can report how much work the cache saved.
    """
    stats = stats if stats is not None else EmbedStats()
    t_start = time.perf_counter()
    ok = normalized.filter(pc.equal(normalized["status"], "ok"))
    ids = ok["id"].to_pylist()
    shas = ok["sha256"].to_pylist()
    pngs = ok["pixels"].to_pylist()
    known = cache.get_many(shas, embedder.model_id, embedder.revision) if cache is not None else {}
    todo: dict[str, bytes] = {}
    for sha, png in zip(shas, pngs):
        if sha not in known and sha not in todo:
            todo[sha] = png
    vecs = embed_pngs(list(todo.values()), embedder, batch_size, workers, stats)
    fresh = dict(zip(todo.keys(), vecs))
    if cache is not None and fresh:
        cache.put_many(fresh, embedder.model_id, embedder.revision)
    rows_vec = [known[s] if s in known else fresh[s] for s in shas]
    stats.images += len(ids)
    stats.cached += sum(1 for s in shas if s in known)
    stats.computed += len(fresh)
    stats.wall_s += time.perf_counter() - t_start
    schema = embeddings_schema(embedder.dim)
    flat = np.concatenate(rows_vec).astype(np.float32) if rows_vec else np.zeros(0, np.float32)
    emb = pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float32()), embedder.dim)
    n = len(ids)
    return pa.table(
        {
            "id": pa.array(ids, pa.string()),
            "sha256": pa.array(shas, pa.string()),
            "model": pa.array([embedder.model_id] * n, pa.string()),
            "revision": pa.array([embedder.revision] * n, pa.string()),
            "embedding": emb,
            "cached": pa.array([s in known for s in shas], pa.bool_()),
        },
        schema=schema,
    )


def embedding_matrix(table: pa.Table) -> np.ndarray:
    """The ``embedding`` column as a ``(N, dim)`` float32 array (zero-copy where possible)."""
    col = table["embedding"].combine_chunks()
    dim = col.type.list_size
    return np.asarray(col.values.to_numpy(zero_copy_only=False), np.float32).reshape(-1, dim)
