"""Asset checks: conformance (blocking), records lost (blocking), label distributions and
invalid rate (WARN), Great Expectations; and the export's consistency.

Checks are unpartitioned and evaluate every partition of the run they execute
in (Dagster's per-partition checks are still a preview and do not cover
partition-range runs). Failures name the partitions, so a backfill of
thousands of partitions still points at the bad shard.

The five checks of ``validated_records`` are one ``@multi_asset_check``
(``validated_records_checks``): one step per run instead of five, and one read
per partition file for all of them (``charmeta_dagster.check_facts``, memoised by
file identity in the process and on disk, where the worker that built the
partition left it; the drift reference over the other partitions costs nothing).

* ``one_row_per_input`` on ``attribute_predictions`` (a check spec of the
  ``shard_stages`` multi-asset, evaluated by the row guard inside each
  partition's pass: a partition that fails gets no ``validated_records``),
  ``schema_conformance`` and ``no_records_lost`` on ``validated_records`` are
  *blocking*: a broken partition fails its run (and keeps the export from being
  refreshed).
* ``label_distribution`` reports Unknown rate per core attribute, the
  multi-character rate and each attribute's total-variation distance to the
  running dataset, at WARN.
* ``great_expectations_suite`` runs a GX 1.x suite on a bounded, seeded random
  sample of the validated records (up to 2,000 rows of each partition of the
  run, 50,000 at most).
"""

import json
import os
import random
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyarrow as pa
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    MetadataValue,
    asset_check,
    multi_asset_check,
)

from charmeta import duck
from charmeta.contract import ATTRIBUTES, CORE_KEYS, STATUSES, CleanRecord
from charmeta.duck import sql_string
from charmeta.sources import registered_keys
from charmeta_dagster import check_facts as facts
from charmeta_dagster import stages as S
from charmeta_dagster.assets import dataset_export, md_table
from charmeta_dagster.resources import OutputStore

#: WARN when an attribute is Unknown for more than this share of non-invalid records.
MAX_UNKNOWN_RATE = float(os.environ.get("CHARMETA_MAX_UNKNOWN_RATE", "0.98"))
#: WARN when a partition's value distribution is this far (total variation) from the dataset's.
MAX_DRIFT_TVD = float(os.environ.get("CHARMETA_MAX_DRIFT_TVD", "0.35"))
GX_SAMPLE_ROWS = 50_000
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")  # no usage statistics leave the machine


def _keys(context: AssetCheckExecutionContext) -> list[str]:
    return list(context.partition_keys) if context.has_partition_key_range or context.has_partition_key else []


def _row_count_problems(store: S.Store, stage: str, key: str) -> list[str]:
    """Every input row has exactly one output row: counts and the set of positions agree."""
    return S.row_problems(store, stage, key)


def conformance_problems(st: S.Store, key: str, sample: int = 20) -> tuple[list[str], int]:
    """Schema, row count, contract vocabularies (bulk, Arrow compute over the columns the
    contract names), and pydantic on a sample of ``ok`` rows (``facts.CLEAN_SAMPLE``)."""
    path = st.path(S.VALIDATED, key)
    if not os.path.exists(path):
        return [f"{key}: validated output missing"], 0
    problems = _row_count_problems(st, S.VALIDATED, key)
    try:
        f = facts.partition_facts(path)
    except (OSError, pa.ArrowException) as exc:
        return problems + [f"{key}: cannot read validated output: {exc}"], 0
    if f.schema_problem:
        return problems + [f"{key}: {f.schema_problem}"], f.rows
    if f.violations:
        problems.append(f"{key}: {f.violations} rows violate the contract (e.g. {f.first_violation})")
    if f.clean_record_problem and sample:
        problems.append(f"{key}: {f.clean_record_problem}")
    return problems, f.rows


SCHEMA_CONFORMANCE = AssetCheckSpec(
    "schema_conformance",
    asset=S.VALIDATED,
    blocking=True,
    description="Schema conformance per partition: Arrow schema, one row per input, vocabularies, CleanRecord sample.",
)
LABEL_DISTRIBUTION = AssetCheckSpec(
    "label_distribution",
    asset=S.VALIDATED,
    description="Label distributions at WARN: Unknown rate per core attribute, multi-character rate, "
    "total-variation distance of each attribute's values to the running dataset.",
)
GREAT_EXPECTATIONS = AssetCheckSpec(
    "great_expectations_suite",
    asset=S.VALIDATED,
    description="Great Expectations suite on a seeded random sample of the validated records.",
)


