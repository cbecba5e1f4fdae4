"""``charmeta bench`` machinery on a tiny N: figures come out, missing stages degrade. No timings asserted."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from charmeta.bench import report
from charmeta.bench.data import ensure_synth
from charmeta.bench.floor import run_floor
from charmeta.bench.machine import describe
from charmeta.bench.ontology import engine_floor_ontology, from_ontology_dir, load_floor_ontology, normalise
from charmeta.bench.rss import TreeSampler
from charmeta.bench.stages import StageResult, run_child, unavailable, worker_cmd
from charmeta.cli import main


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    folder, reused = ensure_synth(tmp_path_factory.mktemp("bench"), 3_000, seed=1, log=lambda _m: None)
    assert not reused
    return folder


def test_synth_is_reused(shards: Path) -> None:
    folder, reused = ensure_synth(shards.parent, 3_000, seed=1, log=lambda _m: None)
    assert folder == shards and reused


def test_ontology_loader_is_tolerant(tmp_path: Path) -> None:
    (tmp_path / "broken.json").write_text("{not json")
    (tmp_path / "aliases.json").write_text(json.dumps({"aliases": {"blond hair": "blonde hair"}}))
    (tmp_path / "hair.json").write_text(
        json.dumps(
            {
                "attribute": "Hair Color",
                "order": ["Red"],
                "prose": {"ginger": "Red"},
                "tags": {"Red_Hair": "Red"},
                "groups": {"Blue": ["blue_hair", "light blue hair"]},
                "garments": [{"tags": ["kimono"], "display": "Kimono"}],
            }
        )
    )
    rows = from_ontology_dir(tmp_path)
    assert ("red hair", "Hair Color", "Red") in rows
    assert ("blue hair", "Hair Color", "Blue") in rows and ("kimono", "Hair Color", "Kimono") in rows
    assert not any(t == "ginger" for t, _, _ in rows)  # prose words are not tags
    fallback, source = load_floor_ontology(tmp_path / "missing")
    assert fallback and "fallback" in source
    assert normalise("Kaga_\\(kancolle\\)") == "kaga (kancolle)"


def test_floor_query(shards: Path, tmp_path: Path) -> None:
    onto, _ = load_floor_ontology()
    res = run_floor(str(shards / "*.parquet"), onto, tmp_path / "floor.parquet", threads=1)
    assert res.rows_in == 3_000 and res.threads == 1
    assert 2_900 <= res.entries_out <= 3_000  # empty / null rows drop out
    t = pq.read_table(tmp_path / "floor.parquet")
    assert t.column_names == ["id", "n_tags", "n_matched", "attrs"]
    assert sum(t.column("n_matched").to_pylist()) > 0


def test_engine_floor_joins_what_the_engine_looks_up(shards: Path, tmp_path: Path) -> None:
    """The floor's table is the engine's compiled index: far larger than the JSON-only table
    (colour x garment expansions, character names) and it matches more of the same tags."""
    from charmeta.ontology import get_ontology

    engine, source = engine_floor_ontology()
    light, _ = load_floor_ontology()
    assert "compiled" in source and len(engine) > 10 * len(light)
    tags = {t for t, _, _ in engine}
    assert tags == {t for t, hits in get_ontology().frozen.items() if hits}  # every tag with a hit, nothing else
    assert ("blue hair", "Hair Color", "Blue") in engine
    matched = {}
    for name, onto in (("engine", engine), ("json", light)):
        run_floor(str(shards / "*.parquet"), onto, tmp_path / f"{name}.parquet", threads=1)
        matched[name] = sum(pq.read_table(tmp_path / f"{name}.parquet").column("n_matched").to_pylist())
    assert matched["engine"] > matched["json"] > 0


def test_tree_sampler_sees_children() -> None:
    code = "import subprocess,sys,time; p=subprocess.Popen([sys.executable,'-c','import time; time.sleep(1.0)']); time.sleep(1.0); p.wait()"
    import subprocess

    proc = subprocess.Popen([sys.executable, "-c", code])
    with TreeSampler(proc.pid, interval=0.02) as s:
        proc.wait()
    assert s.peak.tree_bytes > 0 and len(s.peak.processes_seen) >= 2


def test_stage_runner_reports_failure_and_result(shards: Path, tmp_path: Path) -> None:
    bad = run_child("bad", [sys.executable, "-c", "import sys; sys.exit(3)"], 10)
    assert not bad.available and "exit 3" in bad.note
    floor = run_child(
        "floor",
        worker_cmd("floor", "--glob", str(shards / "*.parquet"), "--out", str(tmp_path / "f.parquet")),
        0,
        json_result=True,
    )
    assert floor.available and floor.rows == 3_000 and floor.rows_per_s and floor.peak_process_bytes > 0


def test_report_rendering(tmp_path: Path) -> None:
    results = [StageResult("a", True, 10, 1.0, 0.5, 2_000_000, 1_000_000, 2), unavailable("b", "later")]
    table = report.console_table(results)
    assert "20" in table and "not available: later" in table
    md = report.markdown_section(results, describe(), {"rows": "10"}, ["x"])
    path = tmp_path / "b.md"
    report.append(path, md, "# Benchmarks\n")
    report.append(path, md, "# ignored\n")
    text = path.read_text()
    assert text.startswith("# Benchmarks") and text.count("## Run") == 2 and "# ignored" not in text
    assert "cpu" in describe() and describe()["python"]


def test_bench_cli_tiny(tmp_path: Path, capsys) -> None:
    md = tmp_path / "bench.md"
    rc = main(
        [
            "bench",
            "--rows",
            "400",
            "--extract-rows",
            "300",
            "--workdir",
            str(tmp_path / "w"),
            "--report",
            str(md),
            "--timeout",
            "240",
            "--images",
            "12",
            "--skip",
            "image-backends",  # its own test below, on three pictures
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    for stage in ("synth (parquet)", "duckdb floor", "core extraction", "extract CLI", "end to end"):
        assert stage in out
        assert stage in md.read_text()
    assert "stage attribute_predictions" in out and "re-run, nothing new" in out and "10 new shards" in out
    floor_line = next(line for line in out.splitlines() if line.startswith("duckdb floor "))
    assert "400" in floor_line and "threads" in floor_line and "compiled tag index" in floor_line
    assert any(line.startswith("duckdb floor, JSON tags") for line in out.splitlines())
    assert "JSON-only tag table" in out
    for layout in ("webdataset", "zip", "tgz", "parquet", "arrow", "imagefolder"):  # the containers stage
        line = next(ln for ln in out.splitlines() if ln.startswith(f"read+decode {layout} "))
        assert "12/12 decoded" in line, line
    text = md.read_text()
    assert "# Benchmarks" in text and "**cpu**" in text and "**libraries**" in text


def test_bench_reports_cpu_images_per_second_per_image_backend(tmp_path: Path) -> None:
    """``make bench`` rows ``image: <backend>``: decode, animeface, haar, the tiny tagger one
    picture per call and batched; every available one timed over the pictures it was given."""
    pytest.importorskip("torch")  # the tiny tagger is exported from torch
    pytest.importorskip("onnxruntime")
    from charmeta.commands.bench import image_backend_results

    drawings = Path(__file__).resolve().parents[2] / "samples" / "drawings"
    for stem in ("eileen-happy", "lucy-happy", "sylvie-portrait"):
        shutil.copy(drawings / f"{stem}.jpg", tmp_path)
    rows = {r.name: r for r in image_backend_results(folder=tmp_path, repeats=1, batch=2)}
    assert {"image: decode", "image: tagger b1", "image: tagger b2"} <= set(rows)
    for name in ("image: decode", "image: tagger b1", "image: tagger b2"):
        assert rows[name].available and rows[name].rows == 3 and rows[name].rows_per_s > 0
    assert "batch 2" in rows["image: tagger b2"].note and "images/CPU-s" in rows["image: tagger b2"].note
    if rows["image: animeface"].available:  # animeface built here: it timed the same pictures
        assert rows["image: animeface"].rows == 3


@pytest.mark.slow
def test_cleaning_bench_runs_a_baseline_checkout_on_the_same_source(tmp_path: Path) -> None:
    """``python -m charmeta.bench.cleaning --baseline DIR`` runs DIR's code first and reports the
    ratios to it. The repository itself stands in for the earlier checkout here: the plumbing
    (PYTHONPATH, the same synthetic source, three successful runs, the ratio lines) is what
    is checked, not a speed."""
    import re

    from charmeta.bench import cleaning

    md = tmp_path / "bench.md"
    repo = Path(__file__).resolve().parents[2]
    rc = cleaning.main(
        ["--rows", "3000", "--work", str(tmp_path / "w"), "--alone", "none", "--report", str(md),
         "--baseline", str(repo)]
    )  # fmt: skip
    assert rc == 0
    text = md.read_text()
    rows = {
        m.group(1): float(m.group(2)) for m in re.finditer(r"^\| (end to end[^|]*) \| 3,000 \| ([\d.]+) \|", text, re.M)
    }
    assert len(rows) == 3 and any(k.startswith("end to end, baseline code ") for k in rows), text
    assert all(v > 0 for v in rows.values())
    assert (
        "- end to end, cleaning off / baseline code: " in text and "- end to end, cleaning on / baseline code: " in text
    )
    for mode in ("baseline", "off", "on"):  # each run exported the same source
        manifest = json.loads((tmp_path / "w" / f"run-{mode}" / "export" / "manifest.json").read_text())
        assert manifest["records"] == 3000
