"""Dataset cleaning in Dagster: ``dedup_clusters``, ``character_profiles`` and
``identity_consistency`` before ``dataset_export`` (thin wrappers of ``charmeta.cleaning``).

Each asset carries its check (severity WARN, evaluated in the asset's step so the
verdict reads the numbers the step just computed): ``duplicate_rate``,
``agreement_distribution`` (WARN when the per-character agreement drops),
``identity_conflicts``. ``dataset_export`` then finds the cleaning state current and only
concatenates; materialized alone (UI), it runs whatever cleaning step is stale itself.
"""

import os
import time
from collections.abc import Iterator
from typing import Any

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    MaterializeResult,
    MetadataValue,
    asset,
)

from charmeta.cleaning import checks as verdicts
from charmeta.cleaning.config import cleaning_enabled, load_policy
from charmeta.sources import registered_keys
from charmeta_dagster.defs.resources import OutputStore

GROUP = "charmeta"  # one group: the global lineage then shows every asset, not collapsed groups
_VALIDATED = "validated_records"


def _keys(root: str) -> list[str]:
    return [k for k in registered_keys(root) if os.path.exists(os.path.join(root, _VALIDATED, k + ".parquet"))]


def _md(d: dict[str, Any]) -> MetadataValue:
    return MetadataValue.md("\n".join(f"- **{k}**: {v}" for k, v in d.items()))


def _disabled(name: str, asset_key: str) -> Iterator[Any]:
    """``CHARMETA_CLEANING=off``: a materialization saying so and a passing check saying why."""
    yield MaterializeResult(metadata={"disabled": MetadataValue.text("CHARMETA_CLEANING=off")})
    yield AssetCheckResult(
        check_name=name, asset_key=asset_key, passed=True, metadata={"skipped": "CHARMETA_CLEANING=off"}
    )


def _check(name: str, asset_key: str, passed: bool, meta: dict[str, Any]) -> AssetCheckResult:
    return AssetCheckResult(
        check_name=name,
        asset_key=asset_key,
        passed=passed,
        severity=AssetCheckSeverity.WARN,
        metadata={
            k: v if isinstance(v, int | float | str) else MetadataValue.json(v)
            for k, v in meta.items()
            if v is not None
        },
    )


@asset(
    group_name=GROUP,
    deps=[_VALIDATED],
    kinds={"parquet", "numpy"},
    check_specs=[
        AssetCheckSpec(
            "duplicate_rate", asset="dedup_clusters", description="WARN above the policy's max duplicate rate."
        )
    ],
    description="Exact (tag set, image sha256) and near (MinHash LSH over tag sets; pHash bands + embedding cosine "
    "for images) duplicate clusters over every partition; cluster_id / duplicate_of per entry.",
)
def dedup_clusters(context: AssetExecutionContext, store: OutputStore) -> Iterator[Any]:
    from charmeta.cleaning import dedup
    from charmeta.cleaning.run import build_parts

    if not cleaning_enabled():
        yield from _disabled("duplicate_rate", "dedup_clusters")
        return
    root = store.store().root
    keys = _keys(root)
    t0 = time.perf_counter()
    parts = build_parts(root, keys)
    stats = dedup.build_clusters(root, keys)
    passed, meta = verdicts.duplicate_rate_verdict(stats)
    yield MaterializeResult(
        metadata={
            "entries": MetadataValue.int(stats["entries"]),
            "duplicates": MetadataValue.int(stats["duplicates"]),
            "duplicate_rate": MetadataValue.float(float(stats["duplicate_rate"])),
            "clusters_multi": MetadataValue.int(stats.get("clusters_multi", 0)),
            "near_links": MetadataValue.int(stats.get("near_links", 0)),
            "parts_built": MetadataValue.int(parts["built"]),
            "seconds": MetadataValue.float(round(time.perf_counter() - t0, 3)),
            "path": MetadataValue.path(dedup.clusters_path(root)),
        }
    )
    yield _check("duplicate_rate", "dedup_clusters", passed, meta)


@asset(
    group_name=GROUP,
    deps=[_VALIDATED],
    kinds={"parquet", "duckdb"},
    check_specs=[
        AssetCheckSpec(
            "agreement_distribution",
            asset="character_profiles",
            description="Per-character agreement distribution; WARN when its mean drops against the previous build.",
        )
    ],
    description="Per named character and attribute: canonical value, support, agreement, value histogram, "
    "consensus (>= min support, >= min agreement). Parquet + the catalog view character_profiles.",
)
def character_profiles(context: AssetExecutionContext, store: OutputStore) -> Iterator[Any]:
    from charmeta.cleaning import profiles
    from charmeta.cleaning.run import build_parts

    if not cleaning_enabled():
        yield from _disabled("agreement_distribution", "character_profiles")
        return
    root = store.store().root
    keys = _keys(root)
    t0 = time.perf_counter()
    build_parts(root, keys)
    stats = profiles.build_profiles(root, keys)
    passed, meta = verdicts.agreement_verdict(root, stats)
    yield MaterializeResult(
        metadata={
            "characters": MetadataValue.int(stats["characters"]),
            "consensus_pairs": MetadataValue.int(stats["consensus_pairs"]),
            "agreement_deciles": MetadataValue.json(stats["agreement_deciles"]),
            "seconds": MetadataValue.float(round(time.perf_counter() - t0, 3)),
            "path": MetadataValue.path(profiles.profiles_path(root)),
        }
    )
    yield _check("agreement_distribution", "character_profiles", passed, meta)


@asset(
    group_name=GROUP,
    deps=[dedup_clusters, character_profiles],
    kinds={"parquet", "markdown"},
    check_specs=[
        AssetCheckSpec(
            "identity_conflicts", asset="identity_consistency", description="WARN above the policy's max conflict rate."
        )
    ],
    description="Identity fills from character consensus (stable traits), identity_conflict flags, the safety "
    "re-check, duplicate drops; per-partition cleaned export lines; the consistency report (Markdown + PNG).",
)
def identity_consistency(context: AssetExecutionContext, store: OutputStore) -> Iterator[Any]:
    from charmeta.cleaning.profiles import profile_stats, read_profiles
    from charmeta.cleaning.report import start_plots, write_report
    from charmeta.cleaning.run import apply

    if not cleaning_enabled():
        yield from _disabled("identity_conflicts", "identity_consistency")
        return
    root = store.store().root
    keys = _keys(root)
    t0 = time.perf_counter()
    plots = start_plots(root)  # drawn beside the apply step
    summary = apply(root, keys, load_policy())
    report = write_report(root, {"apply": summary, "profiles": profile_stats(read_profiles(root))}, plots)
    passed, meta = verdicts.conflict_verdict(summary, verdicts.named_entries(root, keys))
    with open(report, encoding="utf-8") as fh:
        report_md = fh.read()
    yield MaterializeResult(
        metadata={
            "fills": MetadataValue.int(summary["fills"]),
            "fills_by_attribute": MetadataValue.json(summary["fills_by_attribute"]),
            "identity_conflicts": MetadataValue.int(summary["identity_conflicts"]),
            "identity_excluded": MetadataValue.int(summary["identity_excluded"]),
            "duplicates_dropped": MetadataValue.int(summary["duplicates_dropped"]),
            "seconds": MetadataValue.float(round(time.perf_counter() - t0, 3)),
            "report": MetadataValue.path(report),
            "report_md": MetadataValue.md(report_md[:8000]),
        }
    )
    yield _check("identity_conflicts", "identity_consistency", passed, meta)


CLEANING_ASSETS = [dedup_clusters, character_profiles, identity_consistency]
