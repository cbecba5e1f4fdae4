"""Image duplicates (issue 14): same file bytes, then perceptual-hash bands + Hamming distance,
then embedding cosine (faiss) where both rows are embedded; captions do not merge pictures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from charmeta.cleaning.run import run_all
from charmeta.engine import Engine

CAPTION = "1girl, solo, outdoors, beach, smile, sky, tree, flower, umbrella"


def _write(root: Path, key: str, images: list[tuple[str, str, list[float] | None]]) -> None:
    n = len(images)
    ids = pa.array([f"img{i}" for i in range(n)])
    texts = pa.array([CAPTION] * n)  # one caption for all: only the pictures tell them apart
    pos = pa.array(np.arange(n, dtype=np.int64))
    rich = Engine.default().process_batch(ids, texts, source_shard=key, positions=pos)
    tables = {
        "validated_records": rich,
        "normalized_records": pa.table({"id": ids, "text": texts, "source_position": pos}),
        "normalized_images": pa.table(
            {
                "id": ids,
                "source_position": pos,
                "status": pa.array(["ok"] * n),
                "sha256": pa.array([s for s, _, _ in images]),
                "phash": pa.array([p for _, p, _ in images]),
            }
        ),
        "embeddings": pa.table(
            {
                "source_position": pos,
                "embedding": pa.array([e for _, _, e in images], pa.list_(pa.float32())),
            }
        ),
    }
    for stage, table in tables.items():
        (root / stage).mkdir(parents=True, exist_ok=True)
        pq.write_table(table, root / stage / f"{key}.parquet")


def test_image_rows_cluster_by_picture_not_by_caption(tmp_path: Path) -> None:
    base = 0x8F3A5C7E91B2D4F6
    e1 = [1.0, 0.0, 0.0, 0.1]
    images = [
        ("a" * 64, f"{base:016x}", e1),  # 0
        ("a" * 64, f"{base:016x}", e1),  # 1: same bytes as 0 -> exact
        ("b" * 64, f"{base ^ 0b101:016x}", [0.99, 0.01, 0.0, 0.1]),  # 2: re-encoded 0 (2 bits, cosine ~1)
        ("c" * 64, f"{base ^ 0b11:016x}", [0.0, 1.0, 0.0, 0.0]),  # 3: close pHash, other content -> kept apart
        ("d" * 64, f"{~base & (2**64 - 1):016x}", e1),  # 4: another picture
        ("e" * 64, f"{base ^ (0xFF << 8):016x}", None),  # 5: 8 bits off, no embedding: pHash decides
    ]
    _write(tmp_path, "p0", images)
    out = run_all(str(tmp_path), ["p0"])
    assert out["clusters"]["image_links"] >= 1
    clusters = pq.read_table(tmp_path / "cleaning" / "dedup_clusters.parquet").to_pylist()
    by = {r["id"]: r["cluster_id"] for r in clusters}
    assert by["img0"] == by["img1"] == by["img2"]
    assert "img3" not in by or by["img3"] != by["img0"]
    assert "img4" not in by  # same caption, different picture: not a duplicate
    assert by.get("img5") == by["img0"]
