"""Guarded decode: every bad-image case gets a specific reason or a correct conversion."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

from charmeta.images.decode import decode_image

from .conftest import solid


def _png_declaring(w: int, h: int) -> bytes:
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def test_zero_byte():
    assert decode_image(b"").reason == "zero-byte image"


def test_truncated_jpeg_and_png():
    for fmt in ("JPEG", "PNG"):
        data = solid((200, 30, 30), (256, 256), fmt, noise=40)
        dec = decode_image(data[: len(data) // 2])
        assert not dec.ok and dec.reason.startswith(f"truncated {fmt}"), dec.reason


def test_non_image_with_image_extension():
    dec = decode_image(b"<!DOCTYPE html><html><body>404</body></html>", ext="jpg")
    assert not dec.ok and dec.reason.startswith("not an image (extension .jpg)")


def test_decompression_bomb():
    img = Image.new("L", (3000, 3000), 0)  # 9 M pixels of zeros: a few KB as PNG
    buf = io.BytesIO()
    img.save(buf, "PNG")
    assert len(buf.getvalue()) < 100_000
    dec = decode_image(buf.getvalue(), max_pixels=4_000_000)
    assert not dec.ok and dec.reason.startswith("decompression bomb"), dec.reason


def test_declared_50k_by_50k():
    dec = decode_image(_png_declaring(50_000, 50_000))
    assert not dec.ok
    assert dec.reason == "declared size 50000x50000 exceeds the limit of 16384 px per side"


def test_cmyk_converted():
    buf = io.BytesIO()
    Image.new("CMYK", (20, 10), (0, 255, 255, 0)).save(buf, "JPEG")
    dec = decode_image(buf.getvalue())
    assert dec.ok and dec.image.mode == "RGB" and "CMYK converted to RGB" in dec.notes
    r, g, b = dec.image.getpixel((5, 5))
    assert r > 200 and g < 60 and b < 60  # CMY(0,1,1) is red


def test_16bit_scaled():
    arr = np.full((10, 12), 65535, np.uint16)
    arr[:, :6] = 0
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    dec = decode_image(buf.getvalue())
    assert dec.ok and dec.image.mode == "RGB" and any("16-bit" in n for n in dec.notes)
    assert dec.image.getpixel((0, 0)) == (0, 0, 0) and dec.image.getpixel((11, 0)) == (255, 255, 255)


def test_palette_with_transparency_composited_on_white():
    img = Image.new("P", (10, 10), 0)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    img.paste(1, (0, 0, 5, 10))
    buf = io.BytesIO()
    img.save(buf, "PNG", transparency=0)
    dec = decode_image(buf.getvalue())
    assert dec.ok and "palette with transparency composited on white" in dec.notes
    assert dec.image.getpixel((1, 1)) == (255, 0, 0) and dec.image.getpixel((8, 8)) == (255, 255, 255)


def test_animated_gif_and_webp_first_frame():
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    for fmt in ("GIF", "WEBP"):
        buf = io.BytesIO()
        kw = {"lossless": True} if fmt == "WEBP" else {}
        frames[0].save(buf, fmt, save_all=True, append_images=frames[1:], duration=50, loop=0, **kw)
        dec = decode_image(buf.getvalue())
        assert dec.ok and any(n.startswith(f"animated {fmt} (3 frames)") for n in dec.notes), dec.notes
        r, g, b = dec.image.getpixel((8, 8))
        assert r > 200 and g < 50 and b < 50


def test_exif_rotation_applied():
    img = Image.new("RGB", (40, 20), (0, 0, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif)
    dec = decode_image(buf.getvalue())
    assert dec.ok and dec.image.size == (20, 40) and "EXIF orientation 6 applied" in dec.notes


def test_rgba_and_plain_rgb():
    buf = io.BytesIO()
    Image.new("RGBA", (4, 4), (10, 20, 30, 0)).save(buf, "PNG")
    dec = decode_image(buf.getvalue())
    assert dec.ok and dec.image.getpixel((0, 0)) == (255, 255, 255)
    assert decode_image(solid((1, 2, 3))).notes == []
