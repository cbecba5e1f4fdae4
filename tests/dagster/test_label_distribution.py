"""label_distribution through a real ``charmeta run`` (issue #19): green on a healthy synthetic
dataset (whose Ethnicity is ~always Unknown, which used to warn on every run), and a WARN naming
Hair Color, the partitions and the numbers after a broken ontology file maps every hair color
to Black."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import charmeta

CLI = [sys.executable, "-m", "charmeta.cli"]


def _run(src: Path, out: Path, home: Path, env: dict[str, str] | None = None) -> None:
    cmd = CLI + ["run", "--source", str(src), "--output", str(out), "--dagster-home", str(home)]
    res = subprocess.run(
        cmd + ["--shard-rows", "5000"],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, **(env or {})},
        cwd=src.parent,  # not the checkout: `python -m` puts the working folder before PYTHONPATH
    )
    assert res.returncode == 0, res.stderr[-3000:]


def _label_distribution(home: Path) -> tuple[bool, dict]:
    from dagster import AssetCheckKey, AssetKey, DagsterInstance

    check = AssetCheckKey(AssetKey("validated_records"), "label_distribution")
    with DagsterInstance.from_config(str(home)) as inst:
        record = inst.event_log_storage.get_latest_asset_check_execution_by_key([check])[check]
        ev = record.event.dagster_event.event_specific_data
        return ev.passed, {k: getattr(v, "value", v) for k, v in ev.metadata.items()}


@pytest.mark.slow
def test_healthy_is_green_and_broken_hair_colors_warn(tmp_path: Path) -> None:
    src, out, home = tmp_path / "src", tmp_path / "out", tmp_path / "home"
    subprocess.run(CLI + ["synth", "--rows", "60000", "--shards", "3", "--output", str(src)], check=True)
    _run(src, out, home)
    passed, meta = _label_distribution(home)
    assert passed, meta.get("warnings")
    assert meta["reference"].startswith("pinned") and meta["partitions_checked"] >= 5
    assert meta["unknown_rate.Ethnicity"] > 0.9  # always Unknown on tag captions, and that is fine
    assert (out / "quality" / "reference_profile.json").exists()

    # a broken ontology: a copy of the package whose color table maps every hair color to Black
    pkg = tmp_path / "broken"
    shutil.copytree(Path(charmeta.__file__).parent, pkg / "charmeta", ignore=shutil.ignore_patterns("__pycache__"))
    colors_path = pkg / "charmeta" / "data" / "ontology" / "colors.json"
    colors = json.loads(colors_path.read_text())
    colors["hair"] = {word: "Black" for word in colors["hair"]}
    colors_path.write_text(json.dumps(colors))
    _run(src, out, home, env={"PYTHONPATH": f"{pkg}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"})
    passed, meta = _label_distribution(home)
    assert not passed, meta
    warnings = meta["warnings"]
    findings = meta["findings"]
    assert {f["attribute"] for f in findings} == {"Hair Color"}, warnings
    drift = [f for f in findings if f["kind"] == "drift"]
    assert drift and all(f["partition"] in warnings for f in drift), warnings
    assert all(f["value"] > 0.5 for f in drift) and "Black" in warnings and "TVD" in warnings, warnings
    assert Path(meta["plot"]).exists()
