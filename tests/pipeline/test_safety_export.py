"""End to end: nothing naming a minor together with sexual content reaches ``records.jsonl``.

``charmeta run`` (real Dagster instance, the text extractor) on a shard cut from the
safety corpus: every unsafe entry (label from the contract's rule, see
``tests/data/make_safety_corpus.py``) must be ``excluded`` in the validated records and
absent from the clean export; the allowed single-character controls are exported.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from charmeta.cli import main

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.mark.slow
def test_unsafe_entries_never_reach_the_export(dagster_home: Path, tmp_path: Path) -> None:
    rows = [json.loads(line) for line in (DATA / "safety_corpus.jsonl").read_text(encoding="utf-8").splitlines()]
    # every syntax, every label: a stride through the corpus (it is ordered by syntax)
    shard = rows[::23]
    src = tmp_path / "src"
    src.mkdir()
    with open(src / "safety.jsonl", "w", encoding="utf-8") as f:
        for r in shard:
            f.write(json.dumps({"id": r["id"], "text": r["text"]}) + "\n")
    unsafe = {r["id"] for r in shard if r["label"] == "excluded"}
    assert len(unsafe) > 100 and len(shard) - len(unsafe) > 100
    assert len({r["syntax"] for r in shard}) >= 20

    out = tmp_path / "out"
    assert main(["run", "--source", str(src), "--output", str(out), "--shard-rows", "200"]) == 0

    exported = [json.loads(line) for line in (out / "export" / "records.jsonl").read_text().splitlines()]
    exported_ids = {r["id"] for r in exported}
    assert not exported_ids & unsafe, sorted(exported_ids & unsafe)[:5]
    validated = [r for f in sorted((out / "validated_records").glob("*.parquet")) for r in pq.read_table(f).to_pylist()]
    assert len(validated) == len(shard)  # one record per input row
    status = {r["id"]: r["status"] for r in validated}
    assert all(status[i] == "excluded" for i in unsafe)
    # the allowed controls that are single-character and valid are really exported, unless the
    # cleaning left them out: a near duplicate of an exported entry (the corpus is templated), or
    # moved INTO excluded by the identity safety re-check - never dropped for nothing
    allowed_ok = {r["id"] for r in shard if r["label"] == "allowed" and status[r["id"]] == "ok"}
    clusters = pq.read_table(out / "cleaning" / "dedup_clusters.parquet").to_pylist()
    dup_of = {r["id"]: r["duplicate_of"] for r in clusters if r["duplicate_of"]}
    identity = [r for f in (out / "cleaning" / "identity").glob("*.parquet") for r in pq.read_table(f).to_pylist()]
    moved = {r["id"] for r in identity if r["action"] == "identity_excluded"}
    left_out = allowed_ok - exported_ids
    assert all(i in moved or dup_of.get(i) in exported_ids for i in left_out), sorted(left_out)[:5]
    assert len(allowed_ok & exported_ids) > 50 and len(left_out) < len(allowed_ok) // 10
