"""Read one shard as a stream of Arrow record batches of ``RAW_SCHEMA``.

Every input row yields exactly one output row: a row that cannot be read (a
broken JSON line, a CSV row with the wrong field count, a record without a text
field, a tar sample without a caption) becomes a row with ``reason`` set, which
the engine turns into an ``invalid`` record - never a dropped row, never a
crashed shard. Memory is bounded by ``batch_rows`` for Parquet, JSON Lines and
CSV; JSON array files are parsed whole (they are small in practice).
"""

from __future__ import annotations

import csv
import io
import json
import posixpath
import sys
import tarfile
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.compute as pc

from charmeta.parsing import with_rating
from charmeta.pathguard import unsafe_tar_member
from charmeta.sources.spec import ID_FIELD_CANDIDATES, RAW_SCHEMA, REMOTE_BLOCK_SIZE, TEXT_FIELD_CANDIDATES, ShardSpec

Row = tuple[str, str | None, int, str | None, str | None]  # id, text, position, reason, image

TAR_TEXT_EXTS = ("txt", "caption", "text", "tags", "json")
#: Largest text member of a tar read into memory; a caption is at most 64k characters,
#: so anything this big is refused (an ``invalid`` record) instead of filling memory.
MAX_TAR_TEXT_BYTES = 16 * 1024 * 1024
TAR_IMAGE_EXTS = ("jpg", "jpeg", "png", "webp", "bmp", "gif")

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


def open_uri(uri: str, exact: bool = False):  # noqa: ANN201 - a binary file object
    """Open a local path or fsspec URL for reading. Remote files read in 1 MiB blocks, or with
    ``exact`` (Parquet: pyarrow asks for whole footers and column chunks) exactly the ranges
    asked for - a 1 MiB block around a 20 kB text column chunk would fetch the images beside it."""
    fs, path = fsspec.core.url_to_fs(uri)
    if exact:
        return fs.open(path, "rb", block_size=REMOTE_BLOCK_SIZE, cache_type="none")
    return fs.open(path, "rb", block_size=REMOTE_BLOCK_SIZE)


_open = open_uri


def coerce_text(value: Any, field: str) -> tuple[str | None, str | None]:
    """A caption value as text: strings pass, lists of tags are joined with ``", "``."""
    if value is None:
        return None, f"text field {field!r} is null"
    if isinstance(value, str):
        return value, None
    if isinstance(value, (list, tuple)):
        if all(isinstance(v, str) for v in value):
            return ", ".join(value), None
        return None, f"text field {field!r} is a list with non-string items"
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode("utf-8"), None
        except UnicodeDecodeError as exc:
            return None, f"text field {field!r} is not valid UTF-8 (byte {exc.start})"
    return None, f"text field {field!r} must be a string or list of tags, got {type(value).__name__}"


#: A raw post's own rating column / key (g/s/q/e), folded into the caption by ``with_rating``.
_RATING_FIELD = "rating"


def record_to_row(obj: Any, pos: int, spec: ShardSpec) -> Row:
    """One parsed JSON value (object, string or tag list) to a raw row."""
    default_id = f"{spec.relpath}:{pos}"
    if isinstance(obj, str):
        return default_id, obj, pos, None, None
    if isinstance(obj, list):
        text, reason = coerce_text(obj, "<list>")
        return default_id, text, pos, reason, None
    if not isinstance(obj, dict):
        return default_id, None, pos, f"record must be an object, string or tag list, got {type(obj).__name__}", None
    rid = default_id
    for k in ID_FIELD_CANDIDATES:
        v = obj.get(k)
        if v is not None and not isinstance(v, (dict, list)):
            rid = str(v)
            break
    fields = (spec.text_field,) if spec.text_field else TEXT_FIELD_CANDIDATES
    for f in fields:
        if f in obj:
            text, reason = coerce_text(obj[f], f)
            if reason is None and _RATING_FIELD in obj:
                text = with_rating(text, obj[_RATING_FIELD])
            return rid, text, pos, reason, None
    return rid, None, pos, f"no text field (looked for {', '.join(fields)})", None


def row_batches(rows: Iterable[Row], source_shard: str, batch_rows: int) -> Iterator[pa.RecordBatch]:
    """Raw rows as ``RAW_SCHEMA`` batches of at most ``batch_rows`` rows."""
    buf: list[Row] = []
    for r in rows:
        buf.append(r)
        if len(buf) >= batch_rows:
            yield _to_batch(buf, source_shard)
            buf = []
    if buf:
        yield _to_batch(buf, source_shard)


def _to_batch(rows: list[Row], source_shard: str) -> pa.RecordBatch:
    ids, texts, poss, reasons, images = zip(*rows)
    return pa.RecordBatch.from_arrays(
        [
            pa.array(ids, pa.string()),
            pa.array(texts, pa.string()),
            pa.array([source_shard] * len(rows), pa.string()),
            pa.array(poss, pa.int64()),
            pa.array(reasons, pa.string()),
            pa.array(images, pa.string()),
        ],
        schema=RAW_SCHEMA,
    )


