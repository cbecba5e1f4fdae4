"""The cleaning rules on the Dagster-free core (issue 14): partitions written as the stages
write them (the engine's rich records + the normalized texts), then ``charmeta.cleaning``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import datasketch
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from charmeta.cleaning import parts as cparts
from charmeta.cleaning.config import CleaningPolicyError, load_policy, parse_policy
from charmeta.cleaning.run import export_sources, run_all
from charmeta.cleaning.signatures import band_keys, minhash, token_hashes
from charmeta.engine import Engine

CHARS = {  # name, series, hair tag, eye tag -> expected colors
    "kaenbyou rin": ("touhou", "red hair", "red eyes", "Red", "Red"),
    "chen": ("touhou", "brown hair", "brown eyes", "Brown", "Brown"),
    "kazami yuuka": ("touhou", "green hair", "red eyes", "Green", "Red"),
}
SCENES = [
    "outdoors",
    "indoors",
    "night",
    "beach",
    "forest",
    "classroom",
    "city",
    "sky",
    "tree",
    "flower",
    "smile",
    "blush",
    "sitting",
    "standing",
    "rain",
    "snow",
    "sunset",
    "window",
    "bed",
    "chair",
]


def _rows(seed: int, prefix: str) -> list[tuple[str, str]]:
    rng = np.random.default_rng(seed)
    rows = []
    for name, (series, hair, eyes, _, _) in CHARS.items():
        for e in range(6):
            tags = ["1girl", "solo", name, series, hair, eyes]
            if e % 3 == 0:
                tags.remove(hair if e % 2 == 0 else eyes)
            tags += list(rng.choice(SCENES, 6, replace=False))
            rows.append((f"{prefix}{name[:4]}-{e}", ", ".join(tags)))
    base = "1girl, solo, outdoors, beach, smile, sky, tree, flower, umbrella, signature"
    rows.append((f"{prefix}dup-a", base))
    rows.append((f"{prefix}dup-b", base.upper().replace(" ", "_").replace(",_", ", ")))  # case + underscores
    rows.append((f"{prefix}dup-c", base + ", cloud"))  # one tag more
    rows.append((f"{prefix}mis", "1girl, solo, chen, touhou, blonde hair, brown eyes, night"))  # conflict
    return rows


def _write_partition(root: Path, key: str, rows: list[tuple[str, str]]) -> None:
    ids = pa.array([r[0] for r in rows])
    texts = pa.array([r[1] for r in rows])
    pos = pa.array(np.arange(len(rows), dtype=np.int64))
    rich = Engine.default().process_batch(ids, texts, source_shard=key, positions=pos)
    for stage, table in (
        ("validated_records", rich),
        ("normalized_records", pa.table({"id": ids, "text": texts, "source_position": pos})),
    ):
        (root / stage).mkdir(parents=True, exist_ok=True)
        pq.write_table(table, root / stage / f"{key}.parquet")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    _write_partition(tmp_path, "p0", _rows(0, "a-"))
    return tmp_path


def _lines(root: Path, keys: list[str], state: dict) -> list[dict]:
    from charmeta.pipeline.export_parts import current_parts, part_paths

    out = []
    metas = current_parts(str(root), keys)
    for path, _, _ in export_sources(metas, state, lambda key: part_paths(str(root), key)[0]):
        out += [json.loads(x) for x in Path(path).read_text().splitlines()]
    return out


def _state(root: Path) -> dict:
    return json.loads((root / "cleaning" / "state.json").read_text())


def test_fills_dedup_conflict_on_the_core(root: Path) -> None:
    run_all(str(root), ["p0"])
    lines = {r["id"]: r for r in _lines(root, ["p0"], _state(root))}
    for name, (_, _, _, hair, eyes) in CHARS.items():
        for e in range(6):
            rec = lines[f"a-{name[:4]}-{e}"]
            assert (rec["Hair Color"], rec["Eye Color"]) == (hair, eyes)
    # exact (case / underscores) and near (one tag more) duplicates: one kept
    assert sum(i in lines for i in ("a-dup-a", "a-dup-b", "a-dup-c")) == 1
    # the mislabel keeps its own value (chen's Brown consensus is not strong: 5 of 6 = 0.83 < 0.9)
    assert lines["a-mis"]["Hair Color"] == "Blonde"


def test_conflict_needs_a_strong_consensus_and_is_never_overwritten(root: Path, monkeypatch) -> None:
    raw = json.loads((Path(cparts.__file__).parent.parent / "data" / "cleaning" / "policy.json").read_text())
    raw["conflicts"] = {"min_support": 4, "min_agreement": 0.8}
    path = root / "policy.json"
    path.write_text(json.dumps(raw))
    monkeypatch.setenv("CHARMETA_CLEANING_POLICY", str(path))
    run_all(str(root), ["p0"])
    lines = {r["id"]: r for r in _lines(root, ["p0"], _state(root))}
    assert lines["a-mis"]["Hair Color"] == "Blonde"
    ident = pq.read_table(root / "cleaning" / "identity" / "p0.parquet").to_pylist()
    (c,) = [r for r in ident if r["action"] == "identity_conflict"]
    assert (c["id"], c["entry_value"], c["consensus_value"], c["source"]) == ("a-mis", "Blonde", "Brown", "identity")


def test_unstable_traits_are_not_filled(root: Path) -> None:
    policy = load_policy()
    assert policy.traits["Dress"] == "profile" and policy.traits["Facial Expression"] == "profile"
    run_all(str(root), ["p0"])
    ident = pq.read_table(root / "cleaning" / "identity" / "p0.parquet").to_pylist()
    filled = {r["attribute"] for r in ident if r["action"] == "fill"}
    assert filled and filled <= set(policy.fill_attributes)
    assert not filled & {"Dress", "Facial Expression", "Hair Style", "Age"}


def test_an_excluded_entry_is_never_filled_out_of_excluded(tmp_path: Path) -> None:
    rows = _rows(1, "x-") + [("x-loli", "1girl, solo, chen, touhou, loli, outdoors")]
    _write_partition(tmp_path, "p0", rows)
    run_all(str(tmp_path), ["p0"])
    lines = {r["id"] for r in _lines(tmp_path, ["p0"], _state(tmp_path))}
    assert "x-loli" not in lines
    ident = pq.read_table(tmp_path / "cleaning" / "identity" / "p0.parquet").to_pylist()
    assert not [r for r in ident if r["id"] == "x-loli" and r["action"] == "fill"]


def test_new_shard_updates_profiles_from_its_part_only(root: Path) -> None:
    run_all(str(root), ["p0"])
    marker = root / "cleaning_parts" / "p0.json"
    before = marker.stat().st_mtime_ns
    prof0 = pq.read_table(root / "cleaning" / "character_profiles.parquet").to_pylist()
    _write_partition(root, "p1", _rows(2, "b-"))
    out = run_all(str(root), ["p0", "p1"])
    assert out["parts"]["built"] == 1 and marker.stat().st_mtime_ns == before
    prof1 = pq.read_table(root / "cleaning" / "character_profiles.parquet").to_pylist()
    s0 = {(r["character"], r["attribute"]): r["support"] for r in prof0}
    s1 = {(r["character"], r["attribute"]): r["support"] for r in prof1}
    assert s1[("chen", "Hair Color")] == 2 * s0[("chen", "Hair Color")]
    # the second shard's copies of the first shard's duplicates join the same cluster
    clusters = pq.read_table(root / "cleaning" / "dedup_clusters.parquet").to_pylist()
    dup_rows = [r for r in clusters if "dup-" in r["id"]]
    assert len(dup_rows) == 6 and len({r["cluster_id"] for r in dup_rows}) == 1


def test_batched_minhash_estimates_jaccard_like_datasketch() -> None:
    rng = np.random.default_rng(3)
    base = rng.integers(0, 2**63, 20, dtype=np.uint64)
    sets = [
        base,
        np.concatenate([base[:-2], rng.integers(0, 2**63, 2, dtype=np.uint64)]),
        rng.integers(0, 2**63, 20, dtype=np.uint64),
    ]
    rows = np.concatenate([np.full(len(x), i) for i, x in enumerate(sets)])
    sig = minhash(rows, np.concatenate(sets), len(sets), 256)
    est = [(sig[0] == sig[i]).mean() for i in (1, 2)]
    ds = []
    for s in sets:
        m = datasketch.MinHash(num_perm=256, seed=1, hashfunc=lambda b: int.from_bytes(b, "little") & 0xFFFFFFFF)
        m.update_batch([int(x).to_bytes(8, "little") for x in s])
        ds.append(m)
    ref = [ds[0].jaccard(ds[1]), ds[0].jaccard(ds[2])]
    true = 18 / 22
    assert abs(est[0] - true) < 0.1 and abs(ref[0] - true) < 0.1
    assert est[1] < 0.1 and ref[1] < 0.1
    keys = band_keys(sig, 64)
    assert (keys[0] == keys[1]).any() and not (keys[0] == keys[2]).any()


def test_policy_errors_name_the_key() -> None:
    raw = json.loads((Path(cparts.__file__).parent.parent / "data" / "cleaning" / "policy.json").read_text())
    raw["traits"]["Dress"] = "always"
    with pytest.raises(CleaningPolicyError, match="traits.Dress"):
        parse_policy(raw)
    raw["traits"]["Dress"] = "profile"
    raw["dedup"]["num_perm"] = 25
    with pytest.raises(CleaningPolicyError, match="num_perm"):
        parse_policy(raw)


def test_part_is_rebuilt_when_its_validated_file_changes(root: Path) -> None:
    cparts.ensure_part(str(root), "p0")
    assert cparts.read_part(str(root), "p0") is not None
    _write_partition(root, "p0", _rows(5, "c-"))
    os.utime(root / "validated_records" / "p0.parquet")
    assert cparts.read_part(str(root), "p0") is None


def test_tag_sets_ignore_order_case_underscores_and_split_raw_strings() -> None:
    texts = pa.array(
        [
            "1girl, Long_Hair, blue eyes, kaga \\(kancolle\\)",
            "blue_eyes, kaga (kancolle), long hair, 1GIRL",
            "1girl long_hair blue_eyes kaga_(kancolle)",
            "1girl, long hair, blue eyes, kaga (kancolle), smile",
            "1girl, ||| safe, , long hair",
        ]
    )
    rows, hashes, _, _ = token_hashes(texts)
    sets = [frozenset(hashes[rows == i].tolist()) for i in range(5)]
    assert sets[0] == sets[1] == sets[2] and len(sets[0]) == 4
    assert sets[3] > sets[0] and len(sets[3]) == 5
    assert len(sets[4]) == 3  # the section marker's "|||" and the empty tag are not tags


def test_consensus_needs_coverage_of_the_characters_entries(tmp_path: Path) -> None:
    from charmeta.cleaning.profiles import build_profiles

    (tmp_path / "cleaning_parts").mkdir()
    rows = [
        ("popular (series)", "(entries)", "", 1000),
        ("popular (series)", "Hair Color", "Red", 900),
        ("popular (series)", "Ethnicity", "Asian", 5),  # 5 of 1000 pictures say so, all agreeing
    ]
    table = pa.table({k: [r[i] for r in rows] for i, k in enumerate(("character", "attribute", "value", "n"))})
    pq.write_table(table, tmp_path / "cleaning_parts" / "p0.profile.parquet")
    build_profiles(str(tmp_path), ["p0"])
    prof = {r["attribute"]: r for r in pq.read_table(tmp_path / "cleaning" / "character_profiles.parquet").to_pylist()}
    assert prof["Hair Color"]["consensus"] and prof["Hair Color"]["coverage"] == 0.9
    assert prof["Ethnicity"]["agreement"] == 1.0 and not prof["Ethnicity"]["consensus"]
