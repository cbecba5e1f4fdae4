"""Dataset cleaning end to end (issue 14): `charmeta run` on a set where characters repeat
with color tags missing, near-duplicate pairs, a mislabelled entry and a sexual entry of a
Teen character. Each rule of the issue has its own test over the one run."""

from __future__ import annotations

import json
import random
from pathlib import Path

import duckdb
import pytest

from charmeta.cli import main

REFERENCE = Path(__file__).resolve().parents[2] / "charmeta" / "data" / "reference" / "characters_dev.txt"
HAIR = {
    f"{c} hair": c.title()
    for c in ("black", "brown", "red", "orange", "pink", "purple", "blue", "aqua", "green", "grey", "white")
}
HAIR["blonde hair"] = "Blonde"
EYES = {f"{c} eyes": c.title() for c in ("brown", "blue", "green", "red", "purple", "grey", "pink", "orange", "yellow")}
SCENES = [
    "outdoors",
    "indoors",
    "night",
    "day",
    "beach",
    "forest",
    "classroom",
    "city",
    "sky",
    "cloud",
    "tree",
    "flower",
    "smile",
    "open mouth",
    "blush",
    "looking at viewer",
    "from side",
    "upper body",
    "full body",
    "sitting",
    "standing",
    "holding cup",
    "holding book",
    "umbrella",
    "rain",
    "snow",
    "sunset",
    "window",
    "bed",
    "chair",
]
OUTFITS = ["dress", "shirt", "skirt", "jacket", "coat", "hoodie", "kimono", "sweater", "shorts", "cape"]


def _characters(n: int) -> list[tuple[str, str, str, str]]:
    """``n`` girls from the reference list with exactly one hair and one eye color tag."""
    out = []
    for line in REFERENCE.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 4 or parts[2] != "1girl" or "(" in parts[0]:
            continue
        hair = [t for t in parts[3:] if t in HAIR]
        eyes = [t for t in parts[3:] if t in EYES]
        if len(hair) == 1 and len(eyes) == 1 and len({p for p in parts[3:]} & {"heterochromia"}) == 0:
            out.append((parts[0], parts[1], hair[0], eyes[0]))
        if len(out) == n:
            break
    return out


def _dataset() -> tuple[list[dict], dict]:
    rng = random.Random(14)
    chars = _characters(26)
    rows: list[dict] = []
    truth: dict = {"chars": {}, "pairs": [], "conflict": None, "teen_nude": None, "distinct": []}
    for ci, (name, series, hair, eyes) in enumerate(chars[:25]):
        truth["chars"][name] = (HAIR[hair], EYES[eyes])
        for e in range(12):
            tags = ["1girl", "solo", name.replace(" ", "_"), series, hair, eyes]
            if e % 3 == 0:  # a third miss a hair or an eye color tag
                tags.remove(hair if e % 2 == 0 else eyes)
            tags += rng.sample(SCENES, 6) + [rng.choice(OUTFITS)]
            rows.append({"id": f"c{ci:02d}-{e:02d}", "text": ", ".join(tags), "rating": "g"})
            truth["distinct"].append(rows[-1]["id"])
    # a mislabel: one more entry of character 0 with another hair color (kept, flagged, not overwritten)
    name, series, hair, eyes = chars[0]
    other = next(h for h in HAIR if h != hair)
    rows.append(
        {"id": "conflict-1", "text": f"1girl, solo, {name}, {series}, {other}, {eyes}, beach, smile", "rating": "g"}
    )
    truth["conflict"] = ("conflict-1", HAIR[other], HAIR[hair])
    # a Teen character (school uniform every time) and one entry of hers nude, no age tag: ok before,
    # excluded after the identity re-check
    tname, tseries, thair, teyes = chars[25]
    for e in range(5):
        tags = ["1girl", "solo", tname, tseries, thair, teyes, "serafuku"] + rng.sample(SCENES, 6)
        rows.append({"id": f"teen-{e}", "text": ", ".join(tags), "rating": "g"})
    rows.append(
        {"id": "teen-nude", "text": f"1girl, solo, {tname}, {tseries}, {thair}, nude, bed, indoors", "rating": "g"}
    )
    truth["teen_nude"] = "teen-nude"
    # near-duplicate pairs: reordered, one tag more or less, case / underscore changes
    for p in range(30):
        base = ["1girl", "solo"] + rng.sample(SCENES, 9) + [rng.choice(OUTFITS), f"artist_{p}_x"]
        kind = p % 4
        if kind == 0:
            dup = list(reversed(base))
        elif kind == 1:
            dup = base + ["signature"]
        elif kind == 2:
            dup = base[:-2] + base[-1:]
        else:
            dup = [t.upper().replace(" ", "_") for t in base]
        rows.append({"id": f"pair{p:02d}-a", "text": ", ".join(base), "rating": "g"})
        rows.append({"id": f"pair{p:02d}-b", "text": ", ".join(dup), "rating": "g"})
        truth["pairs"].append((f"pair{p:02d}-a", f"pair{p:02d}-b"))
    return rows, truth