def _rows_broken(spec: ShardSpec) -> Iterator[Row]:
    yield f"{spec.relpath}:0", None, 0, spec.error or "unreadable file", None


def _in_range(pos: int, spec: ShardSpec) -> bool:
    return pos >= spec.start and (spec.stop is None or pos < spec.stop)


# -- JSON Lines -----------------------------------------------------------
def _rows_jsonl(spec: ShardSpec) -> Iterator[Row]:
    with _open(spec.uri) as fh:
        line_no = 0
        if spec.byte_start:
            fh.seek(spec.byte_start)
            line_no = spec.start
        for raw in fh:
            pos = line_no
            line_no += 1
            if spec.stop is not None and pos >= spec.stop:
                break
            if pos < spec.start:
                continue
            if not raw.strip():
                continue  # blank lines are not records
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield f"{spec.relpath}:{pos}", None, pos, f"line is not valid UTF-8 (byte {exc.start})", None
                continue
            try:
                obj = json.loads(line.rstrip("\r\n"))
            except ValueError as exc:
                yield f"{spec.relpath}:{pos}", None, pos, f"broken JSON line: {exc.msg} (col {exc.colno})", None
                continue
            yield record_to_row(obj, pos, spec)


# -- JSON document --------------------------------------------------------
def load_json_records(data: bytes) -> tuple[list[Any], str | None]:
    """Records of a JSON document: an array, an object of records, one record, or
    several (pretty-printed) objects one after another. Returns ``(records, error)``."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return [], f"file is not valid UTF-8 (byte {exc.start})"
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg != "Extra data":
            return [], f"file is not valid JSON: {exc.msg} (line {exc.lineno} col {exc.colno})"
        docs, idx, dec = [], 0, json.JSONDecoder()
        while idx < len(text):
            while idx < len(text) and text[idx] in " \t\r\n,":
                idx += 1
            if idx >= len(text):
                break
            try:
                obj, idx = dec.raw_decode(text, idx)
            except json.JSONDecodeError as exc2:
                docs.append(_BrokenTail(f"broken JSON after record {len(docs)}: {exc2.msg}"))
                break
            docs.append(obj)
        return docs, None
    if isinstance(doc, list):
        return doc, None
    if isinstance(doc, dict):
        for k in ("data", "rows", "records", "items"):
            if isinstance(doc.get(k), list):
                return doc[k], None
        if any(k in doc for k in TEXT_FIELD_CANDIDATES):
            return [doc], None
        if doc and all(isinstance(v, dict) for v in doc.values()):  # {"<id>": {...}, ...}
            return [({"id": k, **v} if "id" not in v else v) for k, v in doc.items()], None
        return [doc], None
    return [doc], None


class _BrokenTail:
    def __init__(self, reason: str) -> None:
        self.reason = reason


def _rows_json(spec: ShardSpec) -> Iterator[Row]:
    with _open(spec.uri) as fh:
        data = fh.read()
    records, error = load_json_records(data)
    if error:
        yield f"{spec.relpath}:0", None, 0, error, None
        return
    for pos, obj in enumerate(records):
        if not _in_range(pos, spec):
            continue
        if isinstance(obj, _BrokenTail):
            yield f"{spec.relpath}:{pos}", None, pos, obj.reason, None
            continue
        yield record_to_row(obj, pos, spec)


# -- CSV --------------------------------------------------------------------
def _rows_csv(spec: ShardSpec) -> Iterator[Row]:
    dialect = "excel-tab" if spec.relpath.lower().endswith(".tsv") else "excel"
    with _open(spec.uri) as fh:
        text = io.TextIOWrapper(fh, encoding="utf-8-sig", errors="replace", newline="")
        reader = csv.reader(text, dialect=dialect)
        header = next(reader, None)
        if header is None:
            return
        for pos, values in enumerate(reader):
            if spec.stop is not None and pos >= spec.stop:
                break
            if pos < spec.start:
                continue
            if len(values) != len(header):
                if not any(v.strip() for v in values):
                    continue  # blank line
                yield (
                    f"{spec.relpath}:{pos}",
                    None,
                    pos,
                    f"CSV row has {len(values)} fields, header has {len(header)}",
                    None,
                )
                continue
            yield record_to_row(dict(zip(header, values)), pos, spec)


# -- Parquet ----------------------------------------------------------------
def _pick(names: list[str], configured: str | None, candidates: tuple[str, ...]) -> str | None:
    if configured:
        return configured if configured in names else None
    for c in candidates:
        if c in names:
            return c
    return None


def iter_parquet(spec: ShardSpec, batch_rows: int) -> Iterator[pa.RecordBatch]:
    import pyarrow.parquet as pq

    with open_uri(spec.uri, exact=True) as fh:
        pf = pq.ParquetFile(fh)
        names = pf.schema_arrow.names
        text_col = _pick(names, spec.text_field, TEXT_FIELD_CANDIDATES)
        id_col = _pick(names, None, ID_FIELD_CANDIDATES)
        rating_col = _RATING_FIELD if _RATING_FIELD in names and text_col else None
        image_col = spec.image_field if spec.image_field in names else None
        md = pf.metadata
        stop = spec.stop if spec.stop is not None else md.num_rows
        groups, first_row, row = [], None, 0
        for i in range(md.num_row_groups):
            n = md.row_group(i).num_rows
            if row + n > spec.start and row < stop:
                groups.append(i)
                first_row = row if first_row is None else first_row
            row += n
        if not groups:
            return
        cols = [c for c in (text_col, id_col, rating_col) if c]
        pos = first_row
        if not cols and image_col:  # images without captions or ids: position-only rows
            for s in range(spec.start, stop, batch_rows):
                yield _parquet_batch(
                    pa.record_batch({}, schema=pa.schema([])),
                    None,
                    None,
                    s,
                    spec,
                    n=min(s + batch_rows, stop) - s,
                    image_col=image_col,
                )
            return
        if not cols:  # no usable column: every row is invalid, but still one row per input
            for s in range(spec.start, stop, batch_rows):
                e = min(s + batch_rows, stop)
                rows = [
                    (
                        f"{spec.relpath}:{p}",
                        None,
                        p,
                        f"no text column (looked for {spec.text_field or ', '.join(TEXT_FIELD_CANDIDATES)})",
                        None,
                    )
                    for p in range(s, e)
                ]
                yield _to_batch(rows, spec.relpath)
            return
        for batch in pf.iter_batches(batch_size=batch_rows, row_groups=groups, columns=cols):
            n = batch.num_rows
            lo, hi = max(spec.start - pos, 0), min(stop - pos, n)
            pos_start = pos
            pos += n
            if hi <= lo:
                if pos >= stop:
                    break
                continue
            batch = batch.slice(lo, hi - lo)
            yield _parquet_batch(batch, text_col, id_col, pos_start + lo, spec, rating_col, image_col=image_col)
            if pos >= stop:
                break


def _parquet_batch(
    batch: pa.RecordBatch,
    text_col: str | None,
    id_col: str | None,
    first_pos: int,
    spec: ShardSpec,
    rating_col: str | None = None,
    *,
    n: int | None = None,
    image_col: str | None = None,
) -> pa.RecordBatch:
    """One batch of a table's columns as ``RAW_SCHEMA`` (Parquet and Arrow alike).

    With ``image_col`` every row names ``<column>[<position>]`` as its image: the image
    stage reads the bytes from the shard itself (a null image leaves the caption-only row)."""
    n = batch.num_rows if n is None else n
    positions = pa.array(range(first_pos, first_pos + n), pa.int64())
    reasons = pa.nulls(n, pa.string())
    if text_col is None:
        texts = pa.nulls(n, pa.string())
        reasons = pa.array([f"no text column (looked for {', '.join(TEXT_FIELD_CANDIDATES)})"] * n, pa.string())
    else:
        col = batch.column(batch.schema.get_field_index(text_col))
        if pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
            texts = pc.binary_join(col.cast(pa.list_(pa.string())), ", ")
        elif pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            texts = col.cast(pa.string())
        else:
            vals = col.to_pylist()
            pairs = [coerce_text(v, text_col) for v in vals]
            texts = pa.array([p[0] for p in pairs], pa.string())
            reasons = pa.array([p[1] for p in pairs], pa.string())
        if rating_col is not None:
            ratings = batch.column(batch.schema.get_field_index(rating_col)).to_pylist()
            texts = pa.array([with_rating(t, r) for t, r in zip(texts.to_pylist(), ratings)], pa.string())
        null_reason = pa.scalar(f"text field {text_col!r} is null", pa.string())
        reasons = pc.if_else(pc.and_(pc.is_null(texts), pc.is_null(reasons)), null_reason, reasons)
    if id_col is not None:
        ids = batch.column(batch.schema.get_field_index(id_col)).cast(pa.string())
        fallback = pc.binary_join_element_wise(pa.scalar(spec.relpath), positions.cast(pa.string()), ":")
        ids = pc.coalesce(ids, fallback)
    else:
        ids = pc.binary_join_element_wise(pa.scalar(spec.relpath), positions.cast(pa.string()), ":")
    if image_col is not None:
        images = pc.binary_join_element_wise(
            pa.scalar(image_col + "["), positions.cast(pa.string()), pa.scalar("]"), ""
        )
    else:
        images = pa.nulls(n, pa.string())
    return pa.RecordBatch.from_arrays(
        [ids, texts, pa.array([spec.relpath] * n, pa.string()), positions, reasons, images],
        schema=RAW_SCHEMA,
    )


# -- .txt sidecars ----------------------------------------------------------
def _rows_txt(spec: ShardSpec) -> Iterator[Row]:
    for i, (uri, image_rel, *_) in enumerate(spec.members):
        pos = spec.start + i
        if not uri:  # an image without a caption sidecar: pixels only
            stem = posixpath.splitext(posixpath.basename(image_rel))[0]
            yield stem, None, pos, "image has no caption sidecar (.txt/.caption/.tags): pixels only", image_rel
            continue
        stem = posixpath.splitext(posixpath.basename(uri))[0]
        try:
            with _open(uri) as fh:
                data = fh.read()
        except Exception as exc:
            yield stem, None, pos, f"cannot read caption file: {type(exc).__name__}: {exc}", image_rel or None
            continue
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            yield stem, None, pos, f"caption file is not valid UTF-8 (byte {exc.start})", image_rel or None
            continue
        yield stem, text.strip("\r\n"), pos, None, image_rel or None


# -- WebDataset tar ---------------------------------------------------------
def _split_key(name: str) -> tuple[str, str]:
    """WebDataset convention: key = path up to the first dot of the basename."""
    d, base = posixpath.split(name)
    stem, _, ext = base.partition(".")
    return (posixpath.join(d, stem) if d else stem), ext.lower()


def _rows_tar(spec: ShardSpec) -> Iterator[Row]:
    pos = 0
    unsafe: dict[str, str] = {}  # sample key -> why one of its members was refused

    def emit(key: str, members: dict[str, bytes], image: str | None) -> Row:
        nonlocal pos
        p = pos
        pos += 1
        if key in unsafe:
            return key, None, p, unsafe.pop(key), None
        for ext in TAR_TEXT_EXTS:
            if ext not in members:
                continue
            data = members[ext]
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                return key, None, p, f"tar member {key}.{ext} is not valid UTF-8 (byte {exc.start})", image
            if ext == "json":
                try:
                    obj = json.loads(text)
                except ValueError as exc:
                    return key, None, p, f"tar member {key}.json is broken JSON: {exc}", image
                rid, t, _, reason, _ = record_to_row(obj, p, spec)
                return key, t, p, reason, image
            return key, text.strip("\r\n"), p, None, image
        return key, None, p, "tar sample has no text member (.txt/.caption/.tags/.json)", image

    try:
        fh = _open(spec.uri)
    except Exception as exc:
        yield f"{spec.relpath}:0", None, 0, f"cannot open tar: {exc}", None
        return
    with fh:
        current: str | None = None
        members: dict[str, bytes] = {}
        image: str | None = None
        try:
            with tarfile.open(fileobj=fh, mode="r|*") as tar:
                for m in tar:
                    if m.isdir():
                        continue
                    key, ext = _split_key(m.name)
                    if current is not None and key != current:
                        yield emit(current, members, image)
                        members, image = {}, None
                    current = key
                    why = unsafe_tar_member(m)
                    if why is not None:
                        unsafe.setdefault(key, why)
                        continue
                    if ext in TAR_IMAGE_EXTS or ext.rsplit(".", 1)[-1] in TAR_IMAGE_EXTS:
                        image = m.name  # image bytes are read by the image stage, not here
                    elif ext in TAR_TEXT_EXTS:
                        if m.size > MAX_TAR_TEXT_BYTES:
                            unsafe.setdefault(
                                key, f"tar member {m.name!r} too large ({m.size} bytes > {MAX_TAR_TEXT_BYTES})"
                            )
                            continue
                        f = tar.extractfile(m)
                        members[ext] = f.read() if f is not None else b""
        except (tarfile.TarError, OSError, EOFError) as exc:
            reason = f"tar is truncated or corrupt: {exc}"
            if current is not None and not any(e in members for e in TAR_TEXT_EXTS):
                unsafe.setdefault(current, reason)  # the sample being read when the data ended
                yield emit(current, members, image)
                return
            if current is not None:
                yield emit(current, members, image)
            yield f"{spec.relpath}:{pos}", None, pos, reason, None
            return
        if current is not None:
            yield emit(current, members, image)


#: The formats read row by row in this module (Parquet streams batches: ``iter_parquet``; the image
#: containers are read by ``containers``; ``shards.iter_shard`` picks the reader of a shard's format).
ROW_READERS: dict[str, Callable[[ShardSpec], Iterator[Row]]] = {
    "jsonl": _rows_jsonl,
    "json": _rows_json,
    "csv": _rows_csv,
    "txt": _rows_txt,
    "tar": _rows_tar,
    "broken": _rows_broken,
}
