"""Bad image containers through every stage: zip members that escape, link, bomb or lie; a
corrupt zip; a truncated tar.gz; Parquet image cells that are garbage, null or point outside;
an imagefolder whose metadata is broken or names missing files. Each bad row is an ``invalid``
record with its reason in the quarantine, the good rows of the same shard are processed, and
no record is lost."""

from __future__ import annotations

import io
import json
import stat
import tarfile
import zipfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytest.importorskip("PIL.Image")

from chaos_lib import quarantine, run_pipeline  # noqa: E402

from charmeta.bench.containers import drawn_samples  # noqa: E402

CAPTIONS = ["1girl, solo, red_hair, blue_eyes", "1boy, solo, black_hair"]


def _reasons(rows: list[dict], shard: str) -> dict[str, str]:
    return {r["id"]: r["reason"] for r in rows if r["source_shard"] == shard}


def test_bad_containers_are_quarantined_with_reasons(tmp_path: Path, chaos) -> None:  # noqa: ANN001
    good = drawn_samples(4, CAPTIONS)
    src = tmp_path / "src"
    src.mkdir()
    # zip: 2 good samples + 5 bad ones
    with zipfile.ZipFile(src / "pairs.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        for key, img, cap in good[:2]:
            zf.writestr(f"{key}.png", img)
            zf.writestr(f"{key}.txt", cap)
        zf.writestr("../up.txt", "1girl")
        zf.writestr("/root.png", good[0][1])
        link = zipfile.ZipInfo("link.png")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
        zf.writestr("bomb.png", b"\0" * (8 << 20))
        zf.writestr("garbage.png", b"this is not a png")
        zf.writestr("garbage.txt", "1girl, solo")
    (src / "corrupt.zip").write_bytes(b"PK\x03\x04" + b"\0" * 200)
    # truncated tar.gz: the samples before the cut are read, the cut is one invalid row
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for key, img, cap in drawn_samples(12, CAPTIONS, seed=3):
            for name, data in ((f"{key}.png", img), (f"{key}.txt", cap.encode())):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    data = buf.getvalue()
    (src / "cut.tar.gz").write_bytes(data[: len(data) * 2 // 3])
    # Parquet image cells: good, garbage, null (caption-only record), a path leaving the folder
    img_t = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    cells = [
        {"bytes": good[2][1], "path": "a.png"},
        {"bytes": b"\x89PNG\r\n\x1a\n broken", "path": "b.png"},
        None,
        {"bytes": None, "path": "../../secret.png"},
    ]
    pq.write_table(
        pa.table({"id": ["p0", "p1", "p2", "p3"], "image": pa.array(cells, img_t), "text": [CAPTIONS[0]] * 4}),
        src / "cells.parquet",
    )
    # imagefolder: a good line, a broken line, a missing file
    folder = src / "folder"
    folder.mkdir()
    (folder / "f0.png").write_bytes(good[3][1])
    lines = [
        json.dumps({"file_name": "f0.png", "text": CAPTIONS[1]}),
        "{not json",
        json.dumps({"file_name": "gone.png", "text": "1girl"}),
    ]
    (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")

    out = tmp_path / "out"
    manifest = run_pipeline(src, out)
    q = quarantine(out)
    rich = {}
    for f in (out / "validated_records").glob("*.parquet"):
        for r in pq.read_table(f, columns=["id", "source_shard", "status", "input_kind"]).to_pylist():
            rich[(r["source_shard"], r["id"])] = r

    zr = _reasons(q, "pairs.zip")
    assert "'..' path" in zr["../up"] and "absolute path" in zr["/root"] and "symlink" in zr["link"]
    assert "compression bomb" in zr["bomb"]
    assert "garbage" in zr and "00000" not in "".join(zr)  # the good samples are not quarantined
    assert rich[("pairs.zip", "000000")]["input_kind"] == "image"
    chaos.record("zip: '..', absolute, symlink, bomb, garbage image", "5 invalid with reasons; 2 good processed", 0)

    (corrupt,) = _reasons(q, "corrupt.zip").values()
    assert corrupt.startswith("cannot read zip file")
    chaos.record("corrupt zip", "1 invalid record: cannot read zip file", 0)

    cut = [r for k, r in rich.items() if k[0] == "cut.tar.gz"]
    cut_q = _reasons(q, "cut.tar.gz")
    assert any("truncated or corrupt" in v for v in cut_q.values())
    assert sum(r["status"] == "ok" for r in cut) >= 1
    chaos.record("tar.gz cut at 2/3", f"{sum(r['status'] == 'ok' for r in cut)} samples ok + the cut as invalid", 0)

    pr = _reasons(q, "cells.parquet")
    assert set(pr) == {"p1", "p3"} and "'..' path" in pr["p3"]
    assert rich[("cells.parquet", "p0")]["input_kind"] == "image"
    assert rich[("cells.parquet", "p2")]["status"] == "ok" and rich[("cells.parquet", "p2")]["input_kind"] == "tags"
    chaos.record("Parquet image cells: garbage, null, path escaping", "garbage/escape invalid; null keeps caption", 0)

    fr = _reasons(q, "folder/metadata.jsonl")
    assert fr["folder/metadata.jsonl:1"].startswith("broken JSON line")
    assert "cannot read image file" in fr["gone"]
    assert rich[("folder/metadata.jsonl", "f0")]["status"] == "ok"
    chaos.record("imagefolder: broken metadata line, missing file", "2 invalid with reasons; good line ok", 0)

    # nothing lost: every input row of every container is a record
    inputs = 7 + 1 + len(cut) + 4 + 3
    assert int(manifest["records"]) == inputs == len(rich), (manifest["records"], sorted(rich))
