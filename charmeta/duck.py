"""DuckDB connections with bounded memory.

DuckDB defaults to 80% of RAM; a pipeline that must stay under 2 GB per process
whatever the dataset size caps it here (spilling to disk beyond the cap), so
exports, checks and the quarantine table cost the same at 1M and 5M rows.
"""

from __future__ import annotations

import os
import tempfile

import duckdb

#: Per-connection memory cap; override with CHARMETA_DUCKDB_MEMORY (e.g. "2GB").
DEFAULT_MEMORY_LIMIT = "768MB"


def connect(path: str = ":memory:", memory_limit: str | None = None) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(path)
    limit = memory_limit or os.environ.get("CHARMETA_DUCKDB_MEMORY", DEFAULT_MEMORY_LIMIT)
    con.execute(f"SET memory_limit = '{limit}'")
    con.execute(f"SET temp_directory = '{os.path.join(tempfile.gettempdir(), 'charmeta-duckdb')}'")
    return con


def sql_string(s: str) -> str:
    """``s`` as a SQL string literal (paths, patterns interpolated into a query)."""
    return "'" + s.replace("'", "''") + "'"


def sql_ident(s: str) -> str:
    """``s`` as a quoted SQL identifier (a column name)."""
    return '"' + s.replace('"', '""') + '"'
