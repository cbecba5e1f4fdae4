"""Image containers without Dagster: every layout gives the same raw rows and the same image
bytes (read from the shard itself), bad members are quarantined with a reason, and the
hub conventions (README ``configs``, ``save_to_disk`` state) decide which files are read."""

from __future__ import annotations

import hashlib
import io
import json
import re
import stat
import zipfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from charmeta.bench.containers import LAYOUTS, drawn_samples, write_layouts
from charmeta.sources import RAW_SCHEMA, Source, iter_shard
from charmeta.sources.image_bytes import iter_image_bytes

PIL = pytest.importorskip("PIL.Image")

CAPTIONS = [
    "1girl, solo, blonde_hair, long_hair, blue_eyes, school_uniform",
    "1boy, solo, black_hair, short_hair, red_eyes",
    "1girl, solo, red_hair, green_eyes, kimono",
    "2girls, blue_hair, pink_hair",
    "1girl, white_hair, purple_eyes, smile",
]


@pytest.fixture(scope="module")
def samples() -> list[tuple[str, bytes, str]]:
    return drawn_samples(20, CAPTIONS)


@pytest.fixture(scope="module")
def layouts(tmp_path_factory, samples) -> dict[str, Path]:
    return write_layouts(samples, tmp_path_factory.mktemp("layouts"))


def raw_and_images(source: Source) -> tuple[pa.Table, list, list]:
    shards = source.discover()
    tables, images = [], []
    for s in shards:
        t = pa.Table.from_batches(list(iter_shard(s, batch_rows=7)), schema=RAW_SCHEMA)
        tables.append(t)
        images.extend(iter_image_bytes(s, t.to_pylist()))
    return pa.concat_tables(tables), images, shards


def test_every_layout_gives_the_same_rows_and_the_same_image_bytes(layouts, samples) -> None:
    by_key = {k: (img, cap) for k, img, cap in samples}
    expected = None
    for layout in LAYOUTS:
        table, images, shards = raw_and_images(Source(str(layouts[layout])))
        rows = table.select(["id", "text", "source_position", "reason"]).to_pylist()
        assert len(rows) == 20, layout
        assert all(r["reason"] is None for r in rows), (layout, rows)
        assert [r["text"] for r in rows] == [by_key[r["id"]][1] for r in rows], layout
        if expected is None:
            expected = rows
        assert rows == expected, layout  # same ids, captions, positions as the WebDataset tar
        assert len(images) == 20, layout
        for ib in images:
            assert ib.reason is None, (layout, ib.reason)
            assert ib.data == by_key[ib.row["id"]][0], layout  # the very bytes that were packed
            assert PIL.open(io.BytesIO(ib.data)).size[1] == 96  # and they decode
        assert all(s.holds_images for s in shards), layout


def test_image_stage_records_come_from_the_shard_for_every_layout(layouts) -> None:
    """The image stage's own reader (``image_stages._image_records``) + normalize: every image
    decodes, same hashes whatever the container."""
    from charmeta.images.normalize import normalize_batch
    from charmeta.pipeline.image_stages import _image_records

    hashes = {}
    for layout in LAYOUTS:
        table, _images, shards = raw_and_images(Source(str(layouts[layout])))
        recs = [r for s in shards for r in _image_records(s, table.to_pylist())]
        norm = normalize_batch(recs, size=64)
        assert norm.column("status").to_pylist() == ["ok"] * 20, layout
        hashes[layout] = dict(zip(norm.column("id").to_pylist(), norm.column("sha256").to_pylist()))
    assert all(h == hashes["webdataset"] for h in hashes.values())


def test_image_tables_are_cut_into_small_partitions_with_stable_keys(layouts) -> None:
    for layout in ("parquet", "arrow", "zip", "imagefolder", "sidecars"):
        shards = Source(str(layouts[layout]), shard_rows=8).discover()
        table, images, _ = raw_and_images(Source(str(layouts[layout]), shard_rows=8))
        assert len(shards) >= 3, layout
        assert table.column("source_position").to_pylist() == list(range(20)), layout
        assert len(images) == 20
        assert [s.key for s in shards] == [s.key for s in Source(str(layouts[layout]), shard_rows=8).discover()]


