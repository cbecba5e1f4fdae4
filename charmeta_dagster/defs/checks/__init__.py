"""Asset checks: each one a core function (``charmeta.pipeline.checks``) plus a thin wrapper.

Checks are unpartitioned and evaluate every partition of the run they execute
in (Dagster's per-partition checks are still a preview and do not cover
partition-range runs). The five checks of ``validated_records`` are one
``@multi_asset_check`` (``validated_records_checks``): one step per run instead
of five, and one read per partition file for all of them (see the core module).
``one_row_per_input`` is a check spec of the ``shard_stages`` multi-asset
(``defs/assets``): the row guard evaluates it inside each partition's pass.
"""

from collections.abc import Callable, Iterator
from typing import Any

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    MetadataValue,
    asset_check,
    multi_asset_check,
)

from charmeta.pipeline import checks as core
from charmeta.pipeline.graph import VALIDATED
from charmeta.pipeline.layout import Layout
from charmeta_dagster.defs.resources import OutputStore
from charmeta_dagster.settings import code_location_settings

SCHEMA_CONFORMANCE = AssetCheckSpec(
    "schema_conformance",
    asset=VALIDATED,
    blocking=True,
    description="Schema conformance per partition: Arrow schema, one row per input, vocabularies, CleanRecord sample.",
)
NO_RECORDS_LOST = AssetCheckSpec(
    "no_records_lost",
    asset=VALIDATED,
    blocking=True,
    description=(
        "ERROR when records are lost or duplicated: input rows (raw_shards, and the source's row count where "
        "known) must equal output rows (validated_records) for every partition of the run."
    ),
)
LABEL_DISTRIBUTION = AssetCheckSpec(
    "label_distribution",
    asset=VALIDATED,
    description="Label distributions at WARN: Unknown rate per core attribute, multi-character rate, "
    "total-variation distance of each attribute's values to the running dataset.",
)
INVALID_RATE = AssetCheckSpec(
    "invalid_rate",
    asset=VALIDATED,
    description=(
        f"Invalid rate per partition at WARN (threshold CHARMETA_MAX_INVALID_RATE, default {core.MAX_INVALID_RATE})."
    ),
)
GREAT_EXPECTATIONS = AssetCheckSpec(
    "great_expectations_suite",
    asset=VALIDATED,
    description="Great Expectations suite on a seeded random sample of the validated records.",
)


def _metadata_value(v: Any) -> Any:
    if isinstance(v, core.Md):
        return MetadataValue.md(str(v))
    if isinstance(v, core.Json):
        return MetadataValue.json(v.value)
    if isinstance(v, core.FilePath):
        return MetadataValue.path(str(v))
    return v


def to_result(outcome: core.CheckOutcome) -> AssetCheckResult:
    """The Dagster form of a core check outcome (Markdown / JSON metadata typed as such)."""
    return AssetCheckResult(
        check_name=outcome.name,
        asset_key=outcome.asset,
        passed=outcome.passed,
        severity=AssetCheckSeverity.WARN if outcome.severity == "WARN" else AssetCheckSeverity.ERROR,
        metadata={k: _metadata_value(v) for k, v in outcome.metadata.items()},
    )


def _keys(context: AssetCheckExecutionContext) -> list[str]:
    return list(context.partition_keys) if context.has_partition_key_range or context.has_partition_key else []


def _label_distribution(st: Layout, keys: list[str]) -> core.CheckOutcome:
    return core.label_distribution(st, keys, code_location_settings().quality_reference)


def _invalid_rate(st: Layout, keys: list[str]) -> core.CheckOutcome:
    return core.invalid_rate(st, keys, code_location_settings().max_invalid_rate)


_VALIDATED_CHECKS: dict[Any, Callable[[Layout, list[str]], core.CheckOutcome]] = {
    SCHEMA_CONFORMANCE.key: core.schema_conformance,
    NO_RECORDS_LOST.key: core.no_records_lost,
    LABEL_DISTRIBUTION.key: _label_distribution,
    INVALID_RATE.key: _invalid_rate,
    GREAT_EXPECTATIONS.key: core.great_expectations,
}


@multi_asset_check(
    name="validated_records_checks",
    can_subset=True,
    specs=[SCHEMA_CONFORMANCE, NO_RECORDS_LOST, LABEL_DISTRIBUTION, INVALID_RATE, GREAT_EXPECTATIONS],
)
def validated_records_checks(context: AssetCheckExecutionContext, store: OutputStore) -> Iterator[AssetCheckResult]:
    """Every selected check of validated_records over the run's partitions, in one step."""
    st = store.store()
    keys = _keys(context)
    for check_key, check in _VALIDATED_CHECKS.items():
        if check_key in context.selected_asset_check_keys:
            yield to_result(check(st, keys))


@asset_check(
    asset="dataset_export",
    description="The export is consistent: one JSONL line per ok record, ids unique, a sample validates as CleanRecord.",
)
def export_conformance(context: AssetCheckExecutionContext, store: OutputStore) -> AssetCheckResult:
    outcome = core.export_conformance(store.store())
    result = to_result(outcome)
    return AssetCheckResult(passed=result.passed, metadata=result.metadata)
