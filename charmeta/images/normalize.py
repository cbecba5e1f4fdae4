"""``normalized_images``: guarded decode + letterbox to the model's input + hashes, as Arrow.

Why letterbox (pad, not crop): a centre crop cuts off hair ends and the second
character at the edge of a wide picture, exactly the evidence Hair Length and
the character counter need. The normalized pixels are stored PNG-encoded at the
model size, so embedding re-runs never touch the original (possibly huge) file.
"""

from __future__ import annotations

import io
import json
import tarfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from charmeta.images.decode import BACKGROUND, DecodedImage, decode_image
from charmeta.images.hashing import phash, sha256_bytes
from charmeta.images.ingest import ImageRecord

NORMALIZED_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("source_shard", pa.string()),
        pa.field("source_position", pa.int64()),
        pa.field("caption", pa.string()),
        pa.field("status", pa.string(), nullable=False),  # ok | invalid
        pa.field("reason", pa.string()),
        pa.field("sha256", pa.string()),
        pa.field("phash", pa.string()),
        pa.field("format", pa.string()),
        pa.field("orig_width", pa.int32()),
        pa.field("orig_height", pa.int32()),
        pa.field("notes", pa.list_(pa.string())),
        pa.field("size", pa.int32()),
        pa.field("pixel_count", pa.int32()),  # characters counted on the full-resolution image
        pa.field("counter", pa.string()),
        pa.field("pixel_colors", pa.string()),  # JSON: per face, hair / eye colour calls (colors.to_json)
        pa.field("tagger_tags", pa.string()),  # JSON: the WD tagger's tags over threshold (tagger.result_to_json)
        pa.field("vlm_caption", pa.string()),  # the VLM captioner's caption (images.captioner), read as prose later
        pa.field("pixels", pa.binary()),  # PNG of the letterboxed RGB image, size x size
    ]
)


def letterbox(img: Image.Image, size: int, fill: tuple[int, int, int] = BACKGROUND) -> Image.Image:
    """Resize the long side to ``size`` keeping aspect, pad the rest with ``fill``."""
    w, h = img.size
    scale = size / max(w, h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    if (nw, nh) != (w, h):
        # reduce() first: a cheap box-filter shrink for big photos, then one precise resample
        factor = min(w // nw, h // nh)
        if factor >= 2:
            img = img.reduce(factor)
        img = img.resize((nw, nh), Image.Resampling.BICUBIC)
    if nw == size and nh == size:
        return img
    canvas = Image.new("RGB", (size, size), fill)
    canvas.paste(img, ((size - nw) // 2, (size - nh) // 2))
    return canvas


def encode_png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def decode_png(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


def normalize_record(
    rec: ImageRecord,
    size: int,
    limits: dict | None = None,
    counter: Any = None,
    tagger: Any = None,
    cache: Any = None,
    captioner: Any = None,
) -> tuple[dict, DecodedImage | None]:
    """One ``ImageRecord`` to one normalized row (and the decoded image).

    ``counter`` (a ``CharacterCounter``) runs here, on the full-resolution
    decode, because faces shrink below detector size once letterboxed.
    """
    row = {
        "id": rec.id,
        "source_shard": rec.source,
        "source_position": rec.position,
        "caption": rec.caption,
        "status": "invalid",
        "reason": rec.preset_reason,
        "sha256": None,
        "phash": None,
        "format": None,
        "orig_width": None,
        "orig_height": None,
        "notes": [],
        "size": size,
        "pixels": None,
        "pixel_count": None,
        "counter": None,
        "pixel_colors": None,
        "tagger_tags": None,
        "vlm_caption": None,
    }
    if rec.preset_reason:
        return row, None
    if rec.data:
        row["sha256"] = sha256_bytes(rec.data)
    dec = decode_image(rec.data, ext=rec.ext, **(limits or {}))
    row.update(format=dec.format, orig_width=dec.width or None, orig_height=dec.height or None, notes=dec.notes)
    if not dec.ok:
        row["reason"] = dec.reason
        return row, dec
    try:
        boxed = letterbox(dec.image, size)  # type: ignore[arg-type]
        row.update(status="ok", reason=None, phash=phash(dec.image), pixels=encode_png(boxed))  # type: ignore[arg-type]
        if counter is not None:
            res = counter.count(dec.image)
            from charmeta.images.colors import to_json

            row.update(pixel_count=res.count, counter=res.backend, pixel_colors=to_json(res.colors))
        if tagger is not None:  # on the full-resolution decode, like the counter (the tagger letterboxes itself)
            from charmeta.images.tagger import result_to_json, tag_images

            probs = tag_images(tagger, {row["sha256"]: dec.image}, cache)[row["sha256"]]
            row["tagger_tags"] = result_to_json(tagger.decode(probs))
        if captioner is not None:  # full-resolution decode too: the processor resizes to its own input
            from charmeta.images.captioner import caption_images

            row["vlm_caption"] = caption_images(captioner, {row["sha256"]: dec.image}, cache)[row["sha256"]]
    except Exception as exc:  # a decoder bug on one file must not fail the partition
        row["reason"] = f"normalize failed: {type(exc).__name__}: {exc}"
    return row, dec


def normalize_batch(
    records: Iterable[ImageRecord],
    size: int = 224,
    limits: dict | None = None,
    counter: Any = None,
    tagger: Any = None,
    cache: Any = None,
    captioner: Any = None,
) -> pa.Table:
    """Records to a ``NORMALIZED_SCHEMA`` table, same order; bad images are ``invalid`` rows."""
    rows = [normalize_record(r, size, limits, counter, tagger, cache, captioner)[0] for r in records]
    return pa.table({n: [r[n] for r in rows] for n in NORMALIZED_SCHEMA.names}, schema=NORMALIZED_SCHEMA)


def write_partition(table: pa.Table, out: str | Path, fmt: str = "parquet") -> Path:
    """Write one partition as Parquet (zstd) or as a WebDataset tar (``.png`` + ``.json`` per key)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    if fmt == "parquet":
        pq.write_table(table, tmp, compression="zstd")
    elif fmt in ("wds", "webdataset"):
        now = time.time()
        with tarfile.open(tmp, "w") as tf:
            for row in table.to_pylist():
                key = row["id"].replace("/", "__").replace(".", "_")
                meta = {k: v for k, v in row.items() if k != "pixels"}
                members = [("json", json.dumps(meta).encode())]
                if row["pixels"] is not None:
                    members.insert(0, ("png", row["pixels"]))
                for ext, payload in members:
                    info = tarfile.TarInfo(f"{key}.{ext}")
                    info.size, info.mtime = len(payload), now
                    tf.addfile(info, io.BytesIO(payload))
    else:
        raise ValueError(f"unknown partition format {fmt!r}: use 'parquet' or 'wds'")
    tmp.replace(out)  # atomic: a crashed run never leaves a half partition under the final name
    return out
