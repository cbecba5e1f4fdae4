"""Character profiles: each named character's attributes aggregated over its entries.

The per-partition parts hold ``character, attribute, value, n`` counts; a profile is
their sum (one DuckDB group-by over a table of characters x attributes x values, a few
hundred thousand rows at 5M entries), so adding shards never re-reads the dataset.
Per character and attribute: the canonical (most frequent) value, ``support`` (entries
carrying a known value), ``agreement`` (canonical's share), the value histogram,
``coverage`` (support / the character's entries), and whether it is a ``consensus``
(support >= ``profiles.min_support``, agreement >= ``profiles.min_agreement``, coverage >=
``profiles.min_coverage``) and a ``strong`` one (the ``conflicts`` thresholds). Coverage:
on 1M synthetic entries, a character with thousands of entries of which 5 carried an
ethnicity word (all agreeing) had a "consensus" that filled the other thousands - a trait
that a fifth of a character's pictures do not show is not its identity.
"""

from __future__ import annotations

import os
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from charmeta import duck
from charmeta.cleaning.config import CleaningPolicy, load_policy
from charmeta.cleaning.parts import part_paths
from charmeta.duck import sql_string

CLEAN_DIR = "cleaning"
PROFILES_FILE = "character_profiles.parquet"


def profiles_path(root: str) -> str:
    return os.path.join(root, CLEAN_DIR, PROFILES_FILE)


def profile_sql(files: list[str], policy: CleaningPolicy) -> str:
    """The profile table's query over the parts' ``.profile.parquet`` files."""
    src = "read_parquet([" + ", ".join(sql_string(f) for f in files) + "])"
    return f"""
        WITH agg AS (SELECT character, attribute, value, sum(n)::BIGINT AS n FROM {src}
                     WHERE attribute <> '(entries)' GROUP BY ALL),
        entries AS (SELECT character, sum(n)::BIGINT AS entries FROM {src}
                    WHERE attribute = '(entries)' GROUP BY ALL),
        ranked AS (
            SELECT *, sum(n) OVER w AS support,
                   row_number() OVER (w ORDER BY n DESC, value) AS rk
            FROM agg WINDOW w AS (PARTITION BY character, attribute)
        ),
        prof AS (
            SELECT character, attribute,
                   any_value(value) FILTER (WHERE rk = 1) AS canonical,
                   max(support)::BIGINT AS support,
                   max(n) FILTER (WHERE rk = 1)::BIGINT AS canonical_count,
                   (max(n) FILTER (WHERE rk = 1) / max(support))::DOUBLE AS agreement,
                   map(list(value ORDER BY rk), list(n ORDER BY rk)) AS histogram
            FROM ranked GROUP BY character, attribute
        )
        SELECT p.character, p.attribute, p.canonical, p.support, p.canonical_count, p.agreement, p.histogram,
               coalesce(e.entries, p.support) AS entries,
               (p.support / coalesce(e.entries, p.support))::DOUBLE AS coverage,
               (p.support >= {policy.min_support} AND p.agreement >= {policy.min_agreement}
                AND p.support >= {policy.min_coverage} * coalesce(e.entries, p.support)) AS consensus,
               (p.support >= {policy.conflict_support} AND p.agreement >= {policy.conflict_agreement}
                AND p.support >= {policy.min_coverage} * coalesce(e.entries, p.support)) AS strong
        FROM prof p LEFT JOIN entries e USING (character)
        ORDER BY p.character, p.attribute
    """


def build_profiles(root: str, keys: list[str], policy: CleaningPolicy | None = None) -> dict[str, Any]:
    """Merge the parts of ``keys`` into ``<root>/cleaning/character_profiles.parquet``; returns stats."""
    policy = policy or load_policy()
    files = [part_paths(root, k)[1] for k in keys if os.path.exists(part_paths(root, k)[1])]
    out = profiles_path(root)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    con = duck.connect()
    try:
        if files:
            table = con.sql(profile_sql(files, policy)).to_arrow_table()
        else:
            table = empty_profiles()
    finally:
        con.close()
    tmp = out + f".tmp-{os.getpid()}"
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, out)
    return profile_stats(table)


def empty_profiles() -> pa.Table:
    return pa.table(
        {
            "character": pa.array([], pa.string()),
            "attribute": pa.array([], pa.string()),
            "canonical": pa.array([], pa.string()),
            "support": pa.array([], pa.int64()),
            "canonical_count": pa.array([], pa.int64()),
            "agreement": pa.array([], pa.float64()),
            "histogram": pa.array([], pa.map_(pa.string(), pa.int64())),
            "entries": pa.array([], pa.int64()),
            "coverage": pa.array([], pa.float64()),
            "consensus": pa.array([], pa.bool_()),
            "strong": pa.array([], pa.bool_()),
        }
    )


def profile_stats(table: pa.Table) -> dict[str, Any]:
    """Counts for metadata and the report: characters, (character, attribute) pairs with a
    consensus, and the agreement distribution (deciles) over pairs with enough support."""
    import numpy as np

    if not table.num_rows:
        return {"characters": 0, "pairs": 0, "consensus_pairs": 0, "agreement_deciles": [], "mean_agreement": None}
    chars = len(set(table.column("character").to_pylist()))
    consensus = np.asarray(table.column("consensus").to_numpy(zero_copy_only=False), dtype=bool)
    agree = table.column("agreement").to_numpy()
    support = table.column("support").to_numpy()
    enough = agree[support >= 3]
    deciles = [round(float(x), 4) for x in np.quantile(enough, np.linspace(0, 1, 11))] if len(enough) else []
    return {
        "characters": chars,
        "pairs": int(table.num_rows),
        "consensus_pairs": int(consensus.sum()),
        "agreement_deciles": deciles,
        "mean_agreement": round(float(enough.mean()), 4) if len(enough) else None,
    }


def read_profiles(root: str) -> pa.Table:
    p = profiles_path(root)
    return pq.read_table(p) if os.path.exists(p) else empty_profiles()
