"""Guarded image decode: bytes in, an 8-bit RGB ``PIL.Image`` or a specific reason out.

Why guarded: image shards come from scrapes. A zero-byte file, a truncated
JPEG, an HTML page saved as ``.jpg``, a 50k x 50k header or a tiny PNG that
inflates to gigabytes must each become an ``invalid`` record with a reason a
person can act on - never an exception that fails the shard, never an OOM.
Awkward-but-valid inputs (CMYK, 16-bit, palette + transparency, animations,
EXIF rotation) are converted, and the conversion is recorded in ``notes``.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field

from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

# Never let PIL silently pad a truncated file with grey.
ImageFile.LOAD_TRUNCATED_IMAGES = False

#: Background used when compositing transparency (white, like most viewers show line art).
BACKGROUND = (255, 255, 255)


@dataclass
class DecodedImage:
    """A decoded image plus what was done to it on the way."""

    image: Image.Image | None
    reason: str | None = None
    format: str | None = None
    width: int = 0  # declared size, before EXIF transpose
    height: int = 0
    mode: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.image is not None


def _fail(reason: str, **kw: object) -> DecodedImage:
    return DecodedImage(image=None, reason=reason, **kw)  # type: ignore[arg-type]


def _to_8bit_rgb(img: Image.Image, notes: list[str]) -> Image.Image:
    """Convert any PIL mode to RGB, compositing alpha on white and scaling 16-bit to 8-bit."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16B", "I;16L", "I", "I;16N"):
        import numpy as np

        arr = np.asarray(img).astype("float64")
        hi = 65535.0 if mode.startswith("I;16") or arr.max() > 255 else 255.0
        notes.append(f"16-bit ({mode}) scaled to 8-bit")
        return Image.fromarray((arr / hi * 255.0).clip(0, 255).astype("uint8"), "L").convert("RGB")
    if mode == "F":
        notes.append("float image scaled to 8-bit")
        return img.convert("L").convert("RGB")
    if mode == "CMYK":
        notes.append("CMYK converted to RGB")
        return img.convert("RGB")
    if mode == "P":
        if "transparency" in img.info:
            notes.append("palette with transparency composited on white")
            img = img.convert("RGBA")
        else:
            return img.convert("RGB")
    if mode in ("LA", "PA", "La"):
        img = img.convert("RGBA")
    if mode == "RGBa":
        img = img.convert("RGBA")
    if img.mode == "RGBA":
        if mode not in ("P",):
            notes.append("alpha composited on white")
        bg = Image.new("RGB", img.size, BACKGROUND)
        bg.paste(img, mask=img.getchannel("A"))
        return bg
    if mode in ("RGBX", "YCbCr", "LAB", "HSV"):
        return img.convert("RGB")
    if mode in ("1", "L"):
        return img.convert("RGB")
    notes.append(f"mode {mode} converted to RGB")
    return img.convert("RGB")


_MAGIC = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF8", "GIF"), (b"BM", "BMP"))


def _sniff(data: bytes) -> str | None:
    """Format from magic bytes, to tell a damaged image from a non-image."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return next((name for sig, name in _MAGIC if data.startswith(sig)), None)


def _declared_size(data: bytes) -> tuple[int, int] | None:
    """Header-only size, bypassing PIL's bomb check (used only to word the refusal)."""
    Image.init()
    for fid in Image.ID:
        factory, accept = Image.OPEN[fid]
        try:
            if accept is not None and not accept(data[:16]):
                continue
            return factory(io.BytesIO(data)).size  # parses the header, decodes nothing
        except Exception:
            continue
    return None


def decode_image(
    data: bytes | bytearray | memoryview | None,
    *,
    ext: str | None = None,
    max_bytes: int = 64 * 1024 * 1024,
    max_side: int = 16_384,
    max_pixels: int = 40_000_000,
) -> DecodedImage:
    """Decode ``data`` to an 8-bit RGB image, or say precisely why it cannot be used.

    ``ext`` (e.g. ``"jpg"``) only improves the messages: the format is always
    sniffed from the bytes, so a PNG named ``.jpg`` decodes fine.
    """
    if data is None:
        return _fail("missing image bytes (null)")
    data = bytes(data)
    if len(data) == 0:
        return _fail("zero-byte image")
    if len(data) > max_bytes:
        return _fail(f"image file too large ({len(data)} bytes > limit {max_bytes})")
    said = f" (extension .{ext.lstrip('.')})" if ext else ""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        size = _declared_size(data)
        if size and (size[0] > max_side or size[1] > max_side):
            return _fail(f"declared size {size[0]}x{size[1]} exceeds the limit of {max_side} px per side")
        return _fail(f"decompression bomb: {exc}")
    except Image.DecompressionBombWarning as exc:
        return _fail(f"decompression bomb: {exc}")
    except UnidentifiedImageError:
        magic = _sniff(data)
        if magic:
            return _fail(f"corrupt {magic}: signature present but the header cannot be parsed (truncated or damaged)")
        head = data[:16].lstrip()[:5].lower()
        kind = "text/HTML" if head[:1] in (b"<", b"{") or head.isascii() and head.isalnum() else "unknown bytes"
        return _fail(f"not an image{said}: content is {kind}, not a recognised image format")
    except Exception as exc:  # corrupt headers raise all sorts of things
        return _fail(f"unreadable image header{said}: {type(exc).__name__}: {exc}")

    fmt = img.format or "unknown"
    w, h = img.size
    meta = dict(format=fmt, width=w, height=h, mode=img.mode)
    if w <= 0 or h <= 0:
        return _fail(f"{fmt} declares an empty size {w}x{h}", **meta)
    if w > max_side or h > max_side:
        return _fail(f"declared size {w}x{h} exceeds the limit of {max_side} px per side", **meta)
    if w * h > max_pixels:
        ratio = w * h / max(len(data), 1)
        return _fail(
            f"decompression bomb: {w}x{h} = {w * h} pixels > limit {max_pixels} ({ratio:.0f} pixels per file byte)",
            **meta,
        )
    notes: list[str] = []
    n_frames = getattr(img, "n_frames", 1) or 1
    if n_frames > 1:
        notes.append(f"animated {fmt} ({n_frames} frames): first frame used")
        img.seek(0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img.load()
    except OSError as exc:
        msg = str(exc)
        if "truncated" in msg or "broken data stream" in msg or "unrecognized data stream" in msg:
            return _fail(f"truncated {fmt}: {msg}", **meta)
        return _fail(f"corrupt {fmt}: {msg}", **meta)
    except Exception as exc:
        return _fail(f"corrupt {fmt}: {type(exc).__name__}: {exc}", **meta)

    orientation = 1
    try:
        orientation = int(img.getexif().get(0x0112, 1) or 1)
    except Exception:
        orientation = 1
    if orientation not in (0, 1):
        try:
            img = ImageOps.exif_transpose(img)
            notes.append(f"EXIF orientation {orientation} applied")
        except Exception as exc:
            notes.append(f"EXIF orientation {orientation} ignored ({type(exc).__name__})")
    try:
        rgb = _to_8bit_rgb(img, notes)
    except Exception as exc:
        return _fail(f"cannot convert {fmt} mode {meta['mode']} to RGB: {exc}", **meta)
    return DecodedImage(image=rgb, notes=notes, **meta)  # type: ignore[arg-type]
