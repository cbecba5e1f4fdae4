"""The UI with thousands of partitions (issue #4): the asset's partition view and the
partition-status GraphQL query still answer, with the right counts, in a real browser.

3,000 shard partitions are registered and 2,500 of them get a ``validated_records``
materialization event (reported straight to the instance: what is under test is
the webserver with that many partitions, not the pipeline, which other tests run).
Marked slow (CI runs it via ``make test`` with CI=true).
"""

from __future__ import annotations

import re
import time
from html import unescape
from pathlib import Path

import pytest
from uihelp import browser as _browser
from uihelp import dump_dom, gql

from charmeta_dagster.commands.ui import start_ui, wait_ready

pytestmark = pytest.mark.slow

N_PARTITIONS, N_MATERIALIZED = 3_000, 2_500

STATUS = """
query {
  assetNodeOrError(assetKey: {path: ["validated_records"]}) {
    ... on AssetNode {
      partitionKeys
      assetPartitionStatuses { ... on DefaultPartitionStatuses { materializedPartitions failedPartitions } }
    }
  }
}"""


def _text(dom: str) -> str:
    dom = re.sub(r"<script.*?</script>|<style.*?</style>", " ", dom, flags=re.S)
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", dom)))


def test_partition_view_with_thousands_of_partitions(tmp_path: Path, sample_dir: Path) -> None:
    browser = _browser()
    home, out = tmp_path / "home", tmp_path / "out"
    out.mkdir()
    ui = start_ui(
        str(home), str(out), source=str(sample_dir), env={"CHARMETA_EXTRACTOR": "null", "CHARMETA_SENSORS": "off"}
    )
    try:
        wait_ready(ui)
        from dagster import AssetKey, AssetMaterialization, DagsterInstance

        keys = [f"part-{i:05d}.parquet-000000-r000000000" for i in range(N_PARTITIONS)]
        with DagsterInstance.from_config(str(ui.home)) as inst:
            inst.add_dynamic_partitions("shards", keys)
            for k in keys[:N_MATERIALIZED]:
                inst.report_runless_asset_event(AssetMaterialization(AssetKey("validated_records"), partition=k))
        t0 = time.perf_counter()
        node = gql(ui.url, STATUS)["assetNodeOrError"]
        seconds = time.perf_counter() - t0
        assert len(node["partitionKeys"]) == N_PARTITIONS
        assert len(node["assetPartitionStatuses"]["materializedPartitions"]) == N_MATERIALIZED
        print(f"partition status over GraphQL: {seconds:.2f}s for {N_PARTITIONS} partitions")

        t0 = time.perf_counter()
        text = _text(dump_dom(browser, ui.url + "/assets/validated_records?view=partitions", tmp_path))
        print(f"partitions view rendered in {time.perf_counter() - t0:.1f}s (headless Chromium, incl. start-up)")
        assert f"{N_PARTITIONS:,} Partitions" in text, text[:1000]
        assert f"Materialized ({N_MATERIALIZED})" in text, text[:1000]
        assert f"Missing ({N_PARTITIONS - N_MATERIALIZED})" in text, text[:1000]
        assert keys[0] in text
    finally:
        ui.stop()
