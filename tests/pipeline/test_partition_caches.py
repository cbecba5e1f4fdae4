"""Results kept per validated file - the export's parts, the checks' facts - are reused only
while the file is the same, and the export built from parts equals one built from scratch."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from charmeta.pipeline import check_facts, export_parts
from charmeta.pipeline import stages as S
from charmeta.pipeline.chain import _chain_jobs, _chain_worker
from charmeta.pipeline.export import export_dataset
from charmeta.sources import Source, write_registry


def _build(sample_dir: Path, root: Path, backend: str = "text") -> list[str]:
    specs = Source(str(sample_dir)).discover()
    write_registry(str(root), specs)
    keys = [s.key for s in specs]
    for stage in S.STAGES:
        S.run_stage(stage, str(root), keys, backend=backend, workers=1)
    return keys


def _one_pool_task(sample_dir: Path, root: Path) -> tuple[str, dict]:
    """The pool task of the sample's caption shard, run here: (its key, its result)."""
    specs = Source(str(sample_dir)).discover()
    write_registry(str(root), specs)
    key = next(s.key for s in specs if s.key.startswith("captions"))
    (args,) = _chain_jobs(str(root), [key], "text", "none", S.STAGES).values()
    return key, _chain_worker(args)


def _expected_lines(manifest: dict) -> int:
    """The ok records less those the cleaning leaves out (the sample has reposted captions)."""
    c = manifest["cleaning"]
    return int(manifest["status_counts"]["ok"] - c["duplicates_dropped"] - c["identity_excluded"])