def schema_conformance_result(st: S.Store, keys: list[str]) -> AssetCheckResult:
    problems: list[str] = []
    rows = 0
    for k in keys:
        p, n = conformance_problems(st, k)
        problems += p
        rows += n
    return AssetCheckResult(
        check_name=SCHEMA_CONFORMANCE.name,
        asset_key=S.VALIDATED,
        passed=not problems,
        metadata={
            "partitions_checked": len(keys),
            "rows_checked": rows,
            "failing_partitions": len({p.split(":")[0] for p in problems}),
            "problems": MetadataValue.md("\n".join(f"- {p}" for p in problems[:100]) or "none"),
        },
    )


def _each_readable(st: S.Store, keys: list[str], read: Any) -> Iterator[Any]:
    """``read(path)`` of each partition's validated file that exists and can be read
    (missing or unreadable files are reported by schema_conformance)."""
    for k in keys:
        path = st.path(S.VALIDATED, k)
        if os.path.exists(path):
            try:
                value = read(path)
            except (OSError, pa.ArrowException):
                continue
            yield value


def _readable_facts(st: S.Store, keys: list[str]) -> list[facts.PartitionFacts]:
    """Facts of the partitions whose validated file exists and has the contract's schema."""
    return [f for f in _each_readable(st, keys, facts.partition_facts) if not f.schema_problem]


def _distributions(parts: list[facts.PartitionFacts], columns: list[str]) -> dict[str, dict[str, float]]:
    """Share of each value per column over the non-invalid rows of ``parts`` (a null is ``"None"``)."""
    out: dict[str, dict[str, float]] = {}
    for c in columns:
        counts: dict[str, int] = {}
        for f in parts:
            for v, n in f.value_counts.get(c, {}).items():
                counts[v] = counts.get(v, 0) + n
        total = sum(counts.values()) or 1
        out[c] = {v: n / total for v, n in counts.items()}
    return out


def _tvd(a: dict[str, float], b: dict[str, float]) -> float:
    return 0.5 * sum(abs(a.get(k, 0.0) - b.get(k, 0.0)) for k in set(a) | set(b))


def label_distribution_result(st: S.Store, keys: list[str]) -> AssetCheckResult:
    here_parts = _readable_facts(st, keys)
    run = set(keys)
    others = _readable_facts(st, [k for k in registered_keys(st.root) if k not in run])
    metadata: dict[str, Any] = {}
    warnings: list[str] = []
    if not here_parts:
        return AssetCheckResult(
            check_name=LABEL_DISTRIBUTION.name,
            asset_key=S.VALIDATED,
            passed=True,
            severity=AssetCheckSeverity.WARN,
            metadata={"partitions_checked": 0},
        )
    total = sum(f.rows for f in here_parts)
    valid = total - sum(f.status_counts.get("invalid", 0) for f in here_parts)
    multi = sum(f.multi_character for f in here_parts)
    metadata["rows"] = MetadataValue.int(int(total))
    metadata["invalid_rate"] = MetadataValue.float(round(1 - valid / total, 4) if total else 0.0)
    metadata["multi_character_rate"] = MetadataValue.float(round(multi / total, 4) if total else 0.0)
    rows = []
    core = [a.column for a in ATTRIBUTES if a.is_core]
    here_all, others_all = _distributions(here_parts, core), _distributions(others, core)
    for a in ATTRIBUTES:
        if not a.is_core:
            continue
        here = here_all[a.column]
        unknown = here.get("Unknown", 0.0)
        metadata[f"unknown_rate.{a.column}"] = MetadataValue.float(round(unknown, 4))
        drift = _tvd(here, others_all[a.column]) if others else 0.0
        metadata[f"drift_tvd.{a.column}"] = MetadataValue.float(round(drift, 4))
        rows.append(
            {
                "attribute": a.key,
                "unknown_rate": round(unknown, 3),
                "drift_tvd": round(drift, 3),
                "top": ", ".join(f"{k} {v:.0%}" for k, v in sorted(here.items(), key=lambda kv: -kv[1])[:4]),
            }
        )
        if valid and unknown > MAX_UNKNOWN_RATE:
            warnings.append(f"{a.key} is Unknown for {unknown:.0%} of records")
        if others and drift > MAX_DRIFT_TVD:
            warnings.append(f"{a.key} distribution drifted from the dataset (TVD {drift:.2f})")
    metadata["attributes"] = MetadataValue.md(md_table(rows))
    metadata["compared_to_partitions"] = MetadataValue.int(len(others))
    metadata["warnings"] = MetadataValue.md("\n".join(f"- {w}" for w in warnings) or "none")
    return AssetCheckResult(
        check_name=LABEL_DISTRIBUTION.name,
        asset_key=S.VALIDATED,
        passed=not warnings,
        severity=AssetCheckSeverity.WARN,
        metadata=metadata,
    )


