"""Quality checks as plain functions: what each asset check of the code location computes.

Each function takes the output root (a ``Layout``) and the partition keys of a run
and returns a ``CheckOutcome`` - passed, severity, metadata - with no Dagster
type in it; ``charmeta_dagster/defs/checks`` wraps each one in an
``AssetCheckResult`` (``Md`` / ``Json`` values become Markdown / JSON metadata).
The CLI, tests and a notebook can run the same checks without a Dagster instance.

Checks evaluate every partition they are given (the run's) and name failing
partitions, so a backfill of thousands of partitions still points at the bad shard.
The partition files are read once for all of them (``check_facts``, memoised by
file identity in the process and on disk, where the worker that built the
partition left it; the drift reference over the other partitions costs nothing).

* ``one_row_per_input`` (blocking; evaluated by the row guard inside each
  partition's pass: a partition that fails gets no ``validated_records``),
  ``schema_conformance`` and ``no_records_lost`` are *blocking*: a broken
  partition fails its run (and keeps the export from being refreshed).
* ``label_distribution`` reports Unknown rate per core attribute, the
  multi-character rate and each attribute's total-variation distance to the
  running dataset, at WARN; ``invalid_rate`` each partition's share of
  ``invalid`` records, at WARN.
* ``great_expectations_suite`` runs a GX 1.x suite on a bounded, seeded random
  sample of the validated records (up to 2,000 rows of each partition of the
  run, 50,000 at most).
* ``export_conformance``: one JSONL line per ok record, unique ids, a sample of
  lines validates as ``CleanRecord``.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa

from charmeta import duck
from charmeta.contract import ATTRIBUTES, CORE_KEYS, STATUSES, CleanRecord
from charmeta.duck import sql_string
from charmeta.pipeline import check_facts as facts
from charmeta.pipeline.graph import PREDICTIONS, VALIDATED
from charmeta.pipeline.layout import MANIFEST, QUALITY, RECORDS, Layout
from charmeta.pipeline.quarantine import partition_report
from charmeta.pipeline.stages import row_problems
from charmeta.quality.drift import (
    REFERENCE_FILE,
    Finding,
    Profile,
    checked_in_profile,
    compare,
    merge,
    pinned_reference,
)
from charmeta.quality.plots import drift_plot
from charmeta.sources import read_registry, registered_keys

#: WARN when a partition has more than this share of ``invalid`` records.
MAX_INVALID_RATE = 0.05
GX_SAMPLE_ROWS = 50_000
#: Formats whose reader yields exactly one row per source row (no blank lines skipped).
_EXACT_FORMATS = ("parquet", "json", "txt")


class Md(str):
    """A metadata value shown as Markdown."""


class FilePath(str):
    """A metadata value that is a file written beside the outputs (a plot, a report)."""


@dataclass(frozen=True)
class Json:
    """A metadata value shown as JSON."""

    value: Any


@dataclass
class CheckOutcome:
    """One check's result: ``severity`` is ``ERROR`` or ``WARN``; ``metadata`` holds ints,
    floats, strings, ``Md`` and ``Json``."""

    name: str
    asset: str
    passed: bool
    severity: str = "ERROR"
    metadata: dict[str, Any] = field(default_factory=dict)


def md_table(rows: list[dict[str, Any]], max_cell: int = 60) -> str:
    """A small Markdown table for metadata previews (cells truncated)."""
    if not rows:
        return "_(no rows)_"
    cols = list(rows[0].keys())

    def cell(v: Any) -> str:
        s = "" if v is None else str(v)
        s = s.replace("|", "\\|").replace("\n", " ")
        return s if len(s) <= max_cell else s[: max_cell - 1] + "…"

    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(cell(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(out)


def _bullets(problems: list[str], limit: int = 100) -> Md:
    return Md("\n".join(f"- {p}" for p in problems[:limit]) or "none")


# ---------------------------------------------------------------------------
# one row per input (attribute_predictions)
# ---------------------------------------------------------------------------
def _row_guard(st: Layout, guard: dict[str, list[str] | None], key: str) -> list[str]:
    found = guard.get(key)
    return found if found is not None else row_problems(st, PREDICTIONS, key)


def one_row_per_input(st: Layout, keys: list[str], guard: dict[str, list[str] | None] | None = None) -> CheckOutcome:
    """The row guard's findings where it ran in the workers (``guard``); the files elsewhere."""
    guard = guard or {}
    problems = [p for k in keys for p in _row_guard(st, guard, k)]
    return CheckOutcome(
        "one_row_per_input",
        PREDICTIONS,
        passed=not problems,
        metadata={"partitions_checked": len(keys), "problems": _bullets(problems)},
    )


