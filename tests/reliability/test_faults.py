"""Faults: poison records, transient and persistent shard failures, kill -9 mid-partition,
lost rows, determinism. Each asserts the outcome and that no record is lost."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from chaos_lib import env_with_path, lost, no_tmp_left, quarantine, records, run_pipeline, write_jsonl
from launch import run_charmeta, run_cmd

REPO = Path(__file__).resolve().parents[2]


def _lines(n: int, prefix: str = "r", poison_every: int = 0) -> list[dict]:
    """``n`` distinct captions (Jaccard 1/2 between any two: the cleaning keeps them all)."""
    return [
        {
            "id": f"{prefix}{i:05d}",
            "text": ("POISON, " if poison_every and i % poison_every == 0 else "") + f"1girl, solo, {prefix}tag{i}",
        }
        for i in range(n)
    ]


def _cli(
    src: Path, out: Path, home: Path, extractor: str, *extra: str, env: dict | None = None, timeout: int = 300
) -> subprocess.CompletedProcess:
    e = env_with_path(
        DAGSTER_HOME=str(home),
        CHARMETA_RETRY_DELAY="0.2",
        CHARMETA_RETRY_MAX="2",
        CHARMETA_SENSORS="off",
        **(env or {}),
    )
    return run_charmeta(src, out, *extra, extractor=extractor, env=e, timeout=timeout)


def _export_ids(out: Path) -> list[str]:
    return [json.loads(l)["id"] for l in (out / "export" / "records.jsonl").read_text().splitlines()]


def test_poison_record_falls_back_per_record(tmp_path: Path, chaos) -> None:  # noqa: ANN001
    """The backend raises on every batch and on poison records: the shard still completes."""
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    write_jsonl(src / "a.jsonl", _lines(50, poison_every=10))
    manifest = run_pipeline(src, out, backend="chaos_faults:poison")
    rows = records(out)
    assert len(rows) == manifest["records"] == 50
    poisoned = [r for r in rows if r["status"] == "invalid"]
    assert [r["source_position"] for r in poisoned] == [0, 10, 20, 30, 40]
    assert all("extractor chaos-poison failed: RuntimeError: poison record" in r["reason"] for r in poisoned)
    assert sum(r["status"] != "invalid" for r in rows) == 45
    assert len(quarantine(out)) == 5
    chaos.record(
        "extractor raises on batch + 5 poison records",
        "45 ok, 5 invalid (extractor failed: poison record)",
        lost(manifest, 50),
    )


def test_retry_policy_and_run_retries_are_configured() -> None:
    from dagster import Backoff, Jitter

    from charmeta_dagster.defs.assets import PARTITIONED_ASSETS
    from charmeta_dagster.instance import DAGSTER_YAML

    for a in PARTITIONED_ASSETS:
        pol = a.op.retry_policy
        assert pol is not None and pol.max_retries >= 1, a.key
        assert pol.backoff == Backoff.EXPONENTIAL and pol.jitter == Jitter.PLUS_MINUS
    assert "run_retries:\n  enabled: true\n  max_retries: 2" in DAGSTER_YAML
    assert (REPO / "dagster.yaml").read_text() == DAGSTER_YAML


def test_one_failing_partition_does_not_stop_the_others_of_its_step(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    from charmeta.pipeline import stages as S
    from charmeta.sources import Source, write_registry

    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    for name in ("a", "bad", "c"):
        write_jsonl(src / f"{name}.jsonl", _lines(20, prefix=name))
    specs = Source(str(src)).discover()
    write_registry(str(out), specs)
    keys = [s.key for s in specs]
    for st in (S.RAW, S.NORMALIZED, S.NORMALIZED_IMAGES, S.EMBEDDINGS):
        S.run_stage(st, str(out), keys, workers=1)
    monkeypatch.setenv("CHAOS_FAIL_SHARD", "bad.jsonl")
    with pytest.raises(S.PartitionsFailed) as ei:
        S.run_stage(S.PREDICTIONS, str(out), keys, backend="chaos_faults:failing_shard", workers=1)
    assert list(ei.value.errors) == [k for k in keys if k.startswith("bad")]
    assert "simulated persistent failure" in str(ei.value)
    done = [k for k in keys if (out / "attribute_predictions" / f"{k}.json").exists()]
    assert sorted(done) == sorted(k for k in keys if not k.startswith("bad"))


def test_transient_and_persistent_shard_failures_through_dagster(tmp_path: Path, chaos) -> None:  # noqa: ANN001
    """a: fails once (retried with backoff, then fine); bad: keeps failing (its run is FAILED with the
    error, the others finish and are exported); after the fault is gone a re-run completes it."""
    src, out, home, marks = tmp_path / "src", tmp_path / "out", tmp_path / "home", tmp_path / "marks"
    src.mkdir()
    marks.mkdir()
    for name in ("a", "bad", "c"):
        write_jsonl(src / f"{name}.jsonl", _lines(30, prefix=name))
    env = {"CHAOS_FAIL_SHARD": "bad.jsonl", "CHAOS_FLAKY_SHARD": "a.jsonl", "CHAOS_MARKS": str(marks)}
    res = _cli(src, out, home, "chaos_faults:failing_shard_or_flaky", env=env)
    assert res.returncode == 1, res.stderr[-3000:]
    assert "failed shard: bad.jsonl" in res.stderr
    ids = _export_ids(out)
    assert len(ids) == len(set(ids)) == 60 and not any(i.startswith("bad") for i in ids)
    # Dagster: the transient fault was retried; the persistent one is a failed run naming the shard + error
    os.environ["DAGSTER_HOME"] = str(home)
    from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter

    with DagsterInstance.from_config(str(home)) as inst:
        retried = inst.get_records_for_run  # noqa: F841 - API presence
        ups = [e for r in inst.get_runs() for e in inst.all_logs(r.run_id, of_type=DagsterEventType.STEP_UP_FOR_RETRY)]
        assert ups, "no step retry recorded"
        failed = inst.get_runs(filters=RunsFilter(statuses=[DagsterRunStatus.FAILURE]))
        bad_key = next(p.name[: -len(".json")] for p in (out / "_shards").glob("bad*.json"))
        single = [
            r
            for r in failed
            if r.tags.get("dagster/asset_partition_range_start") == bad_key
            and r.tags.get("dagster/asset_partition_range_end") == bad_key
        ]
        assert single, [r.tags for r in failed]
        errs = [e for e in inst.all_logs(single[-1].run_id, of_type=DagsterEventType.STEP_FAILURE)]
        assert any("simulated persistent failure" in str(e.dagster_event.event_specific_data.error) for e in errs)
    m = json.loads((out / "export" / "manifest.json").read_text())
    assert m["partitions_missing"] == 1 and m["records_lost"] == 0
    # the fault is fixed: a re-run completes only the failed shard
    res2 = _cli(src, out, home, "chaos_faults:failing_shard_or_flaky", env={**env, "CHAOS_FAIL_SHARD": ""})
    assert res2.returncode == 0, res2.stderr[-3000:]
    assert "(1 processed, 2 skipped)" in res2.stdout
    ids = _export_ids(out)
    assert len(ids) == len(set(ids)) == 90
    m = json.loads((out / "export" / "manifest.json").read_text())
    chaos.record("transient shard failure (once)", "retried with backoff (STEP_UP_FOR_RETRY), completed", 0)
    chaos.record(
        "shard that keeps failing",
        "its run FAILED with the error; other shards exported; re-run completes",
        90 - m["records"],
    )


@pytest.mark.slow
def test_kill_9_mid_partition_then_rerun(tmp_path: Path, chaos) -> None:  # noqa: ANN001
    src, out, home = tmp_path / "src", tmp_path / "out", tmp_path / "home"
    src.mkdir()
    n = 2400
    write_jsonl(src / "big.jsonl", _lines(n))
    cmd = run_cmd(src, out, "--shard-rows", "600", "--partitions-per-run", "1", extractor="chaos_faults:slow")
    env = env_with_path(DAGSTER_HOME=str(home), CHAOS_SLEEP="0.004")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    pred = out / "attribute_predictions"
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline:  # kill while a prediction partition is being written
            if pred.exists() and any(".tmp-" in p.name for p in pred.iterdir()) and len(list(pred.glob("*.json"))) >= 1:
                break
            time.sleep(0.05)
        else:
            pytest.fail("no partition in flight within 240 s")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    # nothing partial is visible: every stage file present is complete and committed
    # (``export`` and ``cleaning`` are the export job's dataset-level outputs, not stage files)
    for stage_dir in out.iterdir():
        if not stage_dir.is_dir() or stage_dir.name.startswith(("_", ".")) or stage_dir.name in ("export", "cleaning"):
            continue
        for f in stage_dir.glob("*.parquet"):
            # a cleaning part is <key>.rows.parquet + <key>.profile.parquet under one <key>.json
            base = f.name.removesuffix(".parquet").removesuffix(".rows").removesuffix(".profile")
            marker = f.with_name(base + ".json")
            assert marker.exists(), f"{f} visible without commit marker"
            if not f.name.endswith(".profile.parquet"):
                assert pq.ParquetFile(f).metadata.num_rows == json.loads(marker.read_text())["rows"]
    in_flight = [p for p in pred.iterdir() if ".tmp-" in p.name]
    assert in_flight  # the killed writer's temp file, never renamed into place
    done_before = len(list((out / "validated_records").glob("*.json")))
    assert done_before < 4
    res = subprocess.run(cmd, env=dict(env, CHAOS_SLEEP="0"), capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    ids = _export_ids(out)
    assert len(ids) == len(set(ids)) == n
    assert no_tmp_left(out)
    m = json.loads((out / "export" / "manifest.json").read_text())
    assert m["records"] == n and m["records_lost"] == 0
    chaos.record(
        "kill -9 mid-partition, then re-run",
        f"no partial file visible; re-run did {4 - done_before} shards; {n} records, each once",
        n - len(ids),
    )


def test_lost_rows_fire_the_error_checks(tmp_path: Path, chaos) -> None:  # noqa: ANN001
    from charmeta.pipeline import stages as S
    from charmeta.pipeline.checks import lost_records_problems

    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    write_jsonl(src / "a.jsonl", _lines(40))
    manifest = run_pipeline(src, out, backend="chaos_faults:dropping")
    key = manifest["partitions_report"][0]["partition"]
    problems, report = lost_records_problems(str(out), [key])
    assert report[0]["records_lost"] == 1 and manifest["records_lost"] == 1
    assert problems and "40 input rows but 39 output rows (1 lost)" in problems[0]
    assert S.row_problems(S.Store(str(out)), S.PREDICTIONS, key)  # the blocking one_row_per_input check
    chaos.record(
        "backend silently drops a row", "no_records_lost ERROR + one_row_per_input fail; manifest records_lost=1", 0
    )


def test_lost_rows_block_validated_through_dagster(tmp_path: Path, chaos) -> None:  # noqa: ANN001
    """The one-pass build guards validated_records like the blocking check did between steps: a
    partition whose predictions lost rows is not validated, one_row_per_input fails (ERROR) and
    its run fails without retries; the other partition of the run is validated and exported."""
    src, out, home = tmp_path / "src", tmp_path / "out", tmp_path / "home"
    src.mkdir()
    write_jsonl(src / "a.jsonl", _lines(30, prefix="a"))
    write_jsonl(src / "bad.jsonl", _lines(30, prefix="bad"))
    res = _cli(src, out, home, "chaos_faults:dropping_shard", env={"CHAOS_DROP_SHARD": "bad.jsonl"})
    assert res.returncode == 1, res.stderr[-3000:]
    assert "failed shard: bad.jsonl" in res.stderr
    validated = {p.stem.split("-")[0] for p in (out / "validated_records").glob("*.parquet")}
    predicted = {p.stem.split("-")[0] for p in (out / "attribute_predictions").glob("*.parquet")}
    assert validated == {"a.jsonl"} and predicted == {"a.jsonl", "bad.jsonl"}
    assert _export_ids(out) == [f"a{i:05d}" for i in range(30)]
    from dagster import AssetCheckKey, AssetKey, DagsterEventType, DagsterInstance

    check = AssetCheckKey(AssetKey("attribute_predictions"), "one_row_per_input")
    with DagsterInstance.from_config(str(home)) as inst:
        record = inst.event_log_storage.get_latest_asset_check_execution_by_key([check])[check]
        evaluation = record.event.dagster_event.event_specific_data
        assert evaluation.passed is False and "30 input rows but 29 output rows" in str(evaluation.metadata)
        bad_key = next(p.stem for p in (out / "_shards").glob("bad*.json"))
        assert not inst.get_materialized_partitions(AssetKey("validated_records")) & {bad_key}
        assert inst.get_materialized_partitions(AssetKey("validated_records"))
        assert not [
            e for r in inst.get_runs() for e in inst.all_logs(r.run_id, of_type=DagsterEventType.STEP_UP_FOR_RETRY)
        ]
    chaos.record(
        "backend drops rows in one shard (Dagster run)",
        "one_row_per_input fails; that shard not validated, run FAILED; the other exported",
        0,
    )


def _digest(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if (
            p.is_file()
            and (p.suffix == ".parquet" or p.name in ("records.jsonl", "manifest.json"))
            and not rel.startswith(("_", "."))
        ):
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.mark.slow
def test_outputs_are_byte_identical_across_runs(tmp_path: Path, chaos) -> None:  # noqa: ANN001
    """Same input + code + config -> byte-identical stage Parquet, quarantine, JSONL export and manifest,
    whatever the hash seed or worker count."""
    src = tmp_path / "samples"
    import shutil

    shutil.copytree(REPO / "samples", src, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    write_jsonl(src / "bad.jsonl", [{"text": None}, b"{broken", {"text": "1girl, red hair, POISON"}])
    digests, manifests = [], []
    for i, (seed, workers) in enumerate((("1", "1"), ("2", "2"))):
        out = tmp_path / "out"
        if out.exists():
            shutil.rmtree(out)
        res = _cli(
            src,
            out,
            tmp_path / f"home{i}",
            "text",
            "--shard-rows",
            "4",
            "--workers",
            workers,
            env={"PYTHONHASHSEED": seed, "SOURCE_DATE_EPOCH": "1700000000", "CHARMETA_POOL_MIN_ROWS": "0"},
        )
        assert res.returncode == 0, res.stderr[-3000:]
        digests.append(_digest(out))
        manifests.append(json.loads((out / "export" / "manifest.json").read_text()))
    assert digests[0].keys() == digests[1].keys() and len(digests[0]) > 40
    diff = [k for k in digests[0] if digests[0][k] != digests[1][k]]
    assert not diff, (diff, {k: (v, manifests[1].get(k)) for k, v in manifests[0].items() if v != manifests[1].get(k)})
    chaos.record("same input twice (hash seed 1/2, workers 1/2)", f"{len(digests[0])} files byte-identical", 0)
