"""Content hashes: sha256 of the file bytes (exact identity, cache key) and a 64-bit pHash.

Why both: sha256 keys the embedding cache and dedups byte-identical files; the
perceptual hash finds the same picture re-encoded or resized across datasets.
"""

from __future__ import annotations

import hashlib

from PIL import Image


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def phash(img: Image.Image) -> str:
    """The 64-bit perceptual hash of ``imagehash`` (DCT of the 32x32 grey image, low 8x8
    frequencies against their median): 16 hex digits, compared by Hamming distance. The
    maintained implementation replaces a hand-written copy of the same algorithm (issue 14)."""
    import imagehash

    return str(imagehash.phash(img))


def hamming(a: str, b: str) -> int:
    return bin(int(a, 16) ^ int(b, 16)).count("1")
