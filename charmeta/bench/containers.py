"""The same captioned images packed in every container layout image datasets ship in.

Why one packer: the container tests (identical records whatever the layout) and
the container bench (images/s read + decoded per layout) must compare exactly
the same samples. Layouts written by ``write_layouts``:

* ``webdataset/shard-000000.tar``  ``<key>.png`` + ``<key>.txt`` members
* ``zip/shard-000000.zip``         the same members, deflated
* ``tgz/shard-000000.tar.gz``      the tar, gzip-compressed
* ``parquet/train-00000.parquet``  ``__key__``, ``image`` (HF ``Image``: ``{bytes, path}``), ``text``
* ``arrow/``                       a ``save_to_disk`` folder (IPC stream, ``state.json``, ``dataset_info.json``)
* ``imagefolder/``                 ``<key>.png`` files + ``metadata.jsonl`` (``file_name``, ``text``)
* ``sidecars/``                    ``<key>.png`` + ``<key>.caption``

Only pyarrow and the standard library: the layouts are written the way
``datasets`` writes them (feature metadata included) without importing it.
"""

from __future__ import annotations

import io
import json
import tarfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

Sample = tuple[str, bytes, str]  # key, encoded image, caption
LAYOUTS = ("webdataset", "zip", "tgz", "parquet", "arrow", "imagefolder", "sidecars")

_HF_FEATURES = {
    "__key__": {"dtype": "string", "_type": "Value"},
    "image": {"_type": "Image"},
    "text": {"dtype": "string", "_type": "Value"},
}
_MTIME = 1_700_000_000  # fixed so archives are byte-identical run to run


def _table(samples: Sequence[Sample], ext: str = "png") -> pa.Table:
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    meta = {b"huggingface": json.dumps({"info": {"features": _HF_FEATURES}}).encode()}
    schema = pa.schema([("__key__", pa.string()), ("image", image_type), ("text", pa.string())], metadata=meta)
    return pa.table(
        {
            "__key__": [k for k, _, _ in samples],
            "image": [{"bytes": b, "path": f"{k}.{ext}"} for k, b, _ in samples],
            "text": [c for _, _, c in samples],
        },
        schema=schema,
    )


def _tar(path: Path, samples: Sequence[Sample], mode: str, ext: str = "png") -> None:
    with tarfile.open(path, mode) as tf:
        for key, img, cap in samples:
            for name, data in ((f"{key}.{ext}", img), (f"{key}.txt", cap.encode("utf-8"))):
                info = tarfile.TarInfo(name)
                info.size, info.mtime = len(data), _MTIME
                tf.addfile(info, io.BytesIO(data))


def write_layouts(
    samples: Sequence[Sample], root: Path, layouts: Sequence[str] = LAYOUTS, ext: str = "png"
) -> dict[str, Path]:
    """Write ``samples`` (images encoded as ``ext``) in each layout under ``root/<layout>``;
    returns layout -> source path."""
    out: dict[str, Path] = {}
    for layout in layouts:
        d = root / layout
        d.mkdir(parents=True, exist_ok=True)
        if layout == "webdataset":
            _tar(d / "shard-000000.tar", samples, "w", ext)
        elif layout == "tgz":
            _tar(d / "shard-000000.tar.gz", samples, "w:gz", ext)
        elif layout == "zip":
            with zipfile.ZipFile(d / "shard-000000.zip", "w", zipfile.ZIP_DEFLATED) as zf:
                for key, img, cap in samples:
                    zf.writestr(zipfile.ZipInfo(f"{key}.{ext}", (2023, 11, 14, 0, 0, 0)), img)
                    zf.writestr(zipfile.ZipInfo(f"{key}.txt", (2023, 11, 14, 0, 0, 0)), cap.encode("utf-8"))
        elif layout == "parquet":
            pq.write_table(_table(samples, ext), d / "train-00000.parquet", row_group_size=8)
        elif layout == "arrow":
            table = _table(samples, ext)
            with pa.OSFile(str(d / "data-00000-of-00001.arrow"), "wb") as sink:
                with pa.ipc.new_stream(sink, table.schema) as writer:
                    for batch in table.to_batches(max_chunksize=8):
                        writer.write_batch(batch)
            (d / "state.json").write_text(
                json.dumps(
                    {
                        "_data_files": [{"filename": "data-00000-of-00001.arrow"}],
                        "_fingerprint": "charmeta",
                        "_format_type": None,
                        "_split": "train",
                    }
                )
            )
            (d / "dataset_info.json").write_text(json.dumps({"features": _HF_FEATURES}))
        elif layout == "imagefolder":
            with open(d / "metadata.jsonl", "w", encoding="utf-8") as fh:
                for key, img, cap in samples:
                    (d / f"{key}.{ext}").write_bytes(img)
                    fh.write(json.dumps({"file_name": f"{key}.{ext}", "text": cap}) + "\n")
        elif layout == "sidecars":
            for key, img, cap in samples:
                (d / f"{key}.{ext}").write_bytes(img)
                (d / f"{key}.caption").write_text(cap, encoding="utf-8")
        else:
            raise ValueError(f"unknown layout {layout!r}; choose from {', '.join(LAYOUTS)}")
        out[layout] = d
    return out


