"""Ingest from WebDataset / folder / Parquet, then normalize to Arrow and write partitions."""

from __future__ import annotations

import io
import tarfile

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from charmeta.images.hashing import hamming, phash
from charmeta.images.ingest import read_source
from charmeta.images.normalize import NORMALIZED_SCHEMA, decode_png, normalize_batch, write_partition

from .conftest import solid


def _tar(path, members):
    with tarfile.open(path, "w") as tf:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))


def test_webdataset_captions_travel_with_images(tmp_path):
    p = tmp_path / "shard-000.tar"
    _tar(
        p,
        [
            ("a.jpg", solid((255, 0, 0), fmt="JPEG")),
            ("a.txt", b"1girl, red_hair"),
            ("b.png", solid((0, 0, 255))),
            ("c.txt", b"orphan caption"),
            ("d.webp", b""),
        ],
    )
    recs = list(read_source(p))
    assert [(r.id, r.ext, r.caption) for r in recs] == [
        ("a", "jpg", "1girl, red_hair"),
        ("b", "png", None),
        ("c", None, "orphan caption"),
        ("d", "webp", None),
    ]
    t = normalize_batch(recs, size=32)
    assert t.schema == NORMALIZED_SCHEMA
    assert t["status"].to_pylist() == ["ok", "ok", "invalid", "invalid"]
    assert t["reason"].to_pylist()[2].startswith("sample has no image member")
    assert t["reason"].to_pylist()[3] == "zero-byte image"
    assert t["caption"].to_pylist()[0] == "1girl, red_hair"


def test_truncated_tar_does_not_raise(tmp_path):
    p = tmp_path / "s.tar"
    _tar(p, [("a.png", solid((1, 1, 1))), ("b.png", solid((2, 2, 2), (300, 300), noise=50))])
    p.write_bytes(p.read_bytes()[:1800])
    recs = list(read_source(p))
    assert recs[0].id == "a" and recs[-1].preset_reason and "truncated" in recs[-1].preset_reason


def test_folder_with_sidecars(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "x.png").write_bytes(solid((0, 255, 0)))
    (tmp_path / "x.txt").write_text("solo, green_hair")
    (tmp_path / "sub" / "y.jpg").write_bytes(b"not really a jpeg")
    recs = list(read_source(tmp_path))
    assert [(r.id, r.caption) for r in recs] == [("sub/y", None), ("x", "solo, green_hair")]
    t = normalize_batch(recs, size=32)
    assert t["status"].to_pylist() == ["invalid", "ok"]
    assert t["reason"][0].as_py().startswith("not an image (extension .jpg)")


def test_parquet_bytes_struct_and_paths(tmp_path):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "p.png").write_bytes(solid((9, 9, 9)))
    pq.write_table(
        pa.table(
            {
                "id": ["r1", "r2"],
                "image": [{"bytes": solid((5, 5, 5)), "path": "r1.png"}, {"bytes": None, "path": None}],
                "caption": ["1boy", None],
            }
        ),
        tmp_path / "a.parquet",
    )
    pq.write_table(
        pa.table({"image_path": ["imgs/p.png", "imgs/missing.png", "../../etc/passwd"], "text": ["a", "b", "c"]}),
        tmp_path / "b.parquet",
    )
    a = list(read_source(tmp_path / "a.parquet"))
    assert a[0].data and a[0].caption == "1boy" and a[0].ext == "png" and a[1].data is None
    b = list(read_source(tmp_path / "b.parquet"))
    assert b[0].data and b[0].caption == "a"
    assert b[1].preset_reason == "image file not found: imgs/missing.png"
    assert "escapes" in b[2].preset_reason
    t = normalize_batch(a + b, size=32)
    assert t["status"].to_pylist() == ["ok", "invalid", "ok", "invalid", "invalid"]
    assert t["reason"][1].as_py() == "missing image bytes (null)"


def test_letterbox_hashes_and_partitions(tmp_path):
    wide = solid((255, 0, 0), (80, 40))
    recs = list(read_source(_folder(tmp_path, {"w.png": wide})))
    t = normalize_batch(recs, size=32)
    row = t.to_pylist()[0]
    img = decode_png(row["pixels"])
    assert img.size == (32, 32)
    assert img.getpixel((16, 16))[0] > 200 and img.getpixel((16, 2)) == (255, 255, 255)  # padded, not cropped
    assert len(row["sha256"]) == 64 and len(row["phash"]) == 16
    assert (row["orig_width"], row["orig_height"], row["format"]) == (80, 40, "PNG")
    out = write_partition(t, tmp_path / "out" / "part-0.parquet")
    assert pq.read_table(out).equals(t)
    wds = write_partition(t, tmp_path / "out" / "part-0.tar", fmt="wds")
    with tarfile.open(wds) as tf:
        assert sorted(tf.getnames()) == ["w.json", "w.png"]


def test_phash_survives_reencode_and_resize():
    import numpy as np

    rng = np.random.default_rng(1)
    base = Image.fromarray((rng.random((64, 64, 3)) * 255).astype("uint8")).resize((256, 256))
    buf = io.BytesIO()
    base.resize((200, 200)).save(buf, "JPEG", quality=70)
    other = Image.fromarray((rng.random((64, 64, 3)) * 255).astype("uint8")).resize((256, 256))
    assert hamming(phash(base), phash(Image.open(buf))) <= 6
    assert hamming(phash(base), phash(other)) > 12


def _folder(root, files):
    d = root / "src"
    d.mkdir()
    for name, data in files.items():
        (d / name).write_bytes(data)
    return d
