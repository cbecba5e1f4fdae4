"""The code location itself: loads, has the stages/checks/sensors, instance config matches."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from dagster import AssetKey, DagsterInstance, SensorResult, build_sensor_context

from charmeta.pipeline.planner import run_ranges
from charmeta_dagster.instance import DAGSTER_YAML

REPO = Path(__file__).resolve().parents[2]


def _dagster_bin() -> str:
    """The ``dagster`` CLI of this interpreter's environment (a ``--system-site-packages``
    venv has it next to the system interpreter, not its own)."""
    own = Path(sys.executable).parent / "dagster"
    return str(own) if own.exists() else (shutil.which("dagster") or str(own))


def test_asset_graph_checks_and_lineage() -> None:
    from charmeta_dagster.definitions import defs

    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys == {
        "raw_shards",
        "normalized_records",
        "normalized_images",
        "embeddings",
        "attribute_predictions",
        "validated_records",
        "attribute_heads",
        "dedup_clusters",
        "character_profiles",
        "identity_consistency",
        "dataset_export",
    }
    assert graph.get(AssetKey("identity_consistency")).parent_keys == {
        AssetKey("dedup_clusters"),
        AssetKey("character_profiles"),
    }
    assert AssetKey("identity_consistency") in graph.get(AssetKey("dataset_export")).parent_keys
    assert graph.get(AssetKey("validated_records")).parent_keys == {AssetKey("attribute_predictions")}
    assert graph.get(AssetKey("attribute_predictions")).parent_keys == {
        AssetKey("normalized_records"),
        AssetKey("normalized_images"),
        AssetKey("embeddings"),
    }
    assert graph.get(AssetKey("embeddings")).parent_keys == {AssetKey("normalized_images")}
    assert graph.get(AssetKey("attribute_heads")).parent_keys == {AssetKey("embeddings"), AssetKey("normalized_images")}
    checks = {(c.asset_key.to_user_string(), c.name) for c in graph.asset_check_keys}
    assert ("validated_records", "schema_conformance") in checks
    assert ("validated_records", "great_expectations_suite") in checks
    assert ("validated_records", "label_distribution") in checks
    assert ("attribute_predictions", "one_row_per_input") in checks
    assert {
        ("dedup_clusters", "duplicate_rate"),
        ("character_profiles", "agreement_distribution"),
        ("identity_consistency", "identity_conflicts"),
    } <= checks
    policy = graph.get(AssetKey("raw_shards")).backfill_policy
    assert policy is not None and policy.max_partitions_per_run and policy.max_partitions_per_run > 1


def test_dagster_definitions_validate_passes(dagster_home: Path) -> None:
    res = subprocess.run(
        [_dagster_bin(), "definitions", "validate", "-m", "charmeta_dagster.definitions"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert "Validation successful" in res.stderr + res.stdout


def test_repo_dagster_yaml_is_the_embedded_default() -> None:
    text = (REPO / "dagster.yaml").read_text()
    assert text == DAGSTER_YAML
    assert "telemetry:\n  enabled: false" in text and "nux:\n  enabled: false" in text


def test_shard_sensor_registers_partitions_and_requests_ranges(
    dagster_home: Path, sample_dir: Path, tmp_path: Path
) -> None:
    from charmeta_dagster.defs.resources import ImageModelsResource, OutputStore, SourceResource, TextExtractor
    from charmeta_dagster.defs.sensors import shard_sensor

    inst = DagsterInstance.get()
    resources = {
        "source": SourceResource(uri=str(sample_dir), shard_rows=4),
        "store": OutputStore(root=str(tmp_path / "o")),
        "extractor": TextExtractor(),
        "image_models": ImageModelsResource(),
    }
    ctx = build_sensor_context(instance=inst, resources=resources)
    result = shard_sensor(ctx)
    assert isinstance(result, SensorResult)
    added = result.dynamic_partitions_requests[0].partition_keys
    assert len(added) == 14  # 10 text shards + 4 shards of the 15 drawings (4 rows each)
    assert all(r.tags["dagster/asset_partition_range_start"] in added for r in result.run_requests)
    assert (tmp_path / "o" / "_shards.json").exists()
    inst.add_dynamic_partitions("shards", list(added))
    again = shard_sensor(build_sensor_context(instance=inst, resources=resources))
    assert not isinstance(again, SensorResult)  # SkipReason: nothing new


def test_contiguous_chunks_never_span_keys_not_to_run() -> None:
    order = ["a", "b", "c", "d", "e", "f", "g"]
    assert run_ranges(order, {"a", "b", "c", "e", "f", "g"}, 2) == [["a", "b"], ["c"], ["e", "f"], ["g"]]