#: one `charmeta run` through Dagster (~15 s of CPU); tests/core/test_cleaning_rules.py covers the rules fast
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cleaned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, dict]:
    from charmeta_dagster.instance import ensure_home

    base = tmp_path_factory.mktemp("cleaning")
    home = base / "dagster_home"
    ensure_home(home)
    mp = pytest.MonkeyPatch()
    mp.setenv("DAGSTER_HOME", str(home))
    mp.delenv("CHARMETA_CLEANING", raising=False)  # module-scoped: the product default, whatever the shell set
    rows, truth = _dataset()
    src = base / "src"
    src.mkdir()
    (src / "entries.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = base / "out"
    try:
        assert main(["run", "--source", str(src), "--output", str(out), "--shard-rows", "150"]) == 0
    finally:
        mp.undo()
    export = {}
    for line in (out / "export" / "records.jsonl").read_text().splitlines():
        rec = json.loads(line)
        export.setdefault(rec["id"], []).append(rec)
    return out, export, truth, home


def test_every_exported_entry_of_a_character_carries_its_consensus_colors(cleaned) -> None:
    out, export, truth, _ = cleaned
    checked = 0
    for i, (name, (hair, eyes)) in enumerate(truth["chars"].items()):
        for e in range(12):
            (rec,) = export[f"c{i:02d}-{e:02d}"]
            assert (rec["Hair Color"], rec["Eye Color"]) == (hair, eyes), (name, rec)
            checked += 1
    assert checked == 300
    con = duckdb.connect(str(out / "export" / "catalog.duckdb"), read_only=True)
    fills = con.execute(
        "SELECT count(*), min(support), min(agreement) FROM identity WHERE action = 'fill' "
        "AND attribute IN ('Hair Color', 'Eye Color') AND source = 'identity'"
    ).fetchone()
    assert fills[0] >= 100 and fills[1] >= 3 and fills[2] >= 0.8  # every third entry of 25 x 12 was filled


def test_character_profiles_hold_consensus_support_agreement_histogram(cleaned) -> None:
    out, _, truth, _ = cleaned
    con = duckdb.connect(str(out / "export" / "catalog.duckdb"), read_only=True)
    name = next(iter(truth["chars"]))
    row = con.execute(
        "SELECT canonical, support, agreement, histogram, consensus FROM character_profiles "
        "WHERE character = ? AND attribute = 'Hair Color'",
        [name],
    ).fetchone()
    assert row[0] == truth["chars"][name][0] and row[4]
    assert row[1] == sum(row[3].values()) and row[2] == pytest.approx(row[3][row[0]] / row[1])
    assert row[2] < 1.0  # the mislabelled entry is in the histogram


def test_conflict_is_flagged_and_kept_not_overwritten(cleaned) -> None:
    out, export, truth, _ = cleaned
    cid, own, consensus = truth["conflict"]
    (rec,) = export[cid]
    assert rec["Hair Color"] == own
    con = duckdb.connect(str(out / "export" / "catalog.duckdb"), read_only=True)
    got = con.execute(
        "SELECT entry_value, consensus_value, support, agreement FROM identity "
        "WHERE id = ? AND action = 'identity_conflict'",
        [cid],
    ).fetchall()
    assert got and got[0][:2] == (own, consensus) and got[0][2] >= 5 and got[0][3] >= 0.9


def test_near_duplicates_export_once_and_distinct_entries_all_stay(cleaned) -> None:
    out, export, truth, _ = cleaned
    for a, b in truth["pairs"]:
        assert (a in export) != (b in export), (a, b)  # exactly one of the pair
    assert all(i in export for i in truth["distinct"])
    con = duckdb.connect(str(out / "export" / "catalog.duckdb"), read_only=True)
    rows = con.execute(
        "SELECT id, cluster_id, duplicate_of FROM dedup_clusters WHERE id LIKE 'pair%' ORDER BY id"
    ).fetchall()
    by = {r[0]: r for r in rows}
    for a, b in truth["pairs"]:
        assert by[a][1] == by[b][1]  # same cluster
        assert (by[a][2] is None) != (by[b][2] is None)
    manifest = json.loads((out / "export" / "manifest.json").read_text())
    assert manifest["cleaning"]["duplicates_dropped"] == len(truth["pairs"])
    assert len(sum(export.values(), [])) == manifest["exported_records"]


def test_filled_minor_age_consensus_moves_a_sexual_entry_into_excluded(cleaned) -> None:
    out, export, truth, _ = cleaned
    assert truth["teen_nude"] not in export
    assert all(f"teen-{e}" in export for e in range(5))
    con = duckdb.connect(str(out / "export" / "catalog.duckdb"), read_only=True)
    status = con.execute("SELECT status, age FROM validated_records WHERE id = ?", [truth["teen_nude"]]).fetchone()
    assert status == ("ok", "Unknown")  # the rich record was ok: only the identity re-check excludes it
    why = con.execute(
        "SELECT consensus_value FROM identity WHERE id = ? AND action = 'identity_excluded'", [truth["teen_nude"]]
    ).fetchone()
    assert why == ("Teen",)


def test_consistency_report_is_written_beside_the_export(cleaned) -> None:
    out, _, _, _ = cleaned
    report = (out / "export" / "consistency_report.md").read_text()
    assert "Duplicates" in report and "identity conflicts" in report
    for png in ("consistency_agreement.png", "consistency_clusters.png"):
        assert (out / "export" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_dagster_materializes_the_cleaning_assets_with_their_checks(cleaned) -> None:
    from dagster import AssetCheckKey, AssetKey, DagsterInstance

    out, _, truth, home = cleaned
    with DagsterInstance.from_config(str(home)) as inst:
        for key in ("dedup_clusters", "character_profiles", "identity_consistency", "dataset_export"):
            assert inst.get_latest_materialization_event(AssetKey(key)) is not None, key
        ident = inst.get_latest_materialization_event(AssetKey("identity_consistency")).asset_materialization
        assert ident.metadata["report"].value.endswith("consistency_report.md")
        assert ident.metadata["identity_conflicts"].value >= 1
        checks = {
            "duplicate_rate": "dedup_clusters",
            "agreement_distribution": "character_profiles",
            "identity_conflicts": "identity_consistency",
        }
        for name, asset in checks.items():
            key = AssetCheckKey(AssetKey(asset), name)
            record = inst.event_log_storage.get_latest_asset_check_execution_by_key([key])[key]
            evaluation = record.event.dagster_event.event_specific_data
            assert evaluation.metadata, name
        dup = AssetCheckKey(AssetKey("dedup_clusters"), "duplicate_rate")
        ev = inst.event_log_storage.get_latest_asset_check_execution_by_key([dup])[dup].event.dagster_event
        assert ev.event_specific_data.metadata["duplicates"].value == len(truth["pairs"])
