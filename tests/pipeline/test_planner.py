"""The planner: pending partitions from the files alone, balanced run ranges, the input fingerprint."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from charmeta.pipeline import graph as G
from charmeta.pipeline import planner
from charmeta.pipeline.layout import Layout


def _spec(key: str, fmt: str = "jsonl", fp: str = "shardfp") -> SimpleNamespace:
    return SimpleNamespace(key=key, fmt=fmt, fingerprint=fp + key, relpath=key, start=0, stop=100, uri="file:///x")


def _finish(root: Path, spec: SimpleNamespace, fp: str) -> None:
    lay = Layout(str(root))
    path = Path(lay.path(G.VALIDATED, spec.key))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"PAR1")
    lay.commit_marker(G.VALIDATED, spec, fp, 1, 1.0, {})


def test_plan_skips_exactly_the_partitions_built_from_the_same_input(tmp_path: Path) -> None:
    specs = [_spec("a"), _spec("b"), _spec("c", fmt="tar")]
    first = planner.plan(str(tmp_path), specs, "text/1", "none")
    assert first.todo == ["a", "b", "c"] and first.skipped == 0
    _finish(tmp_path, specs[0], first.fingerprints["a"])
    _finish(tmp_path, specs[1], "stale-fingerprint")
    again = planner.plan(str(tmp_path), specs, "text/1", "none")
    assert again.todo == ["b", "c"] and again.skipped == 1
    assert planner.plan(str(tmp_path), specs, "text/1", "none", force=True).todo == ["a", "b", "c"]
    # another backend changes every fingerprint; an embedder changes only the image-capable shard's
    other = planner.plan(str(tmp_path), specs, "null/1", "none")
    assert other.todo == ["a", "b", "c"]
    emb = planner.plan(str(tmp_path), specs, "text/1", '{"backend":"clip"}')
    assert emb.fingerprints["a"] == first.fingerprints["a"] and emb.fingerprints["c"] != first.fingerprints["c"]


def test_inputs_fingerprint_depends_on_every_partition(tmp_path: Path) -> None:
    a = planner.plan(str(tmp_path), [_spec("a"), _spec("b")], "text/1")
    b = planner.plan(str(tmp_path), [_spec("a"), _spec("b", fp="changed")], "text/1")
    assert a.inputs_fingerprint() != b.inputs_fingerprint()
    assert (
        a.inputs_fingerprint() == planner.plan(str(tmp_path), [_spec("a"), _spec("b")], "text/1").inputs_fingerprint()
    )


def test_run_ranges_are_contiguous_balanced_and_skip_finished_keys() -> None:
    order = [f"k{i:02d}" for i in range(25)]
    runs = planner.run_ranges(order, set(order), 10)
    assert [len(r) for r in runs] == [9, 8, 8]  # not 10/10/5
    assert [k for r in runs for k in r] == order
    gaps = planner.run_ranges(order, set(order) - {"k03", "k04"}, 10)
    assert gaps[0] == ["k00", "k01", "k02"]  # a range never spans a key not to run
    assert all(order.index(r[-1]) - order.index(r[0]) == len(r) - 1 for r in gaps)
    assert planner.run_ranges(order, set(), 10) == []
    assert planner.balanced(list("abcdefg"), 3) == [["a", "b", "c"], ["d", "e"], ["f", "g"]]


def test_small_steps_run_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    specs = [_spec("a"), _spec("b")]
    monkeypatch.setattr("charmeta.pipeline.planner.read_registry", lambda root, k: _spec(k))
    assert planner.estimate_rows(G.RAW, str(tmp_path), ["a", "b"]) == 200
    assert planner.small_step(G.RAW, str(tmp_path), ["a", "b"])
    monkeypatch.setenv("CHARMETA_POOL_MIN_ROWS", "150")
    assert not planner.small_step(G.RAW, str(tmp_path), ["a", "b"])
    assert planner.worth_a_pool(str(tmp_path), specs)


def test_heads_are_retrained_exactly_when_a_partition_embedded_images(tmp_path: Path) -> None:
    from charmeta.pipeline import runner

    lay = Layout(str(tmp_path))
    for key, embedded in (("a", 0), ("b", 3)):
        path = Path(lay.path(G.EMBEDDINGS, key))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"PAR1")
        lay.commit_marker(G.EMBEDDINGS, _spec(key), "fp", 1, 1.0, {"embedded": embedded})
    assert not runner.embedded_images(str(tmp_path), ["a"])
    assert runner.embedded_images(str(tmp_path), ["a", "b"])
    assert not runner.embedded_images(str(tmp_path), ["missing"])