# ---------------------------------------------------------------------------
# schema conformance
# ---------------------------------------------------------------------------
def conformance_problems(st: Layout, key: str, sample: int = 20) -> tuple[list[str], int]:
    """Schema, row count, contract vocabularies (bulk, Arrow compute over the columns the
    contract names), and pydantic on a sample of ``ok`` rows (``facts.CLEAN_SAMPLE``)."""
    path = st.path(VALIDATED, key)
    if not os.path.exists(path):
        return [f"{key}: validated output missing"], 0
    problems = row_problems(st, VALIDATED, key)
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


def schema_conformance(st: Layout, keys: list[str]) -> CheckOutcome:
    problems: list[str] = []
    rows = 0
    for k in keys:
        p, n = conformance_problems(st, k)
        problems += p
        rows += n
    return CheckOutcome(
        "schema_conformance",
        VALIDATED,
        passed=not problems,
        metadata={
            "partitions_checked": len(keys),
            "rows_checked": rows,
            "failing_partitions": len({p.split(":")[0] for p in problems}),
            "problems": _bullets(problems),
        },
    )


# ---------------------------------------------------------------------------
# label distribution
# ---------------------------------------------------------------------------
def _each_readable(st: Layout, keys: list[str], read: Any) -> Iterator[Any]:
    """``read(path)`` of each partition's validated file that exists and can be read
    (missing or unreadable files are reported by schema_conformance)."""
    for k in keys:
        path = st.path(VALIDATED, k)
        if os.path.exists(path):
            try:
                value = read(path)
            except (OSError, pa.ArrowException):
                continue
            yield value


def _readable_facts(st: Layout, keys: list[str]) -> list[facts.PartitionFacts]:
    """Facts of the partitions whose validated file exists and has the contract's schema."""
    return [f for f in _each_readable(st, keys, facts.partition_facts) if not f.schema_problem]


def _profile(key: str, f: facts.PartitionFacts) -> Profile:
    """A partition's facts as a drift profile (contract keys, not column names)."""
    by_col = {a.column: a.key for a in ATTRIBUTES if a.is_core}
    return Profile(
        counts={by_col[c]: dict(v) for c, v in f.value_counts.items() if c in by_col},
        partitions=(key,),
        source="partition",
        input_kinds=dict(f.input_kinds),
        single_tag_unknown={by_col[c]: n for c, n in f.single_tag_unknown.items() if c in by_col},
        single_tag_rows=f.single_tag_rows,
    )


def _keyed_facts(st: Layout, keys: list[str]) -> list[tuple[str, facts.PartitionFacts]]:
    """(key, facts) of the partitions among ``keys`` whose validated file is readable and conforms."""
    out = []
    for k in keys:
        path = st.path(VALIDATED, k)
        if not os.path.exists(path):
            continue
        try:
            f = facts.partition_facts(path)
        except (OSError, pa.ArrowException):
            continue
        if not f.schema_problem:
            out.append((k, f))
    return out


def reference_profile(st: Layout, reference: str = "pinned") -> Profile | None:
    """The profile partitions are compared with: ``pinned`` = this dataset's first materialized
    partitions (registry order), fixed in ``<root>/quality/reference_profile.json`` the first time
    a check needs it; any other value names a checked-in profile (``danbooru``, ``prompts``, ...)."""
    if reference and reference != "pinned":
        return checked_in_profile(reference)
    path = os.path.join(st.folder(QUALITY), REFERENCE_FILE)
    if os.path.exists(path):
        return pinned_reference(path, [])
    ordered = registered_keys(st.root)
    return pinned_reference(path, ((k, _profile(k, f)) for k, f in _keyed_facts(st, ordered)))


