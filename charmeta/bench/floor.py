"""The DuckDB floor: the least work any tag pipeline must do, as one SQL query.

Read the text column of the Parquet shards, split captions into tags
(``', '`` for ordered tags, ``' '`` for raw Danbooru strings), normalise them
(lower case, ``_`` -> space, unescape parentheses), join the ontology and group
by entry, writing one Parquet row per entry. No resolution rules, no evidence,
no validation: the end-to-end pipeline is reported as a multiple of this.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa

FLOOR_SQL = r"""
COPY (
  WITH src AS (
    SELECT id, text FROM read_parquet($glob)
    WHERE text IS NOT NULL AND length(trim(text)) > 0
  ), tags AS (
    SELECT id, unnest(string_split(text, CASE WHEN contains(text, ',') THEN ',' ELSE ' ' END)) AS raw
    FROM src
  ), norm AS (
    SELECT id, replace(replace(replace(lower(trim(raw)), '_', ' '), '\(', '('), '\)', ')') AS tag
    FROM tags
  )
  SELECT n.id,
         count(*) AS n_tags,
         count(o.attribute) AS n_matched,
         list(o.attribute || '=' || o.value) FILTER (WHERE o.attribute IS NOT NULL) AS attrs
  FROM norm AS n LEFT JOIN onto AS o USING (tag)
  GROUP BY n.id
) TO '{out}' (FORMAT parquet)
"""


@dataclass
class FloorResult:
    rows_in: int
    entries_out: int
    seconds: float
    threads: int

    @property
    def rows_per_s(self) -> float:
        return self.rows_in / self.seconds if self.seconds > 0 else float("inf")


def run_floor(
    shard_glob: str, ontology: list[tuple[str, str, str]], out: Path, threads: int | None = None
) -> FloorResult:
    """Run the floor query over ``shard_glob`` into ``out`` (Parquet); time only the query."""
    con = duckdb.connect()
    try:
        if threads:
            con.execute(f"SET threads = {int(threads)}")
        used = int(con.execute("SELECT current_setting('threads')").fetchall()[0][0])
        onto = pa.table(
            {k: [r[i] for r in ontology] for i, k in enumerate(("tag", "attribute", "value"))},
            schema=pa.schema([("tag", pa.string()), ("attribute", pa.string()), ("value", pa.string())]),
        )
        con.register("onto_arrow", onto)
        con.execute("CREATE TABLE onto AS SELECT * FROM onto_arrow")
        rows_in = int(con.execute("SELECT count(*) FROM read_parquet($glob)", {"glob": shard_glob}).fetchall()[0][0])
        out.parent.mkdir(parents=True, exist_ok=True)
        sql = FLOOR_SQL.replace("{out}", str(out).replace("'", "''"))
        t0 = time.perf_counter()
        con.execute(sql, {"glob": shard_glob})
        seconds = time.perf_counter() - t0
        entries = int(con.execute("SELECT count(*) FROM read_parquet($p)", {"p": str(out)}).fetchall()[0][0])
    finally:
        con.close()
    return FloorResult(rows_in, entries, seconds, used)