def _gx_frame(df):  # noqa: ANN001, ANN202
    """The same values in the dtypes GX's pandas engine handles vectorised: float64 (a float32
    column is checked one Python call per value) and categorical strings (Arrow-backed
    strings are copied by every row filter). 50k rows: 1.1 s -> 0.65 s."""
    from pandas.api.types import is_string_dtype

    df = df.copy()
    for c in df.columns:
        if str(df[c].dtype) == "float32":
            df[c] = df[c].astype("float64")
        elif is_string_dtype(df[c]):  # str columns, or object columns holding only strings (not lists)
            df[c] = df[c].astype("category")
    return df


def preload_great_expectations() -> None:
    """Start importing Great Expectations in a background thread.

    Why: the import costs ~2.5 s of CPU (it loads every expectation, pandas, scipy and altair
    with it) and the GX check is the first to need it, at the end of a run. ``charmeta run``
    calls this while the pool workers are busy, so a run of all its partitions does not end
    with a single-core import. A failed import is left for the check to raise on its own
    import, with its real error. Not a daemon thread: a run that ends before its checks
    (a failed partition) waits for the import to finish instead of exiting in the middle of it."""
    import threading

    def _import() -> None:
        try:
            import great_expectations  # noqa: F401
        except Exception:  # noqa: BLE001 - the check's own import reports it
            pass

    threading.Thread(target=_import, name="gx-preload").start()


def run_gx_suite(df) -> dict[str, Any]:  # noqa: ANN001
    """The Great Expectations 1.x suite on a pandas frame of validated records."""
    import logging

    import great_expectations as gx
    import great_expectations.expectations as gxe
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.expectations.row_conditions import Column

    for name in ("great_expectations", "great_expectations.data_context.types.base"):
        logging.getLogger(name).setLevel(logging.WARNING)
    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    ds = ctx.data_sources.add_pandas("charmeta")
    batch_def = ds.add_dataframe_asset("validated_records").add_batch_definition_whole_dataframe("run")
    suite = gx.ExpectationSuite(name="validated_records")
    suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column="id"))
    suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(column="status", value_set=list(STATUSES)))
    suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column="source_position"))
    for a in ATTRIBUTES:
        if a.is_list:
            continue
        if a.values:
            suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(column=a.column, value_set=list(a.values)))
        suite.add_expectation(
            gxe.ExpectColumnValuesToBeBetween(column=f"{a.column}_confidence", min_value=0.0, max_value=1.0)
        )
    for key in CORE_KEYS:
        col = next(a.column for a in ATTRIBUTES if a.key == key)
        # core attributes are set for every non-invalid record: nulls only where status == invalid
        suite.add_expectation(
            gxe.ExpectColumnValuesToNotBeNull(column=col, row_condition=Column("status") != "invalid")
        )
    ctx.suites.add(suite)
    result = batch_def.get_batch(batch_parameters={"dataframe": _gx_frame(df)}).validate(suite)
    failed = [
        r.expectation_config.type + ":" + str(r.expectation_config.kwargs.get("column"))
        for r in result.results
        if not r.success
    ]
    return {"success": bool(result.success), "evaluated": len(result.results), "failed": failed}


