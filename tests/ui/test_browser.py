"""The product in a real browser: webserver + daemon, a partition backfill over
GraphQL, then the asset graph and a check page rendered by headless Chromium.

Marked slow (CI runs it via `make test` with CI=true). Locally it skips when
Chromium is missing; with CI=true a missing browser fails the test.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from uihelp import STAGES, dump_dom, gql
from uihelp import browser as _browser

from charmeta.sources import Source, write_registry
from charmeta_dagster.commands.ui import start_ui, wait_ready

pytestmark = pytest.mark.slow

LAUNCH = """
mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on UnauthorizedError { message }
  }
}"""
STATUS = """
query($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { status numPartitions }
    ... on PythonError { message }
  }
}"""
RUNS = """
query($id: String!) {
  runsOrError(filter: {tags: [{key: "dagster/backfill", value: $id}]}) {
    ... on Runs { results { runId status } }
  }
}"""


def test_backfill_over_graphql_then_asset_graph_and_check_page_render(tmp_path: Path, sample_dir: Path) -> None:
    browser = _browser()
    home, out = tmp_path / "home", tmp_path / "out"
    # register the shards the way the sensor does (sensors off: the test drives the backfill)
    specs = Source(str(sample_dir), shard_rows=4).discover()
    write_registry(str(out), specs)
    keys = [s.key for s in specs]
    env = {
        "CHARMETA_EXTRACTOR": "null",
        "CHARMETA_SENSORS": "off",
        "CHARMETA_SHARD_ROWS": "4",
        "CHARMETA_PARTITIONS_PER_RUN": "5",
        "CHARMETA_WORKERS": "1",
    }
    ui = start_ui(str(home), str(out), source=str(sample_dir), env=env)
    try:
        wait_ready(ui)
        from dagster import DagsterInstance

        with DagsterInstance.from_config(str(ui.home)) as inst:
            inst.add_dynamic_partitions("shards", keys)
        launched = gql(
            ui.url,
            LAUNCH,
            {
                "params": {
                    "partitionNames": keys,
                    "fromFailure": False,
                    "assetSelection": [{"path": [s]} for s in STAGES],
                }
            },
        )["launchPartitionBackfill"]
        assert launched["__typename"] == "LaunchBackfillSuccess", launched
        backfill_id = launched["backfillId"]
        deadline, status = time.monotonic() + 420, None
        while time.monotonic() < deadline:
            status = gql(ui.url, STATUS, {"id": backfill_id})["partitionBackfillOrError"]
            if status.get("status") not in (None, "REQUESTED"):
                break
            time.sleep(3)
        assert status and status["status"] in ("COMPLETED", "COMPLETED_SUCCESS"), status
        runs = gql(ui.url, RUNS, {"id": backfill_id})["runsOrError"]["results"]
        expected_runs = -(-len(keys) // 5)  # the sample's partitions in runs of 5 (CHARMETA_PARTITIONS_PER_RUN)
        assert len(runs) == expected_runs and all(r["status"] == "SUCCESS" for r in runs), runs
        assert len(list((out / "validated_records").glob("*.parquet"))) == len(keys)

        graph = dump_dom(browser, ui.url + "/asset-groups", tmp_path)
        for name in STAGES:
            assert name in graph, f"{name} not rendered in the asset graph"
        checks = dump_dom(browser, ui.url + "/assets/validated_records?view=checks", tmp_path)
        assert "schema_conformance" in checks
        assert "great_expectations_suite" in checks
        assert "label_distribution" in checks
    finally:
        ui.stop()
    assert ui.webserver.poll() is not None and ui.daemon.poll() is not None
