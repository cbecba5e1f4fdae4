"""A raw Danbooru post's separate `rating` field reaches the safety rule."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from charmeta.engine import Engine
from charmeta.parsing import with_rating
from charmeta.sources import Source, iter_shard


def test_with_rating_folds_known_values_only() -> None:
    assert with_rating("1girl child", "e") == "1girl child rating:explicit"
    assert with_rating("1girl, child", "q") == "1girl, child, questionable"
    assert with_rating("1girl, child", "weird") == "1girl, child"
    assert with_rating(None, "e") is None


def test_rating_column_excludes_minors_in_explicit_posts(tmp_path: Path) -> None:
    rows = [
        {"id": "1", "tag_string": "1girl child solo", "rating": "e"},
        {"id": "2", "tag_string": "1girl child solo", "rating": "g"},
        {"id": "3", "text": "1girl, child, solo", "rating": "q"},
    ]
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    pq.write_table(
        pa.table({"id": ["4", "5"], "tag_string": ["1girl aged_down", "1girl aged_down"], "rating": ["e", "s"]}),
        tmp_path / "b.parquet",
    )
    engine = Engine.default()
    status = {}
    for spec in Source(str(tmp_path)).discover():
        for batch in iter_shard(spec):
            for rid, text in zip(batch.column("id").to_pylist(), batch.column("text").to_pylist()):
                status[rid] = engine.extract_text(text).status
    assert status == {"1": "excluded", "2": "ok", "3": "excluded", "4": "excluded", "5": "ok"}