def label_distribution(st: Layout, keys: list[str], reference: str = "pinned") -> CheckOutcome:
    """Each partition of the run against the reference profile (``charmeta.quality.drift``): WARN
    naming the partition, the attribute and the numbers when a distribution drifts, an Unknown
    rate jumps, a value appears or vanishes, or a contract floor breaks. An always-Unknown
    attribute (Ethnicity on Danbooru captions) is normal when the reference says so."""
    here = _keyed_facts(st, keys)
    if not here:
        return CheckOutcome(
            "label_distribution", VALIDATED, passed=True, severity="WARN", metadata={"partitions_checked": 0}
        )
    ref = reference_profile(st, reference)
    core = [a.key for a in ATTRIBUTES if a.is_core]
    findings: list[Finding] = []
    profiles = {k: _profile(k, f) for k, f in here}
    if ref is not None:  # the reference's own partitions too: a rebuild can change them
        for k, prof in profiles.items():
            findings.extend(compare(k, prof, ref, core))
    run = merge(profiles.values(), "run")
    total = sum(f.rows for _, f in here)
    valid = total - sum(f.status_counts.get("invalid", 0) for _, f in here)
    multi = sum(f.multi_character for _, f in here)
    metadata: dict[str, Any] = {
        "rows": int(total),
        "partitions_checked": len(here),
        "invalid_rate": round(1 - valid / total, 4) if total else 0.0,
        "multi_character_rate": round(multi / total, 4) if total else 0.0,
        "reference": ref.source if ref else "none yet",
        "reference_partitions": Json(list(ref.partitions)[:20]) if ref else Json([]),
        "reference_rows": ref.rows if ref else 0,
    }
    rows = []
    for a in core:
        shares, _ = run.shares(a, known_only=False)
        unknown = run.unknown_rate(a)
        metadata[f"unknown_rate.{a}"] = round(unknown, 4)
        rows.append(
            {
                "attribute": a,
                "unknown_rate": round(unknown, 3),
                "reference_unknown_rate": round(ref.unknown_rate(a), 3) if ref else None,
                "top": ", ".join(f"{k} {v:.0%}" for k, v in sorted(shares.items(), key=lambda kv: -kv[1])[:4]),
            }
        )
    metadata["attributes"] = Md(md_table(rows))
    metadata["warnings"] = Md("\n".join(f"- {f.message}" for f in findings[:50]) or "none")
    metadata["warning_count"] = len(findings)
    if findings:
        metadata["findings"] = Json([asdict(f) for f in findings[:200]])
        plot = drift_plot(st.folder(QUALITY), findings, profiles, ref)
        if plot:
            metadata["plot"] = FilePath(plot)
    return CheckOutcome("label_distribution", VALIDATED, passed=not findings, severity="WARN", metadata=metadata)


# ---------------------------------------------------------------------------
# Great Expectations
# ---------------------------------------------------------------------------
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

    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")  # no usage statistics leave the machine

    def _import() -> None:
        try:
            import great_expectations  # noqa: F401
        except Exception:  # noqa: BLE001 - the check's own import reports it
            pass

    threading.Thread(target=_import, name="gx-preload").start()


def run_gx_suite(df: Any) -> dict[str, Any]:
    """The Great Expectations 1.x suite on a pandas frame of validated records."""
    import logging

    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")  # no usage statistics leave the machine
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
        f"{cfg.type}:{cfg.kwargs.get('column')}"
        for r in result.results
        if not r.success and (cfg := r.expectation_config) is not None
    ]
    return {"success": bool(result.success), "evaluated": len(result.results), "failed": failed}


