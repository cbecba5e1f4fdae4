"""``charmeta inspect SOURCE``: how a dataset will be read, before 5M entries are run.

Why: the layout of a new dataset (which container, which column is the caption,
which holds the image) decides whether a run yields records or a partition of
``invalid`` rows. Discovery already knows all of it; this module reports it -
files by format, partitions, the text / image / id field per format, and one
sample row per format with its image decoded - reading only footers, central
directories and the first rows (remote sources stay ranged reads).
"""

from __future__ import annotations

import io
import tarfile
import zipfile
from collections import Counter
from typing import Any

from charmeta.sources import arrowio, layouts
from charmeta.sources.discover import Source
from charmeta.sources.readers import _pick, open_uri
from charmeta.sources.shards import iter_shard
from charmeta.sources.spec import CAPTION_EXTS, ID_FIELD_CANDIDATES, TEXT_FIELD_CANDIDATES, ShardSpec

_TEXT_EXTS = ("txt", "caption", "text", "tags", "json")


def _table_fields(spec: ShardSpec) -> dict[str, Any]:
    if spec.fmt == "parquet":
        import pyarrow.parquet as pq

        with open_uri(spec.uri, exact=True) as fh:
            schema = pq.ParquetFile(fh).schema_arrow
    else:
        schema = arrowio.schema_of(spec.uri)
    names = schema.names
    return {
        "columns": names,
        "text_field": _pick(names, spec.text_field, TEXT_FIELD_CANDIDATES),
        "id_field": _pick(names, None, ID_FIELD_CANDIDATES),
        "image_field": spec.image_field,
        "image_type": str(schema.field(spec.image_field).type) if spec.image_field else None,
    }


def _archive_fields(spec: ShardSpec) -> dict[str, Any]:
    """Member extensions of the first samples (zip: central directory; tar: first members)."""
    exts: Counter[str] = Counter()
    with open_uri(spec.uri) as fh:
        if spec.fmt == "zip":
            with zipfile.ZipFile(fh) as zf:
                names = [i.filename for i in zf.infolist()[:200] if not i.is_dir()]
        else:
            names = []
            with tarfile.open(fileobj=fh, mode="r|*") as tar:
                for m in tar:
                    names.append(m.name)
                    if len(names) >= 200:
                        break
    for n in names:
        exts[n.rsplit("/", 1)[-1].partition(".")[2].lower()] += 1
    text = next((e for e in _TEXT_EXTS if e in exts), None)
    image = next((e for e in exts if e.rsplit(".", 1)[-1] in ("jpg", "jpeg", "png", "webp", "bmp", "gif")), None)
    return {
        "text_field": f"<key>.{text} member" if text else None,
        "image_field": f"<key>.{image} member" if image else None,
        "id_field": "<key> (member path up to the first dot)",
        "member_extensions": dict(exts.most_common()),
    }


def fields_of(spec: ShardSpec) -> dict[str, Any]:
    """Which fields a shard's reader uses for the caption, the image and the id."""
    if spec.fmt in ("parquet", "arrow"):
        return _table_fields(spec)
    if spec.fmt in ("zip", "tar"):
        return _archive_fields(spec)
    if spec.fmt == "imagefolder":
        return {
            "text_field": spec.text_field or f"first of {', '.join(TEXT_FIELD_CANDIDATES)} in each record",
            "image_field": "file_name (relative to the metadata file's folder)",
            "id_field": f"first of {', '.join(ID_FIELD_CANDIDATES)}, else file_name up to its first dot",
        }
    if spec.fmt == "txt":
        return {
            "text_field": f"sidecar <stem>.{'/.'.join(CAPTION_EXTS)} (whole file)",
            "image_field": "image file with the same stem" if any(m[1] for m in spec.members) else None,
            "id_field": "file stem",
        }
    if spec.fmt == "broken":
        return {"error": spec.error}
    return {
        "text_field": spec.text_field or f"first of {', '.join(TEXT_FIELD_CANDIDATES)}",
        "id_field": f"first of {', '.join(ID_FIELD_CANDIDATES)}, else <file>:<position>",
        "image_field": None,
    }


def sample_row(spec: ShardSpec) -> dict[str, Any] | None:
    """The shard's first row as the pipeline will see it, with its image decoded (header only)."""
    batches = iter_shard(spec, batch_rows=8)
    try:
        first = next(batches, None)
    finally:
        batches.close()
    if first is None or first.num_rows == 0:
        return None
    row = first.slice(0, 1).to_pylist()[0]
    text = row.get("text")
    out = {k: row[k] for k in ("id", "source_position", "reason", "image_member")}
    out["text"] = text if text is None or len(text) <= 300 else text[:300] + "..."
    if row.get("image_member") and spec.holds_images:
        from charmeta.sources.image_bytes import iter_image_bytes

        gen = iter_image_bytes(spec, [row])
        try:
            ib = next(gen, None)
        finally:
            gen.close()
        if ib is not None:
            out["image"] = _image_info(ib.data, ib.reason)
    return out


