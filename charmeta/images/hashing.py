"""Content hashes: sha256 of the file bytes (exact identity, cache key) and a 64-bit pHash.

Why both: sha256 keys the embedding cache and dedups byte-identical files; the
perceptual hash finds the same picture re-encoded or resized across datasets.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

import numpy as np
from PIL import Image


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@lru_cache(maxsize=1)
def _dct_matrix(n: int = 32) -> np.ndarray:
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    m = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    m[0] /= np.sqrt(2.0)
    return m


def phash(img: Image.Image) -> str:
    """DCT perceptual hash (the classic pHash): 16 hex digits, Hamming distance compares."""
    g = np.asarray(img.convert("L").resize((32, 32), Image.Resampling.BILINEAR), dtype=np.float64)
    d = _dct_matrix(32)
    coeffs = d @ g @ d.T
    low = coeffs[:8, :8].flatten()
    med = np.median(low[1:])
    bits = low > med
    value = 0
    for b in bits:
        value = (value << 1) | int(b)
    return f"{value:016x}"


def hamming(a: str, b: str) -> int:
    return bin(int(a, 16) ^ int(b, 16)).count("1")