def gx_sample_frame(st: Layout, keys: list[str]) -> Any:  # a pandas.DataFrame, or None
    """The run's GX sample: a seeded random subset of each partition (``facts.gx_sample``),
    an equal share per partition, ``GX_SAMPLE_ROWS`` at most."""
    samples = [t for t in _each_readable(st, keys, facts.gx_sample) if t is not None]
    if not samples:
        return None
    share = max(1, GX_SAMPLE_ROWS // len(samples))
    return pa.concat_tables([t.slice(0, share) for t in samples]).unify_dictionaries().to_pandas()


def great_expectations(st: Layout, keys: list[str]) -> CheckOutcome:
    df = gx_sample_frame(st, keys)
    if df is None:
        return CheckOutcome("great_expectations_suite", VALIDATED, passed=True, metadata={"rows_validated": 0})
    res = run_gx_suite(df)
    return CheckOutcome(
        "great_expectations_suite",
        VALIDATED,
        passed=res["success"],
        metadata={
            "rows_validated": len(df),
            "expectations": res["evaluated"],
            "failed_expectations": len(res["failed"]),
            "failed": Md("\n".join(f"- {f}" for f in res["failed"]) or "none"),
        },
    )


# ---------------------------------------------------------------------------
# records lost, invalid rate
# ---------------------------------------------------------------------------
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


def no_records_lost(st: Layout, keys: list[str]) -> CheckOutcome:
    problems, report = lost_records_problems(st.root, keys)
    lost = sum(int(p["records_lost"] or 0) for p in report if p["status"] == "done")
    return CheckOutcome(
        "no_records_lost",
        VALIDATED,
        passed=not problems,
        severity="ERROR",
        metadata={
            "partitions_checked": len(keys),
            "input_rows": sum(int(p["input_rows"] or 0) for p in report),
            "output_rows": sum(int(p["output_rows"] or 0) for p in report),
            "records_lost": lost,
            "problems": _bullets(problems),
        },
    )


def invalid_rate(st: Layout, keys: list[str], max_invalid_rate: float = MAX_INVALID_RATE) -> CheckOutcome:
    report = [p for p in partition_report(st.root, keys) if p["status"] == "done"]
    rows = sum(p["output_rows"] for p in report)
    invalid = sum(p["invalid"] for p in report)
    high = [p for p in report if (p["invalid_rate"] or 0) > max_invalid_rate]
    table = [
        {
            "partition": p["partition"],
            "rows": p["output_rows"],
            "invalid": p["invalid"],
            "invalid_rate": p["invalid_rate"],
        }
        for p in sorted(report, key=lambda p: -(p["invalid_rate"] or 0))[:200]
    ]
    return CheckOutcome(
        "invalid_rate",
        VALIDATED,
        passed=not high,
        severity="WARN",
        metadata={
            "partitions_checked": len(report),
            "rows": rows,
            "invalid": invalid,
            "invalid_rate": float(round(invalid / rows, 6) if rows else 0.0),
            "max_partition_invalid_rate": float(max((p["invalid_rate"] or 0.0 for p in report), default=0.0)),
            "partitions_over_threshold": Json(sorted(p["partition"] for p in high)),
            "per_partition": Md(md_table(table)),
        },
    )


# ---------------------------------------------------------------------------
# the export
# ---------------------------------------------------------------------------
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
            ).fetchall()[0][0]
        )
    finally:
        con.close()


def export_problems(root: str) -> tuple[list[str], int, int]:
    """What is wrong with ``<root>/export``: JSONL lines vs the manifest's ok count, duplicate
    ids, a sampled line that is not a CleanRecord. Returns (problems, lines, lines sampled)."""
    layout = Layout(root)
    mpath, jsonl = layout.export_file(MANIFEST), layout.export_file(RECORDS)
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


def export_conformance(st: Layout) -> CheckOutcome:
    problems, n_lines, sampled = export_problems(st.root)
    return CheckOutcome(
        "export_conformance",
        "dataset_export",
        passed=not problems,
        metadata={
            "lines": n_lines,
            "sampled": sampled,
            "problems": Md("\n".join(f"- {p}" for p in problems) or "none"),
        },
    )