def drawn_samples(n: int, captions: Sequence[str], size: int = 96, seed: int = 0) -> list[Sample]:
    """``n`` PNG drawings (PIL: a face-like figure, hair and eyes in the caption's colours
    where it names them) with their captions; deterministic for a seed."""
    import random

    from PIL import Image, ImageDraw

    colours = {
        "blonde": (240, 210, 90),
        "black": (20, 20, 20),
        "red": (200, 30, 30),
        "blue": (40, 70, 200),
        "green": (40, 160, 60),
        "white": (240, 240, 240),
        "brown": (110, 70, 30),
        "pink": (240, 140, 180),
        "purple": (120, 50, 160),
    }
    rng = random.Random(seed)
    out = []
    for i in range(n):
        cap = captions[i % len(captions)]
        hair = next((c for w, c in colours.items() if f"{w}_hair" in cap or f"{w} hair" in cap), (90, 90, 90))
        eyes = next((c for w, c in colours.items() if f"{w}_eyes" in cap or f"{w} eyes" in cap), (60, 60, 60))
        img = Image.new("RGB", (size + rng.randrange(0, 32), size), (rng.randrange(200, 256),) * 3)
        dr = ImageDraw.Draw(img)
        w, h = img.size
        dr.ellipse((w * 0.2, h * 0.05, w * 0.8, h * 0.75), fill=hair)
        dr.ellipse((w * 0.3, h * 0.2, w * 0.7, h * 0.7), fill=(250, 220, 200))
        for ex in (0.4, 0.6):
            dr.ellipse((w * ex - 4, h * 0.4 - 3, w * ex + 4, h * 0.4 + 3), fill=eyes)
        dr.rectangle((w * 0.3, h * 0.75, w * 0.7, h), fill=(rng.randrange(256), rng.randrange(256), 120))
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        out.append((f"{i:06d}", buf.getvalue(), cap))
    return out


def read_and_decode(path: str | Path) -> dict[str, object]:
    """Discover a layout, stream its raw rows and read + decode every image the way the image
    stage does (``image_bytes`` then the guarded ``decode_image``); images/s over the whole pass."""
    import time

    from charmeta.images.decode import decode_image
    from charmeta.sources import RAW_SCHEMA, Source, iter_shard
    from charmeta.sources.image_bytes import iter_image_bytes

    t0 = time.perf_counter()
    rows = images = decoded = pixels = 0
    for spec in Source(str(path)).discover():
        batches = list(iter_shard(spec))
        table = pa.Table.from_batches(batches, schema=RAW_SCHEMA)
        rows += table.num_rows
        for ib in iter_image_bytes(
            spec, table.select(["id", "text", "source_position", "reason", "image_member"]).to_pylist()
        ):
            images += 1
            dec = decode_image(ib.data, ext=ib.ext)
            if dec.ok:
                decoded += 1
                pixels += dec.width * dec.height
    seconds = time.perf_counter() - t0
    return {
        "rows": rows,
        "images": images,
        "decoded": decoded,
        "megapixels": round(pixels / 1e6, 1),
        "seconds": seconds,
    }


def decode_only(path: str | Path) -> dict[str, object]:
    """The floor of ``read_and_decode``: the tar's images already in memory, decode only."""
    import time

    from charmeta.images.decode import decode_image

    with tarfile.open(Path(path) / "shard-000000.tar") as tf:
        blobs = [tf.extractfile(m).read() for m in tf if m.isfile() and not m.name.endswith(".txt")]  # type: ignore[union-attr]
    t0 = time.perf_counter()
    decoded = sum(1 for b in blobs if decode_image(b).ok)
    return {"rows": len(blobs), "images": len(blobs), "decoded": decoded, "seconds": time.perf_counter() - t0}


def bench_containers(work: Path, n: int, seed: int, timeout: float, log=print) -> list:  # noqa: ANN001
    """One bench row per layout: the same ``n`` JPEGs (512x384, realistic decode cost) read and
    decoded from each container in a child process (its own peak RSS)."""
    from charmeta.bench.stages import run_child, worker_cmd
    from charmeta.images.bench import synthetic_records

    root = work / f"containers-{n}-{seed}"
    if not (root / ".complete").exists():
        samples = [(f"{i:06d}", r.data, r.caption or "") for i, r in enumerate(synthetic_records(n, seed=seed))]
        write_layouts(samples, root, ext="jpg")
        (root / ".complete").write_text("ok")
    out = []
    floor = run_child(
        "decode only (in memory)",
        worker_cmd("decode", "--glob", str(root / "webdataset")),
        n,
        json_result=True,
        timeout=timeout,
    )
    if floor.available:
        floor.note = f"{floor.extra.get('decoded')}/{n} decoded; the floor of the rows below, 1 core"
    out.append(floor)
    for layout in LAYOUTS:
        res = run_child(
            f"read+decode {layout}",
            worker_cmd("containers", "--glob", str(root / layout)),
            n,
            json_result=True,
            timeout=timeout,
        )
        if res.available:
            ok = res.extra.get("decoded")
            res.note = f"{ok}/{n} decoded; discover + raw rows + image bytes + decode, 1 core"
            if floor.available and floor.seconds > 0 and res.seconds > 0:
                res.note += f"; {res.seconds / floor.seconds:.2f}x decode only"
        out.append(res)
        log(f"  {layout}: {res.rows_per_s or 0:,.0f} images/s")
    return out
