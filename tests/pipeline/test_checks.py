"""The checks catch what they claim to: dropped rows, out-of-vocabulary values, GX failures."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from charmeta.pipeline import stages as S
from charmeta.pipeline.checks import conformance_problems, run_gx_suite
from charmeta.sources import Source, write_registry


def _build(sample_dir: Path, root: Path) -> list[str]:
    specs = Source(str(sample_dir)).discover()
    write_registry(str(root), specs)
    keys = [s.key for s in specs]
    for stage in S.STAGES:
        S.run_stage(stage, str(root), keys, backend="null", workers=1)
    return keys


def test_conformance_passes_then_catches_dropped_row_and_bad_value(sample_dir: Path, tmp_path: Path) -> None:
    keys = _build(sample_dir, tmp_path)
    store = S.Store(str(tmp_path))
    key = next(k for k in keys if k.startswith("captions"))
    assert conformance_problems(store, key) == ([], 10)
    path = store.path(S.VALIDATED, key)
    table = pq.read_table(path)
    pq.write_table(table.slice(1), path)  # a dropped row
    problems, _ = conformance_problems(store, key)
    assert any("input rows but" in p for p in problems)
    hair = table.column("hair_color")
    bad = pc.if_else(pc.equal(pc.fill_null(hair, ""), "Unknown"), pa.scalar("Chartreuse"), hair)
    pq.write_table(table.set_column(table.schema.get_field_index("hair_color"), "hair_color", bad), path)
    problems, _ = conformance_problems(store, key)
    assert any("violate the contract" in p and "Hair Color" in p for p in problems)


def test_validated_stage_turns_contract_violations_into_invalid_records(sample_dir: Path, tmp_path: Path) -> None:
    keys = _build(sample_dir, tmp_path)
    store = S.Store(str(tmp_path))
    key = keys[0]
    pred = pq.read_table(store.path(S.PREDICTIONS, key))
    age = pc.if_else(
        pc.equal(pc.fill_null(pred.column("age"), ""), "Unknown"), pa.scalar("Ancient"), pred.column("age")
    )
    pq.write_table(pred.set_column(pred.schema.get_field_index("age"), "age", age), store.path(S.PREDICTIONS, key))
    stats = S.process_partition(S.VALIDATED, str(tmp_path), key, backend="null", force=True)
    assert stats["contract_violations"] > 0
    out = pq.read_table(store.path(S.VALIDATED, key))
    assert out.num_rows == pred.num_rows
    bad = out.filter(pc.equal(out.column("status"), "invalid")).column("reason").to_pylist()
    assert any(r and "Age value outside the vocabulary" in r for r in bad)
    assert conformance_problems(store, key)[0] == []


def test_great_expectations_suite_fails_on_out_of_vocabulary_status(sample_dir: Path, tmp_path: Path) -> None:
    keys = _build(sample_dir, tmp_path)
    store = S.Store(str(tmp_path))
    df = pq.read_table(store.path(S.VALIDATED, keys[0])).to_pandas()
    assert run_gx_suite(df)["success"] is True
    df.loc[0, "status"] = "maybe"
    res = run_gx_suite(df)
    assert res["success"] is False and any("status" in f for f in res["failed"])


def test_great_expectations_preload_imports_it_in_the_background() -> None:
    """``charmeta run`` starts the GX import while the pool works; a fresh interpreter shows
    the thread imports it (and the main thread does not wait for it)."""
    import subprocess
    import sys

    code = (
        "import sys, threading; from charmeta.pipeline.checks import preload_great_expectations; "
        "assert 'great_expectations' not in sys.modules; preload_great_expectations(); "
        "t = next(t for t in threading.enumerate() if t.name == 'gx-preload'); t.join(120); "
        "print('great_expectations' in sys.modules and hasattr(sys.modules['great_expectations'], 'get_context'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "True"