def gx_sample_frame(st: S.Store, keys: list[str]):  # noqa: ANN201 - pandas.DataFrame
    """The run's GX sample: a seeded random subset of each partition (``facts.gx_sample``),
    an equal share per partition, ``GX_SAMPLE_ROWS`` at most."""
    samples = [t for t in _each_readable(st, keys, facts.gx_sample) if t is not None]
    if not samples:
        return None
    share = max(1, GX_SAMPLE_ROWS // len(samples))
    return pa.concat_tables([t.slice(0, share) for t in samples]).unify_dictionaries().to_pandas()


def great_expectations_result(st: S.Store, keys: list[str]) -> AssetCheckResult:
    df = gx_sample_frame(st, keys)
    if df is None:
        return AssetCheckResult(
            check_name=GREAT_EXPECTATIONS.name, asset_key=S.VALIDATED, passed=True, metadata={"rows_validated": 0}
        )
    res = run_gx_suite(df)
    return AssetCheckResult(
        check_name=GREAT_EXPECTATIONS.name,
        asset_key=S.VALIDATED,
        passed=res["success"],
        metadata={
            "rows_validated": len(df),
            "expectations": res["evaluated"],
            "failed_expectations": len(res["failed"]),
            "failed": MetadataValue.md("\n".join(f"- {f}" for f in res["failed"]) or "none"),
        },
    )


def _count_and_sample(jsonl: str, k: int = 500) -> tuple[int, list[bytes]]:
    """Every line counted (newlines counted in 16 MB blocks: a Python loop over 5M lines cost
    ~1 s), and ``k`` lines picked at seeded random byte offsets (the line after each offset)."""
    size = os.path.getsize(jsonl)
    n_lines, last = 0, b"\n"
    with open(jsonl, "rb") as fh:
        while block := fh.read(1 << 24):
            n_lines += block.count(b"\n")
            last = block[-1:]
        if size and last != b"\n":
            n_lines += 1  # a last line without its newline
        rnd = random.Random(7)
        sample = []
        for offset in sorted(rnd.randrange(size) for _ in range(k if size else 0)):
            fh.seek(offset)
            fh.readline()  # the rest of the line the offset falls in
            line = fh.readline()
            if not line:  # the offset was in the last line: take the first
                fh.seek(0)
                line = fh.readline()
            sample.append(line)
    return n_lines, sample


def _duplicate_ids(jsonl: str) -> int:
    con = duck.connect()
    try:
        return int(
            con.execute(
                f"SELECT count(*) - count(DISTINCT id) FROM read_json({sql_string(jsonl)}, "
                "format='newline_delimited', columns={'id': 'VARCHAR'})"
            ).fetchone()[0]
        )
    finally:
        con.close()


def export_problems(root: str) -> tuple[list[str], int, int]:
    """What is wrong with ``<root>/export``: JSONL lines vs the manifest's ok count, duplicate
    ids, a sampled line that is not a CleanRecord. Returns (problems, lines, lines sampled)."""
    mpath = os.path.join(root, "export", "manifest.json")
    jsonl = os.path.join(root, "export", "records.jsonl")
    with open(mpath, encoding="utf-8") as fh:
        manifest = json.load(fh)
    problems = []
    with ThreadPoolExecutor(1) as pool:  # DuckDB counts duplicate ids while this thread reads the lines
        dup = pool.submit(_duplicate_ids, jsonl) if os.path.getsize(jsonl) else None
        n_lines, sample = _count_and_sample(jsonl)
        cleaning = manifest.get("cleaning") or {}
        left_out = int(cleaning.get("duplicates_dropped", 0)) + int(cleaning.get("identity_excluded", 0))
        expected = manifest["status_counts"].get("ok", 0) - left_out
        if n_lines != expected:
            problems.append(
                f"{n_lines} JSONL lines but {manifest['status_counts'].get('ok', 0)} ok records less {left_out} "
                "left out by the cleaning (duplicates, identity safety re-check)"
            )
        if dup is not None and dup.result():
            problems.append(f"{dup.result()} duplicate ids in the export")
    for line in sample:
        try:
            rec = json.loads(line)
            rec.pop("id", None)
            CleanRecord.model_validate(rec)
        except Exception as exc:  # not JSON, or not a CleanRecord
            problems.append(f"sample record fails CleanRecord: {str(exc).splitlines()[0]}")
            break
    return problems, n_lines, len(sample)


@asset_check(
    asset=dataset_export,
    description="The export is consistent: one JSONL line per ok record, ids unique, a sample validates as CleanRecord.",
)
def export_conformance(context: AssetCheckExecutionContext, store: OutputStore) -> AssetCheckResult:
    problems, n_lines, sampled = export_problems(store.store().root)
    return AssetCheckResult(
        passed=not problems,
        metadata={
            "lines": n_lines,
            "sampled": sampled,
            "problems": MetadataValue.md("\n".join(f"- {p}" for p in problems) or "none"),
        },
    )


from charmeta_dagster.checks.reliability import (  # noqa: E402  (records lost, invalid rate)
    INVALID_RATE,
    NO_RECORDS_LOST,
    invalid_rate_result,
    no_records_lost_result,
)

_VALIDATED_CHECKS = {
    SCHEMA_CONFORMANCE.key: schema_conformance_result,
    NO_RECORDS_LOST.key: no_records_lost_result,
    LABEL_DISTRIBUTION.key: label_distribution_result,
    INVALID_RATE.key: invalid_rate_result,
    GREAT_EXPECTATIONS.key: great_expectations_result,
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
    for check_key, result in _VALIDATED_CHECKS.items():
        if check_key in context.selected_asset_check_keys:
            yield result(st, keys)


ALL_CHECKS = [validated_records_checks, export_conformance]
