"""Content-addressed embedding cache: (image sha256, model id, revision) -> vector.

Why sqlite: one file, atomic commits, safe for several reader processes and a
writer, no server; vectors are float32 blobs. Re-runs and overlapping datasets
(the same picture scraped twice under different names) skip the model. Text
prompt embeddings live in a second table keyed the same way by prompt sha256,
and the VLM captioner's captions (text, not vectors) in a third, ``image_caption``.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path

import numpy as np

_DDL = """
CREATE TABLE IF NOT EXISTS image_emb (
  sha256 TEXT NOT NULL, model TEXT NOT NULL, revision TEXT NOT NULL,
  dim INTEGER NOT NULL, vec BLOB NOT NULL,
  PRIMARY KEY (sha256, model, revision)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS text_emb (
  sha256 TEXT NOT NULL, model TEXT NOT NULL, revision TEXT NOT NULL,
  dim INTEGER NOT NULL, vec BLOB NOT NULL,
  PRIMARY KEY (sha256, model, revision)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS image_caption (
  sha256 TEXT NOT NULL, model TEXT NOT NULL, revision TEXT NOT NULL,
  caption TEXT NOT NULL,
  PRIMARY KEY (sha256, model, revision)
) WITHOUT ROWID;
"""


class EmbeddingCache:
    """A sqlite-backed map; ``path=None`` keeps it in memory (tests, one-off CLI calls)."""

    def __init__(self, path: str | Path | None = None) -> None:
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path = str(path) if path is not None else ":memory:"
        self._conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL") if path is not None else None
        self._conn.executescript(_DDL)
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @classmethod
    def in_dir(cls, folder: str | Path | None) -> EmbeddingCache:
        return cls(Path(folder) / "embeddings.sqlite" if folder else None)

    def get_many(
        self, keys: Iterable[str], model: str, revision: str, table: str = "image_emb"
    ) -> dict[str, np.ndarray]:
        keys = list(dict.fromkeys(k for k in keys if k))
        out: dict[str, np.ndarray] = {}
        with self._lock:
            for i in range(0, len(keys), 500):
                chunk = keys[i : i + 500]
                q = f"SELECT sha256, vec FROM {table} WHERE model=? AND revision=? AND sha256 IN ({','.join('?' * len(chunk))})"
                for sha, vec in self._conn.execute(q, [model, revision, *chunk]):
                    out[sha] = np.frombuffer(vec, dtype=np.float32).copy()
        self.hits += len(out)
        self.misses += len(keys) - len(out)
        return out

    def put_many(self, items: dict[str, np.ndarray], model: str, revision: str, table: str = "image_emb") -> None:
        rows = [(k, model, revision, int(v.shape[-1]), np.asarray(v, np.float32).tobytes()) for k, v in items.items()]
        with self._lock, self._conn:
            self._conn.executemany(f"INSERT OR REPLACE INTO {table} VALUES (?,?,?,?,?)", rows)

    def get_texts(self, keys: Iterable[str], model: str, revision: str) -> dict[str, str]:
        """Cached captions of these images under (model, revision)."""
        keys = list(dict.fromkeys(k for k in keys if k))
        out: dict[str, str] = {}
        with self._lock:
            for i in range(0, len(keys), 500):
                chunk = keys[i : i + 500]
                q = (
                    "SELECT sha256, caption FROM image_caption WHERE model=? AND revision=? "
                    f"AND sha256 IN ({','.join('?' * len(chunk))})"
                )
                for sha, text in self._conn.execute(q, [model, revision, *chunk]):
                    out[sha] = text
        self.hits += len(out)
        self.misses += len(keys) - len(out)
        return out

    def put_texts(self, items: dict[str, str], model: str, revision: str) -> None:
        rows = [(k, model, revision, str(v)) for k, v in items.items() if k]
        with self._lock, self._conn:
            self._conn.executemany("INSERT OR REPLACE INTO image_caption VALUES (?,?,?,?)", rows)

    def count(self, table: str = "image_emb") -> int:
        with self._lock:
            return int(self._conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])

    def close(self) -> None:
        self._conn.close()
