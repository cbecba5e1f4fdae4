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


def _model_rows(pending: list[tuple[dict, Any]], tagger: Any, captioner: Any, cache: Any) -> None:
    """Tag and caption a batch of normalized rows (row, full-resolution decode): one cache lookup
    and one model call per model for the misses. A batch that fails is retried row by row, so a
    bad picture only costs its own tags / caption (its row keeps ``ok`` and says why in
    ``reason``, as when each picture was its own call)."""
    if tagger is not None:
        from charmeta.images.tagger import result_to_json, tag_images

        def tag(batch: list[tuple[dict, Any]]) -> None:
            probs = tag_images(tagger, {row["sha256"]: img for row, img in batch}, cache)
            for row, _img in batch:
                row["tagger_tags"] = result_to_json(tagger.decode(probs[row["sha256"]]))

        _batched(tag, pending)
    if captioner is not None:  # full-resolution decode too: the processor resizes to its own input
        from charmeta.images.captioner import caption_images

        def caption(batch: list[tuple[dict, Any]]) -> None:
            got = caption_images(captioner, {row["sha256"]: img for row, img in batch}, cache)
            for row, _img in batch:
                row["vlm_caption"] = got[row["sha256"]]

        _batched(caption, [(row, img) for row, img in pending if row["reason"] is None])


def _batched(fn: Any, pending: list[tuple[dict, Any]]) -> None:
    try:
        fn(pending)
    except Exception as exc:  # a model bug on one file must not fail the partition
        if len(pending) == 1:
            pending[0][0]["reason"] = f"normalize failed: {type(exc).__name__}: {exc}"
            return
        for one in pending:
            _batched(fn, [one])


def normalize_batch(
    records: Iterable[ImageRecord],
    size: int = 224,
    limits: dict | None = None,
    counter: Any = None,
    tagger: Any = None,
    cache: Any = None,
    captioner: Any = None,
    tagger_batch: int = 16,
) -> pa.Table:
    """Records to a ``NORMALIZED_SCHEMA`` table, same order; bad images are ``invalid`` rows.

    The tagger and the captioner see ``tagger_batch`` decoded pictures per call (and per cache
    lookup) instead of one: the model's per-call cost and the cache's per-lookup cost are paid
    once per batch. Only that many full-resolution decodes are held at a time.
    """
    rows: list[dict] = []
    pending: list[tuple[dict, Any]] = []
    models = (tagger is not None) or (captioner is not None)
    for rec in records:
        row, dec = normalize_record(rec, size, limits, counter, None, cache, None)
        rows.append(row)
        if models and row["status"] == "ok" and row["reason"] is None and dec is not None:
            pending.append((row, dec.image))
            if len(pending) >= max(1, tagger_batch):
                _model_rows(pending, tagger, captioner, cache)
                pending = []
    if pending:
        _model_rows(pending, tagger, captioner, cache)
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
