"""Bad images inside a WebDataset shard, through the stages: each unusable image is an
``invalid`` record with a specific reason (rich output + quarantine, shard + position);
awkward-but-valid ones (CMYK, 16-bit, palette + transparency, animations, EXIF rotation)
are converted and processed; the good samples of the same shard are processed; nothing
is lost."""

from __future__ import annotations

import io
import struct
import tarfile
import zlib
from pathlib import Path

import numpy as np
import pytest

Image = pytest.importorskip("PIL.Image")

from chaos_lib import lost, quarantine, run_pipeline, tar_add  # noqa: E402


def _save(img, fmt: str, **kw) -> bytes:  # noqa: ANN001
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _noisy(fmt: str) -> bytes:
    rng = np.random.default_rng(0)
    return _save(Image.fromarray(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8), "RGB"), fmt)


def _png_declaring(w: int, h: int) -> bytes:
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(b"\0" * 16))
        + chunk(b"IEND", b"")
    )


def _palette_alpha() -> bytes:
    img = Image.new("P", (10, 10), 0)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    return _save(img, "PNG", transparency=0)


def _animated(fmt: str) -> bytes:
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 255, 0))]
    kw = {"lossless": True} if fmt == "WEBP" else {}
    return _save(frames[0], fmt, save_all=True, append_images=frames[1:], duration=50, loop=0, **kw)


def _exif_rotated() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6
    return _save(Image.new("RGB", (40, 20), (0, 0, 255)), "JPEG", exif=exif)


GOOD_PNG = _save(Image.new("RGB", (32, 32), (200, 40, 40)), "PNG")
# (case, member name, bytes, expected: reason substring for invalid, or "note:<substring>" for converted, None for ok)
IMAGE_CASES = [
    ("good image", "k00.png", GOOD_PNG, None),
    ("zero-byte image", "k01.jpg", b"", "zero-byte image"),
    ("truncated JPEG", "k02.jpg", _noisy("JPEG")[:6000], "truncated JPEG"),
    ("truncated PNG", "k03.png", _noisy("PNG")[:20000], "truncated PNG"),
    ("non-image with .jpg extension", "k04.jpg", b"<!DOCTYPE html><html>404</html>", "not an image (extension .jpg)"),
    ("decompression bomb", "k05.png", _png_declaring(7000, 7000), "decompression bomb"),
    ("50k x 50k declared size", "k06.png", _png_declaring(50_000, 50_000), "declared size 50000x50000 exceeds"),
    ("CMYK", "k07.jpg", _save(Image.new("CMYK", (20, 10), (0, 255, 255, 0)), "JPEG"), "note:CMYK converted"),
    ("16-bit", "k08.png", _save(Image.fromarray(np.full((10, 12), 40000, np.uint16)), "PNG"), "note:16-bit"),
    ("palette + transparency", "k09.png", _palette_alpha(), "note:palette with transparency"),
    ("animated GIF", "k10.gif", _animated("GIF"), "note:animated GIF"),
    ("animated WebP", "k11.webp", _animated("WEBP"), "note:animated WEBP"),
    ("EXIF-rotated", "k12.jpg", _exif_rotated(), "note:EXIF orientation 6"),
    ("good image (after the bad ones)", "k13.png", GOOD_PNG, None),
]


@pytest.fixture(scope="module")
def image_run(tmp_path_factory) -> tuple[dict, dict, dict]:  # noqa: ANN001
    src = tmp_path_factory.mktemp("img_src")
    out = tmp_path_factory.mktemp("img_out")
    with tarfile.open(src / "images-000.tar", "w", format=tarfile.USTAR_FORMAT) as tar:
        for _, name, data, _ in IMAGE_CASES:
            tar_add(tar, name, data)
            tar_add(tar, name.rsplit(".", 1)[0] + ".txt", b"1girl, solo, red hair, long hair")
    manifest = run_pipeline(src, out)
    import duckdb

    con = duckdb.connect()
    rows = {
        r["id"]: r
        for r in con.sql(f"SELECT * FROM read_parquet('{out}/validated_records/*.parquet')").df().to_dict("records")
    }
    norm = {
        r["id"]: r
        for r in con.sql(f"SELECT id, status, reason, notes FROM read_parquet('{out}/normalized_images/*.parquet')")
        .df()
        .to_dict("records")
    }
    q = {r["id"]: r for r in quarantine(out)}
    return manifest, rows, {"norm": norm, "q": q}


@pytest.mark.parametrize("case", [c[0] for c in IMAGE_CASES])
def test_bad_image(case: str, image_run, chaos) -> None:  # noqa: ANN001
    manifest, rows, extra = image_run
    _, name, _, want = next(c for c in IMAGE_CASES if c[0] == case)
    key = name.rsplit(".", 1)[0]
    assert manifest["records"] == len(IMAGE_CASES) and manifest["records_lost"] == 0
    row, norm = rows[key], extra["norm"][key]
    if want is None or want.startswith("note:"):
        assert row["status"] != "invalid", row["reason"]
        if want:
            assert any(want[5:] in n for n in norm["notes"]), norm["notes"]
        assert key not in extra["q"]
        outcome = "processed" + (f" ({want[5:]})" if want else "")
    else:
        assert row["status"] == "invalid" and want in (row["reason"] or ""), row["reason"]
        assert extra["q"][key]["source_shard"] == "images-000.tar"
        assert extra["q"][key]["source_position"] == row["source_position"]
        outcome = f"invalid: {row['reason'][:70]}"
    chaos.record(f"image: {case}", outcome, lost(manifest, len(IMAGE_CASES)) if case == IMAGE_CASES[0][0] else 0)


def test_image_tar_unsafe_members_and_garbage(tmp_path: Path, chaos) -> None:  # noqa: ANN001
    """The image reader refuses link / absolute / ``..`` members and turns a garbage tar into a record."""
    from charmeta.images.ingest import read_webdataset

    p = tmp_path / "x.tar"
    with tarfile.open(p, "w", format=tarfile.USTAR_FORMAT) as tar:
        tar_add(tar, "a.png", GOOD_PNG)
        tar_add(tar, "b.png", kind=tarfile.SYMTYPE, linkname="/etc/passwd")
        tar_add(tar, "../c.png", GOOD_PNG)
        tar_add(tar, "/abs/d.png", GOOD_PNG)
        tar_add(tar, "e.png", GOOD_PNG)
    recs = list(read_webdataset(p))
    assert [r.id for r in recs] == ["a", "b", "../c", "/abs/d", "e"]
    assert recs[0].preset_reason is None and recs[4].preset_reason is None and recs[0].data == GOOD_PNG
    assert "symlink" in recs[1].preset_reason and recs[1].data is None
    assert "escapes the archive" in recs[2].preset_reason and recs[2].data is None
    assert "absolute path" in recs[3].preset_reason and recs[3].data is None
    g = tmp_path / "g.tar"
    g.write_bytes(b"\x00garbage" * 300)
    (rec,) = list(read_webdataset(g))
    assert rec.preset_reason and "tar" in rec.preset_reason
    chaos.record("image tar: symlink, ../, absolute members", "3 refused (specific reasons), 2 ok", 0)