def _sha(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def test_export_from_parts_equals_export_from_scratch(sample_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "out"
    keys = _build(sample_dir, root)
    first = export_dataset(str(root), keys)  # no parts yet: the export builds every one
    parts = root / export_parts.PART_DIR
    assert len(list(parts.glob("*.json"))) == len(keys)
    jsonl = root / "export" / "records.jsonl"
    lines = jsonl.read_text().splitlines()
    assert len(lines) == first["exported_records"] == _expected_lines(first) > 0
    assert first["cleaning"]["duplicates_dropped"] > 0  # the cleaning ran: the sample repeats captions
    before = _sha(jsonl)
    # the same export again from the parts (none rebuilt), and from freshly built parts
    stamps = {p.name: p.stat().st_mtime_ns for p in parts.iterdir()}
    again = export_dataset(str(root), keys)
    assert {p.name: p.stat().st_mtime_ns for p in parts.iterdir()} == stamps
    assert _sha(jsonl) == before
    shutil.rmtree(parts)
    rebuilt = export_dataset(str(root), keys)
    assert _sha(jsonl) == before
    for m in (again, rebuilt):
        assert m["status_counts"] == first["status_counts"]
        assert m["attribute_distributions"] == first["attribute_distributions"]


def test_a_rebuilt_or_damaged_partition_gets_a_new_part(sample_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "out"
    keys = _build(sample_dir, root)
    export_dataset(str(root), keys)
    key = next(k for k in keys if k.startswith("captions"))
    store = S.Store(str(root))
    assert export_parts.read_part(str(root), key) is not None
    # the validated file changes (here: one ok record made invalid): its part is stale
    path = store.path(S.VALIDATED, key)
    table = pq.read_table(path)
    ok = pc.equal(table.column("status"), "ok")
    first_ok = pc.index(ok, True).as_py()
    status = table.column("status").to_pylist()
    status[first_ok] = "invalid"
    pq.write_table(table.set_column(table.schema.get_field_index("status"), "status", pa.array(status)), path)
    assert export_parts.read_part(str(root), key) is None
    ok_before = json.loads((root / "export" / "manifest.json").read_text())["status_counts"]["ok"]
    manifest = export_dataset(str(root), keys)
    assert manifest["status_counts"]["ok"] == ok_before - 1
    exported = _expected_lines(manifest)
    assert len((root / "export" / "records.jsonl").read_text().splitlines()) == exported
    # a truncated lines file is not trusted either
    lines_path, _ = export_parts.part_paths(str(root), key)
    with open(lines_path, "r+b") as fh:
        fh.truncate(10)
    assert export_parts.read_part(str(root), key) is None
    export_dataset(str(root), keys)
    assert len((root / "export" / "records.jsonl").read_text().splitlines()) == exported


def test_the_worker_leaves_facts_and_part_for_the_checks_and_the_export(
    sample_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "out"
    key, result = _one_pool_task(sample_dir, root)
    assert S.VALIDATED in result["stages"] and "facts_and_export_part_seconds" in result
    assert export_parts.read_part(str(root), key) is not None
    path = S.Store(str(root)).path(S.VALIDATED, key)
    expected = check_facts.partition_facts(path)
    # another process (empty memo) takes the stored facts without reading the file
    check_facts._FACTS.clear()
    check_facts._SAMPLES.clear()

    def no_read(_path: str) -> None:
        raise AssertionError("facts were read again although the file did not change")

    monkeypatch.setattr(check_facts, "_read_facts", no_read)
    assert check_facts.partition_facts(path) == expected
    assert check_facts.gx_sample(path).num_rows == min(expected.rows, check_facts.GX_ROWS_PER_PARTITION)
    # a rewritten file is read again
    monkeypatch.undo()
    table = pq.read_table(path)
    pq.write_table(table.slice(1), path)
    check_facts._FACTS.clear()
    assert check_facts.partition_facts(path).rows == expected.rows - 1


class _Spec:
    fingerprint = "shard-fp"
    fmt = "jsonl"


def test_text_backend_identity_follows_the_ontology_data(monkeypatch: pytest.MonkeyPatch) -> None:
    """Editing an ontology file changes the predictions' fingerprint: ``charmeta run`` rebuilds them."""
    ex = S.make_engine("text").text_extractor
    assert S.backend_identity("text") == f"text/{ex.name}/{ex.version}"  # known without building the engine
    before = S.partition_fingerprint(S.PREDICTIONS, _Spec(), "text")
    monkeypatch.setattr("charmeta.ontology.data_fingerprint", lambda: "edited")
    assert S.backend_identity("text").endswith("+edited")
    assert S.partition_fingerprint(S.PREDICTIONS, _Spec(), "text") != before
    assert S.partition_fingerprint(S.RAW, _Spec(), "text") == S.partition_fingerprint(S.RAW, _Spec(), "null")


@pytest.mark.parametrize("backend", ["none", "clip", "siglip"])
def test_embedder_spec_without_dagster_matches_the_resource(backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from charmeta.pipeline.image_stages import embedder_spec_of
    from charmeta.settings import Settings
    from charmeta_dagster.defs.resources import resources_for

    monkeypatch.setenv("CHARMETA_IMAGE_MODEL", "/models/tiny")
    monkeypatch.setenv("CHARMETA_IMAGE_DEVICE", "cpu")
    settings = Settings.load({"embedder": backend})
    assert embedder_spec_of(settings) == resources_for(settings)["image_models"].spec()
    if backend != "none":
        assert "/models/tiny" in embedder_spec_of(settings)


def test_a_killed_part_builder_leaves_no_temp_file_behind(sample_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "out"
    keys = _build(sample_dir, root)
    key = keys[0]
    lines_path, marker = export_parts.part_paths(str(root), key)
    Path(lines_path).parent.mkdir(parents=True, exist_ok=True)
    dead = 2**22 + 12345  # above the default pid_max: no such process
    for p in (lines_path, marker):
        Path(f"{p}.tmp-{dead}").write_text("half")
    export_parts.build_part(str(root), key)
    assert not list(Path(lines_path).parent.glob("*.tmp-*"))
    assert export_parts.read_part(str(root), key) is not None


def test_export_conformance_catches_a_damaged_export(sample_dir: Path, tmp_path: Path) -> None:
    from charmeta.pipeline.checks import export_problems

    root = tmp_path / "out"
    keys = _build(sample_dir, root)
    export_dataset(str(root), keys)
    problems, n_lines, sampled = export_problems(str(root))
    assert problems == [] and n_lines > 0 and sampled > 0
    jsonl = root / "export" / "records.jsonl"
    good = jsonl.read_bytes()
    first = good.splitlines(keepends=True)[0]
    jsonl.write_bytes(good + first)  # one record twice
    problems, _, _ = export_problems(str(root))
    assert any("JSONL lines but" in p for p in problems) and any("duplicate ids" in p for p in problems)
    bad = b"".join(line.replace(b'"Gender":"', b'"Gender":"Robot') for line in good.splitlines(keepends=True))
    jsonl.write_bytes(bad)  # every line out of the contract: any sample finds it
    problems, _, _ = export_problems(str(root))
    assert any("fails CleanRecord" in p for p in problems)


def test_a_failing_part_build_does_not_fail_the_partition(
    sample_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(_root: str, _key: str) -> bool:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(export_parts, "ensure_part", disk_full)
    root = tmp_path / "out"
    key, result = _one_pool_task(sample_dir, root)
    assert S.VALIDATED in result["stages"]  # committed; the export builds the part itself later
    monkeypatch.undo()
    assert export_parts.read_part(str(root), key) is None
    export_dataset(str(root), [key])
    assert export_parts.read_part(str(root), key) is not None


def test_the_pool_task_hands_its_normalized_texts_to_the_cleaning_part(
    sample_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker that has just written normalized_records builds the cleaning part from the
    texts it holds (no read back), and that part equals one built from the file."""
    from charmeta.cleaning import parts as cparts

    def no_read(*_args: object) -> None:
        raise AssertionError("normalized_records read back")

    monkeypatch.setattr(cparts, "texts_at", no_read)
    root = tmp_path / "out"
    key, result = _one_pool_task(sample_dir, root)
    assert S.VALIDATED in result["stages"] and cparts.read_part(str(root), key) is not None
    rows_path, prof_path, _ = cparts.part_paths(str(root), key)
    from_stream = pq.read_table(rows_path), pq.read_table(prof_path)
    monkeypatch.undo()
    cparts.build_part(str(root), key)
    assert from_stream[0].equals(pq.read_table(rows_path)) and from_stream[1].equals(pq.read_table(prof_path))
    assert from_stream[0].num_rows > 0 and pc.sum(from_stream[0]["ntok"]).as_py() > 0
