"""The main job end to end: `charmeta run` through Dagster, export, checks, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from launch import run_cmd

from charmeta.cli import main
from charmeta.contract import SCHEMA_VERSION, CleanRecord

REPO = Path(__file__).resolve().parents[2]


def _run(source: Path | str, out: Path, *extra: str) -> int:
    return main(["run", "--source", str(source), "--output", str(out), "--extractor", "null", *extra])


def _export_lines(out: Path) -> list[dict]:
    return [json.loads(l) for l in (out / "export" / "records.jsonl").read_text().splitlines()]


def test_run_on_sample_exports_a_valid_dataset_and_rerun_skips(
    dagster_home: Path, sample_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "out"
    assert _run(sample_dir, out, "--shard-rows", "4") == 0
    first = capsys.readouterr().out
    assert "14 shards (14 processed, 0 skipped)" in first  # 10 text shards + 4 of the 15 drawings
    manifest = json.loads((out / "export" / "manifest.json").read_text())
    assert manifest["schema_version"] == SCHEMA_VERSION
    assert manifest["records"] == 59  # one output row per input row (44 text, 15 drawings), bad ones included
    assert manifest["status_counts"]["invalid"] == 5
    assert manifest["json_schema"]["x-schema-version"] == SCHEMA_VERSION
    assert set(manifest["attribute_distributions"]) >= {"Age", "Hair Color", "Dress"}
    assert manifest["code_version"]["package"] and manifest["ontology_version"]
    lines = _export_lines(out)
    # the null extractor makes the sample's one repeated caption two ok entries; the rest are drawings of the
    # same sprite with another expression (samples/drawings), which the cleaning step's dedup drops too
    cleaning = manifest["cleaning"]
    assert cleaning["duplicates_dropped"] == 5 and cleaning["identity_excluded"] == 0
    # the summary says why the export holds fewer records than the ok count
    assert "  cleaning: 5 duplicates not exported, 0 moved to excluded" in first, first
    assert (
        len(lines) == manifest["exported_records"] == manifest["status_counts"]["ok"] - cleaning["duplicates_dropped"]
    )
    for rec in lines:  # every exported line is a valid clean record (+ id)
        assert rec.pop("id")
        CleanRecord.model_validate(rec)
    # every stage wrote one Parquet per partition, atomically (no temp files left)
    for stage in ("raw_shards", "normalized_records", "embeddings", "attribute_predictions", "validated_records"):
        files = sorted((out / stage).glob("*.parquet"))
        assert len(files) == 14
        assert sum(pq.ParquetFile(f).metadata.num_rows for f in files) == 59
    assert not list(out.rglob("*.tmp-*"))
    con = duckdb.connect(str(out / "export" / "catalog.duckdb"), read_only=True)
    assert con.execute("SELECT count(*) FROM validated_records").fetchone()[0] == 59
    assert con.execute("SELECT count(*) FROM export_records").fetchone()[0] == len(lines)
    con.close()
    # Dagster recorded materializations and check results for the partitions
    from dagster import AssetKey, DagsterInstance

    inst = DagsterInstance.get()
    mat = inst.get_latest_materialization_event(AssetKey("validated_records"))
    assert mat is not None and mat.asset_materialization.metadata["rows"].value > 0
    assert len(inst.get_dynamic_partitions("shards")) == 14

    # re-run: nothing to do, same export
    assert _run(sample_dir, out, "--shard-rows", "4") == 0
    second = capsys.readouterr().out
    assert "(0 processed, 14 skipped)" in second
    assert _export_lines(out) == [dict(r, id=r.get("id")) for r in _export_lines(out)]
    assert len(_export_lines(out)) == len(lines)


def test_new_shard_is_processed_incrementally(
    dagster_home: Path, sample_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "out"
    assert _run(sample_dir, out) == 0
    capsys.readouterr()
    (sample_dir / "late.jsonl").write_text(json.dumps({"id": "late-1", "text": "1girl, solo, red hair"}) + "\n")
    assert _run(sample_dir, out) == 0
    assert "(1 processed, 7 skipped)" in capsys.readouterr().out
    assert "late-1" in {r["id"] for r in _export_lines(out)}


def _make_big(path: Path, n: int) -> None:
    """``n`` distinct captions (one own tag each: Jaccard 3/5 between any two, not near duplicates),
    so the cleaning exports every one."""
    with path.open("w") as fh:
        for i in range(n):
            fh.write(json.dumps({"id": f"r{i:06d}", "text": f"1girl, solo, tag{i}, long hair"}) + "\n")


def test_kill_midway_and_rerun_completes_without_duplicates(dagster_home: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    _make_big(src / "big.jsonl", 24_000)
    out = tmp_path / "out"
    cmd = run_cmd(src, out, "--shard-rows", "2000", "--partitions-per-run", "2")
    env = dict(os.environ, DAGSTER_HOME=str(dagster_home))
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    deadline = time.monotonic() + 240
    seen = ""
    while time.monotonic() < deadline:  # wait for the first finished run, then kill -9
        line = proc.stdout.readline()
        seen += line
        if "] run " in line:
            break
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert "] run " in seen, seen[-2000:]
    done_before = len(list((out / "validated_records").glob("*.json")))
    assert 0 < done_before < 12
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"({12 - done_before} processed, {done_before} skipped)" in rerun.stdout
    ids = [r["id"] for r in _export_lines(out)]
    assert len(ids) == len(set(ids)) == 24_000
    assert not list(out.rglob("*.tmp-*"))
    from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

    inst = DagsterInstance.get()
    assert not inst.get_runs(filters=RunsFilter(statuses=[DagsterRunStatus.STARTED]))  # the killed run is marked failed


def test_cli_module_entry_point_exists() -> None:
    assert (REPO / "charmeta" / "cli.py").exists()