def test_captionless_images_are_pixels_only_rows(tmp_path: Path, samples) -> None:
    for key, img, _cap in samples[:5]:
        (tmp_path / f"{key}.png").write_bytes(img)
    (tmp_path / "000001.tags").write_text(samples[1][2])  # one of them has a .tags sidecar
    (tmp_path / "orphan.txt").write_text("1girl, solo")  # a caption without an image stays a row
    table, images, shards = raw_and_images(Source(str(tmp_path)))
    rows = {r["id"]: r for r in table.to_pylist()}
    assert len(rows) == 6
    assert rows["000001"]["text"] == samples[1][2] and rows["000001"]["reason"] is None
    assert rows["000000"]["text"] is None and "pixels only" in rows["000000"]["reason"]
    assert rows["orphan"]["image_member"] is None and rows["orphan"]["text"] == "1girl, solo"
    assert sorted(ib.row["id"] for ib in images) == ["000000", "000001", "000002", "000003", "000004"]
    assert all(ib.data for ib in images)


def test_imagefolder_metadata_bad_lines_unsafe_names_and_unlisted_images(tmp_path: Path, samples) -> None:
    for key, img, _cap in samples[:4]:
        (tmp_path / f"{key}.png").write_bytes(img)
    lines = [
        json.dumps({"file_name": "000000.png", "text": "1girl, red_hair"}),
        "{broken",
        json.dumps({"file_name": "../outside.png", "text": "1girl"}),
        json.dumps({"file_name": "missing.png", "caption": "1boy"}),
        json.dumps({"file_name": "000002.png", "id": "post-7", "tags": ["1girl", "blue_eyes"]}),
    ]
    (tmp_path / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    table, images, shards = raw_and_images(Source(str(tmp_path)))
    rows = table.to_pylist()
    assert len(rows) == 7  # 5 metadata lines + 000001 and 000003, which no line names
    by_id = {r["id"]: r for r in rows}
    assert by_id["000000"]["text"] == "1girl, red_hair"
    assert by_id["post-7"]["text"] == "1girl, blue_eyes"
    assert by_id["metadata.jsonl:1"]["reason"].startswith("broken JSON line")
    assert "'..' path" in by_id["metadata.jsonl:2"]["reason"]
    assert "pixels only" in by_id["000001"]["reason"] and "pixels only" in by_id["000003"]["reason"]
    got = {ib.row["id"]: ib for ib in images}
    assert got["missing"].data is None and got["missing"].reason.startswith("cannot read image file")
    assert got["000000"].data == samples[0][1] and got["post-7"].data == samples[2][1]
    assert {s.fmt for s in shards} == {"imagefolder", "txt"}


def test_zip_unsafe_members_are_quarantined_and_the_rest_is_read(tmp_path: Path, samples) -> None:
    path = tmp_path / "pairs.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for key, img, cap in samples[:3]:
            zf.writestr(f"{key}.png", img)
            zf.writestr(f"{key}.txt", cap)
        zf.writestr("../escape.txt", "1girl")
        zf.writestr("/abs.png", samples[0][1])
        link = zipfile.ZipInfo("link.png")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
        zf.writestr("bomb.txt", b"\0" * (8 << 20))  # 8 MiB of zeros: deflates > 200x
        zf.writestr("nocap.png", samples[1][1])
        zf.writestr("badtext.txt", b"\xff\xfe not utf-8")
    table, images, _ = raw_and_images(Source(str(path)))
    rows = {r["id"]: r for r in table.to_pylist()}
    assert len(rows) == 9
    assert "'..' path" in rows["../escape"]["reason"]
    assert "absolute path" in rows["/abs"]["reason"]
    assert "symlink" in rows["link"]["reason"]
    assert "compression bomb" in rows["bomb"]["reason"]
    assert "no text member" in rows["nocap"]["reason"] and rows["nocap"]["image_member"] == "nocap.png"
    assert "not valid UTF-8" in rows["badtext"]["reason"]
    assert [rows[k]["text"] for k, _, _ in samples[:3]] == [c for _, _, c in samples[:3]]
    assert sorted(ib.row["id"] for ib in images) == ["000000", "000001", "000002", "nocap"]
    assert all(ib.data for ib in images)


def test_corrupt_zip_and_truncated_tgz_are_invalid_rows_not_crashes(tmp_path: Path, layouts) -> None:
    (tmp_path / "bad.zip").write_bytes(b"PK\x03\x04 this is not a zip")
    tgz = (layouts["tgz"] / "shard-000000.tar.gz").read_bytes()
    (tmp_path / "cut.tar.gz").write_bytes(tgz[: len(tgz) // 2])
    table, _images, shards = raw_and_images(Source(str(tmp_path)))
    by_file: dict[str, list] = {}
    for r in table.to_pylist():
        by_file.setdefault(r["source_shard"], []).append(r)
    assert by_file["bad.zip"][0]["reason"].startswith("cannot read zip file")
    cut = by_file["cut.tar.gz"]
    assert cut[-1]["reason"] and "truncated or corrupt" in cut[-1]["reason"]
    assert 1 <= len(cut) < 20


def test_parquet_image_variants_null_cells_binary_columns_and_paths(tmp_path: Path, samples) -> None:
    img_t = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.png").write_bytes(samples[3][1])
    pq.write_table(
        pa.table(
            {
                "id": ["n0", "n1", "n2", "n3"],
                "image": pa.array(
                    [
                        {"bytes": samples[0][1], "path": None},
                        None,  # no image: the caption-only row stays
                        {"bytes": None, "path": "imgs/a.png"},  # datasets keeps paths of files on disk
                        {"bytes": None, "path": "../../etc/passwd"},
                    ],
                    img_t,
                ),
                "caption": ["1girl", "1boy", "2girls", "1girl"],
            }
        ),
        tmp_path / "structs.parquet",
    )
    pq.write_table(pa.table({"jpg": [samples[1][1]], "txt_only": ["x"]}), tmp_path / "binary.parquet")
    pq.write_table(pa.table({"text": ["1girl, solo"]}), tmp_path / "textonly.parquet")
    # a glob: imgs/a.png would otherwise also be a loose (captionless) image row of the folder
    table, images, shards = raw_and_images(Source(str(tmp_path / "*.parquet")))
    fields = {s.relpath: s.image_field for s in shards}
    assert fields == {"structs.parquet": "image", "binary.parquet": "jpg", "textonly.parquet": None}
    assert not next(s for s in shards if s.relpath == "textonly.parquet").holds_images
    got = {ib.row["id"]: ib for ib in images}
    assert got["n0"].data == samples[0][1]
    assert got["n1"].data is None and got["n1"].reason is None  # null cell: no image record
    assert got["n2"].data == samples[3][1] and got["n2"].ext == "png"
    assert "'..' path" in got["n3"].reason
    assert got["binary.parquet:0"].data == samples[1][1]
    binary_row = next(r for r in table.to_pylist() if r["id"] == "binary.parquet:0")
    assert binary_row["reason"].startswith("no text column")  # pixels only, still one row


def test_arrow_file_format_and_save_to_disk_cache_files(tmp_path: Path, samples, layouts) -> None:
    # IPC *file* format (footer), one record batch per 5 rows
    t = pa.table(
        {"key": [k for k, _, _ in samples], "png": [b for _, b, _ in samples], "tags": [c for *_, c in samples]}
    )
    with pa.OSFile(str(tmp_path / "file.arrow"), "wb") as sink, pa.ipc.new_file(sink, t.schema) as w:
        for b in t.to_batches(max_chunksize=5):
            w.write_batch(b)
    table, images, shards = raw_and_images(Source(str(tmp_path / "file.arrow"), shard_rows=10))
    assert [(s.start, s.stop) for s in shards] == [(0, 10), (10, 20)]
    assert table.column("id").to_pylist() == [k for k, _, _ in samples]
    assert [ib.data for ib in images] == [b for _, b, _ in samples]
    # save_to_disk: a cache-*.arrow beside the data file is not part of the dataset
    d = tmp_path / "saved"
    d.mkdir()
    for f in layouts["arrow"].iterdir():
        (d / f.name).write_bytes(f.read_bytes())
    (d / "cache-1234.arrow").write_bytes((d / "data-00000-of-00001.arrow").read_bytes())
    files = Source(str(d)).files()
    assert [f.relpath for f in files] == ["data-00000-of-00001.arrow"]
    # a DatasetDict: dataset_dict.json at the top, one save_to_disk folder per split
    dd = tmp_path / "dict"
    for split in ("train", "test"):
        (dd / split).mkdir(parents=True)
        for f in layouts["arrow"].iterdir():
            (dd / split / f.name).write_bytes(f.read_bytes())
    (dd / "dataset_dict.json").write_text(json.dumps({"splits": ["train", "test"]}))
    table, images, shards = raw_and_images(Source(str(dd)))
    assert [s.relpath for s in shards] == ["test/data-00000-of-00001.arrow", "train/data-00000-of-00001.arrow"]
    assert table.num_rows == 40 and len(images) == 40


README = """---
license: mit
configs:
- config_name: default
  data_files:
  - split: train
    path: "data/train-*.parquet"
  - split: test
    path: data/test-*.parquet
- config_name: captions
  data_files: "extra/**/*.jsonl"
---
# A dataset card
"""


def test_readme_configs_decide_which_files_are_read(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "extra" / "deep").mkdir(parents=True)
    for name in ("train-00000.parquet", "test-00000.parquet", "other.parquet"):
        pq.write_table(pa.table({"text": [f"1girl, {name}"]}), tmp_path / "data" / name)
    (tmp_path / "extra" / "deep" / "c.jsonl").write_text('{"text": "1boy"}\n')
    (tmp_path / "notes.json").write_text('{"text": "not data"}')
    (tmp_path / "README.md").write_text(README)
    src = Source(str(tmp_path))
    assert [f.relpath for f in src.files()] == ["data/test-00000.parquet", "data/train-00000.parquet"]
    assert src.followed_config["name"] == "default"
    alt = Source(str(tmp_path), config="captions")
    assert [f.relpath for f in alt.files()] == ["extra/deep/c.jsonl"]
    from charmeta.errors import ConfigError

    with pytest.raises(ConfigError, match="not declared"):
        Source(str(tmp_path), config="nope").files()
    from charmeta.sources.inspect import describe

    report = describe(Source(str(tmp_path)), samples=False)
    assert report["readme_config"]["name"] == "default" and len(report["partitions"]) == 2
    (tmp_path / "README.md").write_text("# no YAML header\n")
    assert len(Source(str(tmp_path)).files()) == 5  # no configs: every data file


def test_shard_keys_and_fingerprints_of_text_sources_did_not_change(tmp_path: Path) -> None:
    """Text-only Parquet keeps its old fingerprint (image_field is only hashed when set)."""
    pq.write_table(pa.table({"text": ["1girl"]}), tmp_path / "t.parquet")
    (spec,) = Source(str(tmp_path)).discover()
    payload = json.dumps(["t.parquet", "parquet", 0, None, spec.file_fingerprint, None, []], sort_keys=True)
    assert spec.fingerprint == hashlib.sha1(payload.encode()).hexdigest()[:16]


def test_inspect_describes_each_layout(layouts, capsys) -> None:
    from charmeta.cli import main

    expect_text = {"parquet": "text", "arrow": "text", "webdataset": "<key>.txt member", "zip": "<key>.txt member"}
    for layout in LAYOUTS:
        assert main(["inspect", str(layouts[layout]), "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert len(report["partitions"]) == 1 and report["partitions"][0]["images"], layout
        (fmt,) = report["formats"]
        entry = report["formats"][fmt]
        if layout in expect_text:
            assert entry["text_field"] == expect_text[layout], layout
        assert entry["image_field"], layout
        sample = entry["sample"]
        assert sample["id"] == "000000" and sample["text"] == CAPTIONS[0], layout
        assert sample["image"]["format"] == "PNG" and sample["image"]["height"] == 96, layout
    assert main(["inspect", str(layouts["arrow"])]) == 0
    text = capsys.readouterr().out
    assert "image type   struct<bytes: binary, path: string>" in text and "arrow" in text
    assert re.search(r"image\s+PNG \d+x96 RGB, \d+ bytes", text)


def test_image_field_setting_overrides_detection(tmp_path: Path, samples) -> None:
    pq.write_table(pa.table({"picture": [samples[0][1]], "text": ["1girl"]}), tmp_path / "p.parquet")
    assert Source(str(tmp_path)).discover()[0].image_field is None  # not an image-like name
    (spec,) = Source(str(tmp_path), image_field="picture").discover()
    assert spec.image_field == "picture" and spec.holds_images
    table = pa.Table.from_batches(list(iter_shard(spec)), schema=RAW_SCHEMA)
    (ib,) = list(iter_image_bytes(spec, table.to_pylist()))
    assert ib.data == samples[0][1]
    pq.write_table(pa.table({"image": [samples[0][1]], "text": ["1girl"]}), tmp_path / "p.parquet")
    assert Source(str(tmp_path)).discover()[0].image_field == "image"
    assert Source(str(tmp_path), image_field="none").discover()[0].image_field is None  # text only on request


def test_zipped_imagefolder_rows_follow_its_metadata(tmp_path: Path, samples) -> None:
    """HF's imagefolder also ships as a zip with metadata.jsonl inside: its lines are the rows,
    images they do not name are rows of their own (pixels only), nothing is read twice."""
    path = tmp_path / "imagefolder.zip"
    with zipfile.ZipFile(path, "w") as zf:
        lines = [
            json.dumps({"file_name": "images/000000.png", "text": samples[0][2]}),
            "",
            "{broken",
            json.dumps({"file_name": "images/000001.png", "caption": samples[1][2]}),
            json.dumps({"file_name": "../../etc/passwd", "text": "1girl"}),
        ]
        zf.writestr("metadata.jsonl", "\n".join(lines) + "\n")
        for key, img, _cap in samples[:3]:
            zf.writestr(f"images/{key}.png", img)
    for shard_rows in (200_000, 2):
        table, images, shards = raw_and_images(Source(str(path), shard_rows=shard_rows))
        rows = {r["id"]: r for r in table.to_pylist()}
        assert table.num_rows == 5, shard_rows  # 4 non-blank lines + the unnamed images/000002.png
        # ids: file_name up to the first dot, folders kept (the WebDataset key of the same member)
        assert rows["images/000000"]["text"] == samples[0][2] and rows["images/000001"]["text"] == samples[1][2]
        assert rows["imagefolder.zip:2"]["reason"].startswith("broken JSON line")
        assert "'..' path" in rows["imagefolder.zip:4"]["reason"]
        assert "no text member" in rows["images/000002"]["reason"]
        got = {ib.row["id"]: ib.data for ib in images}
        assert got == {"images/000000": samples[0][1], "images/000001": samples[1][1], "images/000002": samples[2][1]}


def test_loose_image_symlink_leaving_the_source_is_refused(tmp_path: Path, samples) -> None:
    outside = tmp_path / "outside.png"
    outside.write_bytes(samples[0][1])
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.png").write_bytes(samples[1][1])
    (src / "b.png").symlink_to(outside)
    _table, images, _shards = raw_and_images(Source(str(src)))
    got = {ib.row["id"]: ib for ib in images}
    assert got["a"].data == samples[1][1]
    assert got["b"].data is None and "escapes the source folder" in got["b"].reason
