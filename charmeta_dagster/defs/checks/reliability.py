"""Reliability checks: records lost (ERROR, blocking) and invalid rate per partition (WARN);
run in the ``validated_records_checks`` step (``checks/__init__.py``).

* ``no_records_lost`` compares, per partition of the run, the rows the reader
  produced (``raw_shards``) with the rows that reached ``validated_records``,
  and - where the shard spec knows its exact row count (Parquet / JSON / sidecar
  shards with a row range) - the reader's rows with the source's. Any
  difference is data lost (or duplicated) by a fault and fails at ERROR.
* ``invalid_rate`` reports each partition's share of ``invalid`` records and
  WARNs when one exceeds ``CHARMETA_MAX_INVALID_RATE`` (default 0.05): a shard
  that is mostly rejected usually means a wrong text column or a broken export.
"""

import os
from typing import Any

from dagster import AssetCheckResult, AssetCheckSeverity, AssetCheckSpec, MetadataValue

from charmeta.pipeline.stages import VALIDATED, Store
from charmeta.quarantine import partition_report
from charmeta.sources import read_registry
from charmeta_dagster.defs.assets import md_table

MAX_INVALID_RATE = float(os.environ.get("CHARMETA_MAX_INVALID_RATE", "0.05"))
#: Formats whose reader yields exactly one row per source row (no blank lines skipped).
_EXACT_FORMATS = ("parquet", "json", "txt")


def lost_records_problems(root: str, keys: list[str]) -> tuple[list[str], list[dict[str, Any]]]:
    """Problems (one line per partition that lost or duplicated rows) and the per-partition report."""
    report = partition_report(root, keys)
    problems = []
    for p in report:
        k = p["partition"]
        if p["status"] == "missing":
            problems.append(f"{k}: validated_records output missing")
            continue
        if p["input_rows"] is None:
            problems.append(f"{k}: raw_shards output missing")
        elif p["records_lost"]:
            problems.append(
                f"{k}: {p['input_rows']} input rows but {p['output_rows']} output rows ({p['records_lost']} lost)"
            )
        try:
            spec = read_registry(root, k)
        except Exception:  # noqa: BLE001 - reported by the stages themselves
            continue
        if spec.fmt in _EXACT_FORMATS and spec.stop is not None and p["input_rows"] is not None:
            expected = spec.stop - spec.start
            if p["input_rows"] != expected:
                problems.append(f"{k}: the source has {expected} rows but the reader produced {p['input_rows']}")
    return problems, report


NO_RECORDS_LOST = AssetCheckSpec(
    "no_records_lost",
    asset=VALIDATED,
    blocking=True,
    description=(
        "ERROR when records are lost or duplicated: input rows (raw_shards, and the source's row count where "
        "known) must equal output rows (validated_records) for every partition of the run."
    ),
)
INVALID_RATE = AssetCheckSpec(
    "invalid_rate",
    asset=VALIDATED,
    description=(
        f"Invalid rate per partition at WARN (threshold CHARMETA_MAX_INVALID_RATE, default {MAX_INVALID_RATE})."
    ),
)


def no_records_lost_result(st: Store, keys: list[str]) -> AssetCheckResult:
    problems, report = lost_records_problems(st.root, keys)
    lost = sum(int(p["records_lost"] or 0) for p in report if p["status"] == "done")
    return AssetCheckResult(
        check_name=NO_RECORDS_LOST.name,
        asset_key=VALIDATED,
        passed=not problems,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "partitions_checked": len(keys),
            "input_rows": sum(int(p["input_rows"] or 0) for p in report),
            "output_rows": sum(int(p["output_rows"] or 0) for p in report),
            "records_lost": lost,
            "problems": MetadataValue.md("\n".join(f"- {p}" for p in problems[:100]) or "none"),
        },
    )


def invalid_rate_result(st: Store, keys: list[str]) -> AssetCheckResult:
    report = [p for p in partition_report(st.root, keys) if p["status"] == "done"]
    rows = sum(p["output_rows"] for p in report)
    invalid = sum(p["invalid"] for p in report)
    high = [p for p in report if (p["invalid_rate"] or 0) > MAX_INVALID_RATE]
    table = [
        {
            "partition": p["partition"],
            "rows": p["output_rows"],
            "invalid": p["invalid"],
            "invalid_rate": p["invalid_rate"],
        }
        for p in sorted(report, key=lambda p: -(p["invalid_rate"] or 0))[:200]
    ]
    return AssetCheckResult(
        check_name=INVALID_RATE.name,
        asset_key=VALIDATED,
        passed=not high,
        severity=AssetCheckSeverity.WARN,
        metadata={
            "partitions_checked": len(report),
            "rows": rows,
            "invalid": invalid,
            "invalid_rate": MetadataValue.float(round(invalid / rows, 6) if rows else 0.0),
            "max_partition_invalid_rate": MetadataValue.float(
                max((p["invalid_rate"] or 0.0 for p in report), default=0.0)
            ),
            "partitions_over_threshold": MetadataValue.json(sorted(p["partition"] for p in high)),
            "per_partition": MetadataValue.md(md_table(table)),
        },
    )
