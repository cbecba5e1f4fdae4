"""The layout owns every path under the output root: folders, the guard, commit markers."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from charmeta.pipeline import graph as G
from charmeta.pipeline.layout import Layout


def test_stage_paths_are_inside_the_root(tmp_path: Path) -> None:
    lay = Layout(str(tmp_path))
    assert lay.path(G.VALIDATED, "k-1") == os.path.join(str(tmp_path.resolve()), "validated_records", "k-1.parquet")
    assert lay.part_paths("k") == (str(tmp_path.resolve() / "export_parts" / "k.jsonl"),) + (
        str(tmp_path.resolve() / "export_parts" / "k.json"),
    )
    assert lay.facts_paths("k")[0].endswith(os.path.join("check_facts", "k.json"))
    assert lay.export_file("manifest.json") == str(tmp_path.resolve() / "export" / "manifest.json")


@pytest.mark.parametrize("key", ["../x", "a/b", "", ".hidden", "a..b", "x" * 300, "k\n"])
def test_unsafe_keys_are_refused(tmp_path: Path, key: str) -> None:
    with pytest.raises(ValueError):
        Layout(str(tmp_path)).path(G.RAW, key)


def test_unknown_folders_and_export_files_are_refused(tmp_path: Path) -> None:
    lay = Layout(str(tmp_path))
    with pytest.raises(ValueError, match="unknown stage"):
        lay.path("etc", "k")
    with pytest.raises(ValueError, match="unknown output folder"):
        lay.folder("..")
    with pytest.raises(ValueError, match="unknown export file"):
        lay.export_file("../../passwd")


def test_a_symlinked_stage_folder_cannot_escape(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / G.RAW).symlink_to(outside, target_is_directory=True)
    with pytest.raises(ValueError, match="escapes"):
        Layout(str(root)).path(G.RAW, "k")


def test_of_stage_file_finds_root_stage_and_key_and_guards(tmp_path: Path) -> None:
    lay = Layout(str(tmp_path))
    got, stage, key = Layout.of_stage_file(lay.path(G.VALIDATED, "part-7"))
    assert (got.root, stage, key) == (lay.root, G.VALIDATED, "part-7")
    with pytest.raises(ValueError):
        Layout.of_stage_file(str(tmp_path / "not_a_stage" / "x.parquet"))


def test_commit_marker_is_the_finish_line(tmp_path: Path) -> None:
    lay = Layout(str(tmp_path))
    spec = SimpleNamespace(key="k", relpath="a.jsonl", start=0)
    os.makedirs(os.path.dirname(lay.path(G.RAW, "k")))
    assert lay.stats(G.RAW, "k") is None
    stats = lay.commit_marker(G.RAW, spec, "fp1", rows=10, seconds=2.0, extra={"upstream_invalid": 1})
    assert stats["skipped"] is False and stats["rows_per_second"] == 5.0
    # a marker without its Parquet is not a finished partition
    assert lay.stats(G.RAW, "k") is None and not lay.is_done(G.RAW, "k", "fp1")
    Path(lay.path(G.RAW, "k")).write_bytes(b"PAR1")
    assert lay.is_done(G.RAW, "k", "fp1") and not lay.is_done(G.RAW, "k", "fp2")
    on_disk = json.loads(Path(lay.path(G.RAW, "k", ".json")).read_text())
    assert "skipped" not in on_disk and on_disk["fingerprint"] == "fp1" and on_disk["upstream_invalid"] == 1
    assert lay.skipped_stats(G.RAW, "k")["skipped"] is True
    lay.drop_markers("k")
    assert lay.stats(G.RAW, "k") is None


def test_graph_is_consistent() -> None:
    assert set(G.UPSTREAM) == set(G.STAGES) == set(G.DEPS) == set(G.DESCRIPTIONS) == set(G.STAGE_VERSIONS)
    for stage, up in G.UPSTREAM.items():
        assert up is None or up in G.DEPS[stage]  # the fingerprint's input is part of the drawn lineage
    assert all(G.STAGES.index(d) < G.STAGES.index(s) for s in G.STAGES for d in G.DEPS[s])  # topological order
    jsonl, tar, table = SimpleNamespace(fmt="jsonl"), SimpleNamespace(fmt="tar"), SimpleNamespace(fmt="parquet")
    assert G.effective_embedder(jsonl, "clip") == "none" and G.effective_embedder(tar, "clip") == "clip"
    assert G.effective_embedder(table, "clip") == "none"
    assert G.effective_embedder(SimpleNamespace(fmt="parquet", image_field="picture"), "clip") == "clip"
    # the fingerprint chain: a stage's changes with any upstream stage's version, not a downstream's
    base = G.stage_fingerprint(G.PREDICTIONS, "shard", "text/1")
    assert base != G.stage_fingerprint(G.PREDICTIONS, "shard", "text/2")
    assert G.stage_fingerprint(G.NORMALIZED, "shard", "text/1") == G.stage_fingerprint(G.NORMALIZED, "shard", "x")
