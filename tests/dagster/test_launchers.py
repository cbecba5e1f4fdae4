"""A backfill launched from the UI and ``charmeta run`` over the same source produce the same dataset.

Both call the same runtime (planner, one-pass chain, checks, ``runner.export``
with its manifest stamp), so every file under the two output roots must match:
Parquet, export lines, export parts and the DuckDB catalog's views byte for byte
or view for view, commit markers and manifests field for field except timings,
file identities (inode / mtime), creation time and the output root itself.

The UI path is the real one: a webserver and a daemon on their own instance,
partitions registered as the shard sensor registers them, the backfill launched
with the ``launchPartitionBackfill`` GraphQL mutation the launchpad sends, the
export with ``launchRun`` (the "Materialize" button), and the daemon executing both.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from pathlib import Path
from typing import Any

import duckdb
import pytest

from charmeta.cli import main
from charmeta.pipeline import graph as G
from charmeta.pipeline import runner
from charmeta.sources import Source
from charmeta_dagster.commands.ui import start_ui, wait_ready

LAUNCH_BACKFILL = """
mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
  }
}"""
BACKFILL_STATUS = """
query($id: String!) {
  partitionBackfillOrError(backfillId: $id) { __typename ... on PartitionBackfill { status } }
}"""
LAUNCH_RUN = """
mutation($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
  }
}"""
RUN_STATUS = """
query($id: ID!) { runOrError(runId: $id) { __typename ... on Run { status } } }"""


def gql(url: str, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    req = urllib.request.Request(
        url + "/graphql",
        data=json.dumps({"query": query, "variables": variables}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=60) as r:
        body = json.load(r)
    assert "errors" not in body, body
    return body["data"]


#: Fields that are timings, file identities or creation times: equal only by chance. ``digest``
#: (a partition's cleaned lines) and ``fingerprint`` (the cleaning state) hash file identities too.
VOLATILE = {
    "seconds",
    "rows_per_second",
    "identity",
    "validated",
    "created_at",
    "facts_and_export_part_seconds",
    "digest",
    "fingerprint",
}


def _files(root: Path) -> set[str]:
    return {
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file()
        and ".dagster_home" not in p.parts
        and ".tmp-" not in p.name
        and p.relative_to(root).parts[0] != "logs"  # the launching command's own log, not an output
    }


def _clean(obj: Any, root: str) -> Any:
    if isinstance(obj, dict):
        return {k: _clean(v, root) for k, v in obj.items() if k not in VOLATILE}
    if isinstance(obj, list):
        return [_clean(v, root) for v in obj]
    return obj.replace(root, "<ROOT>") if isinstance(obj, str) else obj


def _views(path: Path, root: str) -> list[tuple[str, str]]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        rows = con.execute("SELECT view_name, sql FROM duckdb_views() WHERE NOT internal ORDER BY 1").fetchall()
    finally:
        con.close()
    return [(name, sql.replace(root, "<ROOT>")) for name, sql in rows]


def assert_same_dataset(a: Path, b: Path) -> int:
    """Every file of two output roots equal (see the module docstring); returns how many."""
    fa, fb = _files(a), _files(b)
    assert fa == fb, f"only in charmeta run: {sorted(fa - fb)[:10]}; only in the UI run: {sorted(fb - fa)[:10]}"
    for rel in sorted(fa):
        pa_, pb = a / rel, b / rel
        if pa_.read_bytes() == pb.read_bytes():
            continue
        if rel.endswith(".json"):
            ja, jb = json.loads(pa_.read_text()), json.loads(pb.read_text())
            assert _clean(ja, str(a)) == _clean(jb, str(b)), rel
        elif rel.endswith(".duckdb"):
            assert _views(pa_, str(a)) == _views(pb, str(b)), rel
        else:
            raise AssertionError(f"{rel} differs between charmeta run and the UI backfill")
    return len(fa)


def _wait(url: str, query: str, variables: dict[str, Any], field: str, done: set[str], timeout: float) -> str:
    deadline, status = time.monotonic() + timeout, ""
    while time.monotonic() < deadline:
        status = gql(url, query, variables)[field].get("status") or ""
        if status in done:
            return status
        time.sleep(2)
    raise AssertionError(f"{field} still {status!r} after {timeout}s")


@pytest.mark.slow
def test_ui_backfill_and_charmeta_run_write_the_same_files_and_manifest(
    tmp_path: Path, sample_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = {"CHARMETA_SHARD_ROWS": "4", "CHARMETA_WORKERS": "1", "CHARMETA_SENSORS": "off"}
    for k, v in settings.items():
        monkeypatch.setenv(k, v)
    cli_out, ui_out = tmp_path / "cli", tmp_path / "ui"
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "cli_home"))
    assert main(["run", "--source", str(sample_dir), "--output", str(cli_out)]) == 0
    monkeypatch.delenv("DAGSTER_HOME")

    # the UI's instance: partitions registered as the shard sensor registers them
    specs = runner.discover(str(ui_out), Source(str(sample_dir), shard_rows=4))
    keys = [s.key for s in specs]
    ui = start_ui(str(ui_out / ".dagster_home"), str(ui_out), source=str(sample_dir), env=settings)
    try:
        wait_ready(ui)
        from dagster import DagsterInstance

        with DagsterInstance.from_config(ui.home) as inst:
            inst.add_dynamic_partitions("shards", keys)
        launched = gql(
            ui.url,
            LAUNCH_BACKFILL,
            {
                "params": {
                    "partitionNames": keys,
                    "fromFailure": False,
                    "assetSelection": [{"path": [s]} for s in G.STAGES],
                }
            },
        )["launchPartitionBackfill"]
        assert launched["__typename"] == "LaunchBackfillSuccess", launched
        status = _wait(
            ui.url,
            BACKFILL_STATUS,
            {"id": launched["backfillId"]},
            "partitionBackfillOrError",
            {"COMPLETED", "COMPLETED_SUCCESS", "FAILED", "COMPLETED_FAILED", "CANCELED"},
            480,
        )
        assert status in ("COMPLETED", "COMPLETED_SUCCESS"), status
        run = gql(
            ui.url,
            LAUNCH_RUN,
            {
                "params": {
                    "selector": {
                        "repositoryLocationName": "charmeta_dagster.definitions",
                        "repositoryName": "__repository__",
                        "jobName": "export_job",
                    },
                    "runConfigData": {},
                }
            },
        )["launchRun"]
        assert run["__typename"] == "LaunchRunSuccess", run
        status = _wait(
            ui.url, RUN_STATUS, {"id": run["run"]["runId"]}, "runOrError", {"SUCCESS", "FAILURE", "CANCELED"}, 300
        )
        assert status == "SUCCESS", status
    finally:
        ui.stop()

    n = assert_same_dataset(cli_out, ui_out)
    assert n > 60  # six stages x partitions, markers, parts, facts, export
    manifest = json.loads((ui_out / "export" / "manifest.json").read_text())
    assert manifest["inputs_fingerprint"] and manifest["records"] == 59  # 44 text + 15 drawings
    assert os.path.exists(ui_out / "export" / "records.jsonl")


def test_the_comparison_can_fail(tmp_path: Path) -> None:
    """The file comparison above catches a changed byte, a changed count, a missing file; it
    ignores timings and the root's own path."""
    a, b = tmp_path / "a", tmp_path / "b"
    for root in (a, b):
        (root / "raw_shards").mkdir(parents=True)
        (root / "raw_shards" / "k.json").write_text(
            json.dumps({"rows": 3, "seconds": os.urandom(1)[0], "source": str(root)})
        )
        (root / "raw_shards" / "k.parquet").write_bytes(b"PAR1 same")
    assert assert_same_dataset(a, b) == 2
    (b / "raw_shards" / "k.parquet").write_bytes(b"PAR1 other")
    with pytest.raises(AssertionError, match="differs"):
        assert_same_dataset(a, b)
    (b / "raw_shards" / "k.parquet").write_bytes(b"PAR1 same")
    (b / "raw_shards" / "k.json").write_text(json.dumps({"rows": 4, "seconds": 1, "source": str(b)}))
    with pytest.raises(AssertionError):
        assert_same_dataset(a, b)
    (b / "raw_shards" / "k.json").unlink()
    with pytest.raises(AssertionError, match="only in"):
        assert_same_dataset(a, b)