def _image_info(data: bytes | None, reason: str | None) -> dict[str, Any]:
    if data is None:
        return {"bytes": 0, "problem": reason or "no image in this row"}
    info: dict[str, Any] = {"bytes": len(data)}
    try:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as im:
            info.update(format=im.format, width=im.width, height=im.height, mode=im.mode)
    except ImportError:
        info["problem"] = "Pillow is not installed: not decoded"
    except Exception as exc:
        info["problem"] = f"does not decode: {type(exc).__name__}: {exc}"
    return info


def describe(source: Source, samples: bool = True) -> dict[str, Any]:
    """Everything ``charmeta inspect`` prints, as plain data (``--json`` prints it as is)."""
    shards = source.discover()
    files = source.listed
    by_fmt: dict[str, dict[str, int]] = {}
    for f in files:
        d = by_fmt.setdefault(f.fmt, {"files": 0, "bytes": 0})
        d["files"] += 1
        try:
            d["bytes"] += int(f.fingerprint.split("|", 1)[0])
        except ValueError:
            pass
    formats: dict[str, dict[str, Any]] = {}
    for s in shards:
        entry = formats.get(s.fmt)
        if entry is None:
            entry = formats[s.fmt] = {"partitions": 0, "first_partition": s.key}
            try:
                entry.update(fields_of(s))
            except Exception as exc:
                entry["problem"] = f"cannot read its fields: {type(exc).__name__}: {exc}"
            if samples:
                try:
                    entry["sample"] = sample_row(s)
                except Exception as exc:
                    entry["sample"] = {"problem": f"{type(exc).__name__}: {exc}"}
        entry["partitions"] += 1
    return {
        "source": source.uri,
        "readme_config": source.followed_config,
        "files": by_fmt,
        "partitions": [
            {
                "key": s.key,
                "format": s.fmt,
                "file": s.relpath,
                "rows": f"{s.start}-{s.stop}" if s.stop is not None else f"{s.start}-end",
                "images": s.holds_images,
            }
            for s in shards
        ],
        "formats": formats,
        "image_field_setting": source.image_field,
        "known_layouts": sorted(set(layouts.FORMAT_BY_EXT.values()) | {"imagefolder", "image"}),
    }


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def render(d: dict[str, Any], max_partitions: int = 20) -> str:
    """The report as aligned text."""
    lines = [f"source: {d['source']}"]
    if d.get("readme_config"):
        c = d["readme_config"]
        lines.append(f"README config: {c['name']!r}  data_files: {', '.join(c['data_files'])}")
    lines.append("files by format:")
    if not d["files"]:
        lines.append("  (no readable files)")
    for fmt, v in sorted(d["files"].items()):
        label = "image files" if fmt == "image" else fmt
        lines.append(f"  {label:<12} {v['files']:>7} files {_size(v['bytes']):>10}")
    parts = d["partitions"]
    lines.append(f"partitions: {len(parts)}")
    for p in parts[:max_partitions]:
        img = "  images" if p["images"] else ""
        lines.append(f"  {p['key']:<60} {p['format']:<11} rows {p['rows']}{img}")
    if len(parts) > max_partitions:
        lines.append(f"  ... {len(parts) - max_partitions} more (--json lists all)")
    for fmt, e in d["formats"].items():
        lines.append(f"format {fmt} ({e['partitions']} partitions):")
        for k in ("text_field", "image_field", "image_type", "id_field", "error", "problem"):
            if e.get(k) is not None:
                lines.append(f"  {k.replace('_', ' '):<12} {e[k]}")
        if e.get("columns"):
            lines.append(f"  columns      {', '.join(e['columns'])}")
        if e.get("member_extensions"):
            lines.append(f"  members      {', '.join(f'.{k} x{v}' for k, v in e['member_extensions'].items())}")
        s = e.get("sample")
        if s:
            lines.append("  sample row:")
            for k in ("id", "text", "reason", "image_member", "problem"):
                if s.get(k) is not None:
                    lines.append(f"    {k:<12} {s[k]}")
            im = s.get("image")
            if im:
                desc = (
                    f"{im.get('format')} {im.get('width')}x{im.get('height')} {im.get('mode')}, {im['bytes']} bytes"
                    if "width" in im
                    else f"{im['bytes']} bytes"
                )
                lines.append(f"    {'image':<12} {desc}" + (f"  PROBLEM: {im['problem']}" if im.get("problem") else ""))
    return "\n".join(lines)
