"""The per-partition work of every pipeline stage, free of Dagster.

Why a separate module: the assets call these functions inside a process pool
(both cores busy, one partition per task), and worker processes should import
pyarrow + the core, not Dagster. Each function streams its input Parquet by
record batches and writes ``<root>/<stage>/<key>.parquet`` through a temp file
+ ``os.replace``; a ``.json`` stats file written last is the commit marker that
carries the input fingerprint, so a re-run skips a partition exactly when its
output is complete *and* was built from the same input and code.
"""

from __future__ import annotations

import atexit
import hashlib
import importlib
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from charmeta import executors
from charmeta.contract import ATTRIBUTES, STATUSES, rich_arrow_schema
from charmeta.sources import RAW_SCHEMA, iter_shard, read_registry
from charmeta.sources.spec import holds_images
from charmeta.tmpfiles import pid_alive, sweep_stale_tmp  # noqa: F401 - re-exported

log = logging.getLogger("charmeta.pipeline")

RAW, NORMALIZED, EMBEDDINGS, PREDICTIONS, VALIDATED = (
    "raw_shards",
    "normalized_records",
    "embeddings",
    "attribute_predictions",
    "validated_records",
)
NORMALIZED_IMAGES = "normalized_images"  # image stages: charmeta_dagster/image_stages.py (imported lazily)
STAGES = (RAW, NORMALIZED, NORMALIZED_IMAGES, EMBEDDINGS, PREDICTIONS, VALIDATED)
#: Bump a stage's version when its output for the same input changes.
STAGE_VERSIONS = {RAW: "1", NORMALIZED: "1", NORMALIZED_IMAGES: "1", EMBEDDINGS: "2", PREDICTIONS: "1", VALIDATED: "1"}
UPSTREAM = {
    RAW: None,
    NORMALIZED: RAW,
    NORMALIZED_IMAGES: NORMALIZED,
    EMBEDDINGS: NORMALIZED_IMAGES,
    PREDICTIONS: NORMALIZED,
    VALIDATED: PREDICTIONS,
}

BATCH_ROWS = 32_768
_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._~-]{0,200}$")

EMBEDDING_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("source_position", pa.int64(), nullable=False),
        pa.field("image_member", pa.string()),
        pa.field("embedding", pa.list_(pa.float32())),
        pa.field("backend", pa.string()),
        pa.field("sha256", pa.string()),
        pa.field("model", pa.string()),
        pa.field("revision", pa.string()),
        pa.field("cached", pa.bool_()),
    ]
)


class Store:
    """The output root: where every stage's Parquet lives, and nowhere else.

    Paths are built only from validated partition keys and fixed stage names,
    and checked to resolve inside the root, so data can never write elsewhere.
    """

    def __init__(self, root: str) -> None:
        self.root = os.path.realpath(os.path.expanduser(root))

    def path(self, stage: str, key: str, suffix: str = ".parquet") -> str:
        if stage not in STAGES and stage != "export":
            raise ValueError(f"unknown stage {stage!r}")
        if not _KEY_RE.match(key) or ".." in key:
            raise ValueError(f"unsafe partition key {key!r}")
        path = os.path.join(self.root, stage, key + suffix)
        if os.path.commonpath([os.path.realpath(path), self.root]) != self.root:
            raise ValueError(f"partition key {key!r} escapes the output root")
        return path

    def stats(self, stage: str, key: str) -> dict[str, Any] | None:
        """The commit marker of a finished partition, or None."""
        try:
            with open(self.path(stage, key, ".json"), encoding="utf-8") as fh:
                stats = json.load(fh)
        except (FileNotFoundError, ValueError):
            return None
        return stats if os.path.exists(self.path(stage, key)) else None

    def is_done(self, stage: str, key: str, fingerprint: str) -> bool:
        s = self.stats(stage, key)
        return bool(s) and s.get("fingerprint") == fingerprint


def _atomic_json(path: str, obj: Any) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, sort_keys=True)
    os.replace(tmp, path)


#: Rows per Parquet row group. Stages hand the writer 8k-row batches; one row group per
#: batch made the 60-column rich files 20% larger and 3x slower to read back (page and
#: footer overhead per column chunk), so batches are buffered up to this size.
ROW_GROUP_ROWS = 65_536
#: Columns that are (nearly) unique per row: a dictionary page only costs time there.
_NO_DICTIONARY = frozenset({"id", "text"})


def _dictionary_columns(schema: pa.Schema) -> list[str]:
    return [f.name for f in schema if f.name not in _NO_DICTIONARY]


class _AtomicParquet:
    """ParquetWriter to a temp file, renamed into place only when fully written."""

    def __init__(self, path: str, schema: pa.Schema) -> None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        sweep_stale_tmp(path)  # a kill -9 mid-partition leaves its temp file behind
        self.path = path
        self.tmp = f"{path}.tmp-{os.getpid()}"
        self.schema = schema
        self.writer = pq.ParquetWriter(self.tmp, schema, compression="zstd", use_dictionary=_dictionary_columns(schema))
        self.rows = 0
        self._pending: list[pa.Table] = []
        self._pending_rows = 0

    def write(self, batch: pa.RecordBatch | pa.Table) -> None:
        if batch.num_rows:
            tbl = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
            self._pending.append(tbl.cast(self.schema) if tbl.schema != self.schema else tbl)
            self._pending_rows += batch.num_rows
            self.rows += batch.num_rows
            if self._pending_rows >= ROW_GROUP_ROWS:
                self._flush()

    def _flush(self) -> None:
        if self._pending:
            self.writer.write_table(pa.concat_tables(self._pending), row_group_size=max(self._pending_rows, 1))
            self._pending, self._pending_rows = [], 0

    def commit(self) -> None:
        self._flush()
        self.writer.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        self._pending = []
        try:
            self.writer.close()
        finally:
            if os.path.exists(self.tmp):
                os.remove(self.tmp)


# ---------------------------------------------------------------------------
# extractor / embedder backends (swappable by resource config)
# ---------------------------------------------------------------------------
class NullExtractor:
    """Extracts nothing (every core attribute ``Unknown``): measures platform overhead
    and lets the platform run before a real backend exists."""

    name = "null"
    version = "1"

    def extract(self, text: str):  # noqa: ANN201
        from charmeta.records import Extraction

        return Extraction(input_kind="tags", status="ok", character_count=None)

    def extract_batch(self, items):  # noqa: ANN001, ANN201
        return [self.extract(t) for t in items]


_ENGINES: dict[str, Any] = {}


def make_engine(backend: str):  # noqa: ANN201
    """``text`` -> ``Engine.default()``; ``null`` -> NullExtractor; ``pkg.mod:attr`` ->
    ``attr()`` returning an ``Engine`` or an extractor. Cached per process."""
    if backend in _ENGINES:
        return _ENGINES[backend]
    from charmeta.engine import Engine

    if backend in ("text", "default"):
        engine = Engine.default()
    elif backend == "null":
        engine = Engine(text_extractor=NullExtractor())
    elif ":" in backend:
        mod, _, attr = backend.partition(":")
        obj = getattr(importlib.import_module(mod), attr)
        obj = obj() if callable(obj) and not hasattr(obj, "extract") else obj
        engine = obj if isinstance(obj, Engine) else Engine(text_extractor=obj)
    else:
        raise ValueError(f"unknown extractor backend {backend!r}: use text, null or package.module:factory")
    _ENGINES[backend] = engine
    return engine


def backend_identity(backend: str) -> str:
    """Name + version of the backend, part of the predictions fingerprint.

    The default text extractor's is known without building it (compiling the ontology costs
    ~0.3 s, and ``charmeta run`` needs the fingerprints before it starts any work)."""
    if backend in ("text", "default"):
        from charmeta.extractors.text import TextExtractor

        return f"{backend}/{TextExtractor.name}/{TextExtractor.code_version()}"
    try:
        ex = make_engine(backend).text_extractor
        return f"{backend}/{getattr(ex, 'name', '?')}/{getattr(ex, 'version', '0')}"
    except Exception as exc:  # surfaced again (and loudly) when the stage runs
        return f"{backend}/unavailable:{type(exc).__name__}"


# ---------------------------------------------------------------------------
# fingerprints
# ---------------------------------------------------------------------------
def stage_fingerprint(stage: str, shard_fp: str, backend: str = "", embedder: str = "") -> str:
    chain = [shard_fp]
    s: str | None = stage
    order = []
    while s is not None:
        order.append(s)
        s = UPSTREAM[s]
    for st in reversed(order):
        chain.append(f"{st}@{STAGE_VERSIONS[st]}")
        if st == PREDICTIONS:
            chain.append(backend)
            if embedder and embedder != "none":  # image shards only; text-only fingerprints unchanged
                chain.append(embedder)
        if st in (NORMALIZED_IMAGES, EMBEDDINGS):
            chain.append(embedder)
    return hashlib.sha1("|".join(chain).encode("utf-8")).hexdigest()[:16]


# ---------------------------------------------------------------------------
# stage bodies
# ---------------------------------------------------------------------------
def _read_batches(path: str, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
    pf = pq.ParquetFile(path)
    yield from pf.iter_batches(batch_size=BATCH_ROWS, columns=columns)


def _preview(tbl_batch: pa.RecordBatch | None, cols: list[str], n: int = 5) -> list[dict[str, Any]]:
    if tbl_batch is None:
        return []
    keep = [c for c in cols if c in tbl_batch.schema.names]
    return tbl_batch.slice(0, n).select(keep).to_pylist()


def _count(counter: dict[str, int], arr: pa.Array) -> None:
    for item in pc.value_counts(arr).to_pylist():
        k = item["values"] if item["values"] is not None else "null"
        counter[k] = counter.get(k, 0) + item["counts"]


def _raw(store: Store, key: str, spec, out: _AtomicParquet, **_: Any) -> dict[str, Any]:
    first, flagged = None, 0
    for batch in iter_shard(spec, batch_rows=BATCH_ROWS):
        first = first or batch
        flagged += batch.num_rows - batch.column("reason").null_count
        out.write(batch)
    return {"upstream_invalid": flagged, "preview": _preview(first, ["id", "text", "source_position", "reason"])}


_ZERO_WIDTH = "[\u200b\u200c\u200d\u2060\ufeff]"


def _normalize_all(arr: pa.Array) -> pa.Array:
    arr = pc.utf8_normalize(arr, "NFC")
    arr = pc.replace_substring_regex(arr, _ZERO_WIDTH, "")
    arr = pc.replace_substring_regex(arr, r"[\s\x{00a0}\x{3000}]+", " ")
    return pc.utf8_trim_whitespace(arr)


#: A character outside printable ASCII, a double space, or a leading / trailing space.
_NEEDS_NORMALIZING = r"[^ -~]|  |^ | $"


def needs_normalizing(arr: pa.Array) -> pa.Array:
    """Rows the clean-up can change. A printable-ASCII text (no control characters, so no
    tab / newline / zero-width / NBSP) with no leading, trailing or double space is already
    NFC and already collapsed: NFC, the regexes and the trim leave it byte for byte as is."""
    return pc.fill_null(pc.match_substring_regex(arr, _NEEDS_NORMALIZING), False)  # one RE2 pass


def normalize_text(arr: pa.Array) -> pa.Array:
    """Vectorised clean-up that never changes meaning: Unicode NFC, zero-width
    characters removed, runs of whitespace (incl. newlines, NBSP) to one space, trimmed.

    Only the rows that need it go through NFC and the two regex passes (a fraction of a
    percent of typical captions; the full passes took 0.6 s per 100k rows, most of the stage)."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    mask = needs_normalizing(arr)
    if not pc.any(mask).as_py():
        return arr
    return pc.replace_with_mask(arr, mask, _normalize_all(arr.filter(mask)))


def normalize_batch(batch: pa.RecordBatch) -> tuple[pa.RecordBatch, int]:
    """The batch with its ``text`` normalized, and how many texts changed."""
    text = batch.column("text")
    norm = normalize_text(text)
    if norm is text:
        return batch, 0
    changed = pc.sum(pc.cast(pc.not_equal(text, norm), pa.int64())).as_py() or 0
    return batch.set_column(batch.schema.get_field_index("text"), "text", norm), changed


def _normalized(store: Store, key: str, spec, out: _AtomicParquet, **_: Any) -> dict[str, Any]:
    first, changed = None, 0
    for batch in _read_batches(store.path(RAW, key)):
        batch, n = normalize_batch(batch)
        changed += n
        first = first or batch
        out.write(batch)
    return {"texts_changed": changed, "preview": _preview(first, ["id", "text", "reason"])}


def _normalized_images(
    store: Store, key: str, spec, out: _AtomicParquet, embedder: str = "none", **_: Any
) -> dict[str, Any]:
    if not holds_images(spec):  # text-only formats: an empty partition, no image imports
        return {"images": 0}
    from charmeta_dagster import image_stages

    return image_stages.normalized_images_body(store, key, spec, out, embedder)


def _embeddings(store: Store, key: str, spec, out: _AtomicParquet, embedder: str = "none", **_: Any) -> dict[str, Any]:
    """One row per record: the image vector for image rows (``image_stages``), null otherwise."""
    if embedder != "none" or (store.stats(NORMALIZED_IMAGES, key) or {}).get("images"):
        from charmeta_dagster import image_stages

        return image_stages.embeddings_body(store, key, spec, out, embedder)
    with_image = 0
    for batch in _read_batches(store.path(RAW, key), ["id", "source_position", "image_member"]):
        with_image += batch.num_rows - batch.column("image_member").null_count
        out.write(null_embeddings(batch, embedder))
    return {"with_image": with_image, "embedded": 0}


def null_embeddings(batch: pa.RecordBatch, embedder: str = "none") -> pa.RecordBatch:
    """The embeddings rows of raw rows without a vector (text shards, embedder ``none``)."""
    n = batch.num_rows
    return pa.RecordBatch.from_arrays(
        [
            batch.column("id"),
            batch.column("source_position"),
            batch.column("image_member"),
            pa.nulls(n, pa.list_(pa.float32())),
            pa.array([embedder] * n, pa.string()),
            pa.nulls(n, pa.string()),
            pa.nulls(n, pa.string()),
            pa.nulls(n, pa.string()),
            pa.nulls(n, pa.bool_()),
        ],
        schema=EMBEDDING_SCHEMA,
    )


def _predictions(
    store: Store, key: str, spec, out: _AtomicParquet, backend: str = "text", embedder: str = "none", **_: Any
) -> dict[str, Any]:
    engine = make_engine(backend)
    images = None  # image rows: caption + pixels fused (image_stages), replacing the text-only row
    if holds_images(spec) and (store.stats(NORMALIZED_IMAGES, key) or {}).get("images"):
        from charmeta_dagster import image_stages

        images = image_stages.image_predictions(store, key, embedder, engine)
    statuses: dict[str, int] = {}
    first = None
    for batch in _read_batches(store.path(NORMALIZED, key), ["id", "text", "source_position", "reason"]):
        table = extract_batch(engine, batch, spec.relpath)
        if images:
            table = image_stages.overlay(table, images)
        _count(statuses, table.column("status"))
        if first is None and table.num_rows:
            first = table.to_batches()[0]
        out.write(table)
    return {
        "status_counts": statuses,
        "preview": _preview(first, ["id", "status", "reason"] + [a.column for a in ATTRIBUTES if a.is_core]),
    }


def extract_batch(engine: Any, batch: pa.RecordBatch, source_shard: str) -> pa.Table:
    """The engine on one normalized batch: the four columns it reads, as Arrow arrays (its
    columnar tag path reads them without converting every value to Python)."""
    return engine.process_batch(
        batch.column("id"),
        batch.column("text"),
        source_shard=source_shard,
        positions=batch.column("source_position"),
        preset_invalid=batch.column("reason"),
    )


def _per_value(col: pa.Array, fn: Callable[[pa.Array], pa.Array]) -> pa.Array:
    """``fn`` per row; on a dictionary column it runs on the few distinct values and is
    spread to the rows by index (the checks read the Parquet dictionaries as they are)."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if isinstance(col, pa.DictionaryArray):
        return fn(col.dictionary).take(col.indices)
    return fn(col)


def contract_violations(batch: pa.RecordBatch) -> tuple[pa.Array, list[str | None]]:
    """Vectorised contract check of rich rows: a boolean mask of bad rows, plus a
    reason per row (only computed for the rare bad rows). String columns may be
    dictionary-encoded."""
    n = batch.num_rows
    problems: list[tuple[pa.Array, str]] = []
    status = batch.column("status")
    not_invalid = pc.fill_null(_per_value(status, lambda v: pc.not_equal(v, "invalid")), True)
    statuses = pa.array(STATUSES)
    problems.append(
        (pc.invert(pc.fill_null(_per_value(status, lambda v: pc.is_in(v, statuses)), False)), "unknown status")
    )
    problems.append((pc.is_null(batch.column("id")), "missing id"))
    for spec in ATTRIBUTES:
        if spec.column not in batch.schema.names:
            continue
        col = batch.column(spec.column)
        if spec.is_list:
            continue
        if spec.values:
            vocab = pa.array(spec.values)
            out_of_vocab = _per_value(
                col, lambda v, vocab=vocab: pc.and_(pc.is_valid(v), pc.invert(pc.fill_null(pc.is_in(v, vocab), False)))
            )
            problems.append((out_of_vocab, f"{spec.key} value outside the vocabulary"))
        elif spec.pattern:
            mism = _per_value(
                col,
                lambda v, pattern=spec.pattern: pc.and_(
                    pc.is_valid(v), pc.invert(pc.fill_null(pc.match_substring_regex(v, pattern), False))
                ),
            )
            problems.append((mism, f"{spec.key} value does not match {spec.pattern}"))
        if spec.is_core:
            problems.append((pc.and_(not_invalid, pc.is_null(col)), f"missing core attribute {spec.key}"))
        conf = batch.column(f"{spec.column}_confidence")
        problems.append(
            (
                pc.fill_null(pc.or_(pc.less(conf, 0), pc.greater(conf, 1)), False),
                f"{spec.key} confidence outside [0, 1]",
            )
        )
    bad = pa.array(np.zeros(n, dtype=bool))
    for mask, _ in problems:
        bad = pc.or_(bad, pc.fill_null(mask, False))
    reasons: list[str | None] = [None] * n
    if pc.any(bad).as_py():
        for mask, why in problems:
            for i in pc.indices_nonzero(pc.fill_null(mask, False)).to_pylist():
                reasons[i] = (reasons[i] + "; " if reasons[i] else "contract violation: ") + why
    return bad, reasons


def _validated(store: Store, key: str, spec, out: _AtomicParquet, **_: Any) -> dict[str, Any]:
    schema = rich_arrow_schema()
    statuses: dict[str, int] = {}
    repaired, first = 0, None
    attr_cols = [
        c
        for a in ATTRIBUTES
        for c in (
            [a.column]
            if a.is_list
            else [a.column, f"{a.column}_confidence", f"{a.column}_evidence", f"{a.column}_conflict"]
        )
    ]
    for batch in _read_batches(store.path(PREDICTIONS, key)):
        bad, reasons = contract_violations(batch)
        nbad = pc.sum(pc.cast(bad, pa.int64())).as_py() or 0
        if nbad:
            repaired += nbad
            cols = {name: batch.column(name) for name in batch.schema.names}
            cols["status"] = pc.if_else(bad, pa.scalar("invalid"), cols["status"])
            cols["reason"] = pc.if_else(bad, pa.array(reasons, pa.string()), cols["reason"])
            for c in attr_cols:
                cols[c] = pc.if_else(bad, pa.scalar(None, cols[c].type), cols[c])
            batch = pa.RecordBatch.from_arrays([cols[n] for n in schema.names], schema=schema)
        _count(statuses, batch.column("status"))
        first = first or batch
        out.write(batch)
    input_rows = pq.ParquetFile(store.path(NORMALIZED, key)).metadata.num_rows
    return {
        "status_counts": statuses,
        "contract_violations": repaired,
        "input_rows": input_rows,
        "preview": _preview(first, ["id", "status", "reason"] + [a.column for a in ATTRIBUTES if a.is_core]),
    }


_BODIES: dict[str, Callable[..., dict[str, Any]]] = {
    RAW: _raw,
    NORMALIZED: _normalized,
    EMBEDDINGS: _embeddings,
    PREDICTIONS: _predictions,
    VALIDATED: _validated,
    NORMALIZED_IMAGES: _normalized_images,
}
_SCHEMAS = {RAW: RAW_SCHEMA, NORMALIZED: RAW_SCHEMA, EMBEDDINGS: EMBEDDING_SCHEMA}


def _schema(stage: str) -> pa.Schema:
    if stage == NORMALIZED_IMAGES:
        from charmeta_dagster.image_stages import normalized_schema  # PIL, not torch

        return normalized_schema()
    return _SCHEMAS.get(stage, rich_arrow_schema())


def partition_fingerprint(stage: str, spec: Any, backend: str = "text", embedder: str = "none") -> str:
    """The fingerprint a stage's commit marker must carry for ``spec`` (formats without
    images ignore the embedder; only predictions and validated depend on the backend)."""
    embedder = embedder if holds_images(spec) else "none"
    return stage_fingerprint(
        stage, spec.fingerprint, backend_identity(backend) if stage in (PREDICTIONS, VALIDATED) else "", embedder
    )


def skipped_stats(store: Store, stage: str, key: str) -> dict[str, Any]:
    stats = dict(store.stats(stage, key) or {})
    stats["skipped"] = True
    return stats


def commit_marker(
    store: Store, stage: str, spec: Any, fp: str, rows: int, seconds: float, extra: dict[str, Any]
) -> dict[str, Any]:
    """Write the ``.json`` commit marker of a stage output already renamed into place."""
    stats = {
        "key": spec.key,
        "stage": stage,
        "fingerprint": fp,
        "rows": rows,
        "seconds": round(seconds, 3),
        "rows_per_second": round(rows / seconds, 1) if seconds > 0 else None,
        "source_shard": spec.relpath,
        "source_start": spec.start,
        **extra,
    }
    _atomic_json(store.path(stage, spec.key, ".json"), stats)
    stats["skipped"] = False
    return stats


def process_partition(
    stage: str, root: str, key: str, backend: str = "text", embedder: str = "none", force: bool = False
) -> dict[str, Any]:
    """Build one stage's output for one partition (or skip it when already done)."""
    store = Store(root)
    spec = read_registry(store.root, key)
    embedder = embedder if holds_images(spec) else "none"  # formats without images ignore the embedder
    fp = partition_fingerprint(stage, spec, backend, embedder)
    if not force and store.is_done(stage, key, fp):
        return skipped_stats(store, stage, key)
    t0 = time.perf_counter()
    out = _AtomicParquet(store.path(stage, key), _schema(stage))
    try:
        extra = _BODIES[stage](store, key, spec, out, backend=backend, embedder=embedder)
        out.commit()
    except BaseException:
        out.abort()
        raise
    return commit_marker(store, stage, spec, fp, out.rows, time.perf_counter() - t0, extra)


def row_problems(store: Store, stage: str, key: str) -> list[str]:
    """Every normalized input row has exactly one ``stage`` output row: the counts and the
    multiset of source positions agree. Pyarrow + numpy over two int64 columns (a few ms
    per 100k rows), so it can guard ``validated_records`` inside the worker and back the checks."""
    out_path, in_path = store.path(stage, key), store.path(NORMALIZED, key)
    if not os.path.exists(out_path):
        return [f"{key}: {stage} output missing"]
    if not os.path.exists(in_path):
        return [f"{key}: {NORMALIZED} output missing"]
    pos_in, pos_out = (pq.read_table(p, columns=["source_position"]).column(0).to_numpy() for p in (in_path, out_path))
    if len(pos_in) != len(pos_out):
        return [f"{key}: {len(pos_in)} input rows but {len(pos_out)} output rows"]
    diff = _multiset_difference(pos_in, pos_out)
    return [f"{key}: {diff} source positions differ between input and output"] if diff else []


def _multiset_difference(a: Any, b: Any) -> int:
    """``|a - b| + |b - a|`` as multisets (SQL ``EXCEPT ALL`` both ways)."""
    if len(a) == len(b) and np.array_equal(a, b):  # the usual case: same positions, same order
        return 0
    a, b = np.sort(a), np.sort(b)
    if len(a) == len(b) and np.array_equal(a, b):
        return 0
    values = np.union1d(a, b)
    ua, ca = np.unique(a, return_counts=True)
    ub, cb = np.unique(b, return_counts=True)
    counts_a, counts_b = np.zeros(len(values), np.int64), np.zeros(len(values), np.int64)
    counts_a[np.searchsorted(values, ua)] = ca
    counts_b[np.searchsorted(values, ub)] = cb
    return int(np.abs(counts_a - counts_b).sum())


#: Below this many rows in a step, partitions run in-process (no pool start-up).
POOL_MIN_ROWS = int(os.environ.get("CHARMETA_POOL_MIN_ROWS", "20000"))


def estimate_rows(stage: str, root: str, keys: list[str]) -> int:
    """Rows a step will touch: upstream stats when known, else the shard's row range
    or its file size (about 200 bytes per caption); unknown counts as large."""
    store = Store(root)
    total = 0
    up = UPSTREAM[stage]
    for k in keys:
        stats = store.stats(up, k) if up else None
        if stats and stats.get("rows") is not None:
            total += int(stats["rows"])
            continue
        spec = read_registry(store.root, k)
        if spec.stop is not None:
            total += spec.stop - spec.start
        elif spec.uri.startswith("file://"):
            try:
                total += os.path.getsize(spec.uri[len("file://") :]) // 200
            except OSError:
                total += POOL_MIN_ROWS
        else:
            total += POOL_MIN_ROWS
    return total


def _worker(args: tuple) -> dict[str, Any]:
    return process_partition(*args)


class PartitionsFailed(RuntimeError):
    """Some partitions of a step failed; the others were built and committed."""

    def __init__(self, stage: str, errors: dict[str, str]) -> None:
        self.stage, self.errors = stage, errors
        lines = "; ".join(f"{k}: {v}" for k, v in list(errors.items())[:20])
        super().__init__(f"{stage}: {len(errors)} partition(s) failed: {lines}")


def run_stage(
    stage: str,
    root: str,
    keys: list[str],
    backend: str = "text",
    embedder: str = "none",
    workers: int = 1,
    on_done: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Run ``stage`` for ``keys``: in a spawn process pool when there are several
    partitions and ``workers > 1`` (CPU-bound Python: processes, not threads)."""
    jobs = {k: (stage, root, k, backend, embedder) for k in keys}
    if workers > 1 and estimate_rows(stage, root, keys) < POOL_MIN_ROWS:
        workers = 1  # starting spawn workers costs more than a few thousand rows take
    return run_tasks(_worker, jobs, stage, workers, on_done)


def run_tasks(
    fn: Callable[[tuple], dict[str, Any]],
    jobs: dict[str, tuple],
    label: str,
    workers: int,
    on_done: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """``fn(args)`` for every partition key of ``jobs`` (in the shared pool when ``workers > 1``),
    results in key order. One failing partition does not stop the others; the failures are
    raised together as ``PartitionsFailed`` once every other partition is done."""
    keys = list(jobs)
    results: dict[str, dict[str, Any]] = {}
    errors: dict[str, str] = {}

    def record(key: str, get: Callable[[], dict[str, Any]]) -> None:
        try:
            r = get()
        except BrokenProcessPool as exc:  # a worker died (OOM, kill): the next step gets a fresh pool
            _reset_pool()
            log.error("%s %s failed: worker process died: %r", label, key, exc)
            errors[key] = f"worker process died: {exc}"
            return
        except Exception as exc:
            log.error("%s %s failed: %r", label, key, exc)
            errors[key] = f"{type(exc).__name__}: {exc}"
            return
        results[key] = r
        if on_done:
            on_done(r)

    prefetched = any((fn, jobs[k]) in _PREFETCHED for k in keys)
    if max(1, min(workers, len(keys))) == 1 and not prefetched and not executors.is_remote():
        for k in keys:
            record(k, lambda k=k: fn(jobs[k]))
    else:
        pool = _POOL if prefetched and _POOL is not None else _shared_pool(workers)
        futures = {_adopt_or_submit(pool, fn, jobs[k]): k for k in keys}
        for fut in as_completed(futures):
            record(futures[fut], fut.result)
    if errors:
        raise PartitionsFailed(label, {k: errors[k] for k in keys if k in errors})
    return [results[k] for k in keys]


_POOL: ProcessPoolExecutor | None = None
_POOL_SIZE: Any = 0
#: Tasks queued ahead of the step that will want them: ``(fn, args) -> Future`` (see ``prefetch``).
_PREFETCHED: dict[tuple[Callable[..., Any], tuple], Future] = {}


def prefetch(fn: Callable[[tuple], dict[str, Any]], jobs: dict[str, tuple], workers: int) -> int:
    """Queue ``fn(args)`` for every job on the shared pool now; the step that later asks for
    the same ``(fn, args)`` (``run_tasks``) adopts the future instead of submitting again.

    Why: ``charmeta run`` executes its Dagster runs one after the other. Without this the
    pool idles at every run boundary - the run's last round (one partition left, one core
    busy), its checks and bookkeeping, the next run's start - about half a partition's time
    per run. Outputs are committed per partition exactly as in the step itself, so work
    done ahead for a run that then fails is kept, as it would be for any finished partition.
    Returns the number of tasks queued.
    """
    if workers < 2 or not jobs:
        return 0
    pool = _shared_pool(workers)
    n = 0
    for args in jobs.values():
        if (fn, args) not in _PREFETCHED:
            _PREFETCHED[(fn, args)] = pool.submit(fn, args)
            n += 1
    return n


def _adopt_or_submit(pool: ProcessPoolExecutor, fn: Callable[[tuple], dict[str, Any]], args: tuple) -> Future:
    fut = _PREFETCHED.pop((fn, args), None)
    if fut is None or fut.cancelled() or (fut.done() and isinstance(fut.exception(), BrokenProcessPool)):
        return pool.submit(fn, args)
    return fut


def _shared_pool(workers: int) -> ProcessPoolExecutor:
    """One spawn pool per process, reused by every step and run it executes.

    Starting spawn workers (interpreter, imports, ontology compile) costs about a
    second each; a 5M-row job has dozens of steps, so workers live as long as the
    process (shut down at exit) and keep their compiled engine between steps.
    """
    global _POOL, _POOL_SIZE
    cfg = executors.current()
    size = (cfg, 0 if cfg.backend != "local" else workers)  # a cluster is sized by its resources
    if _POOL is None or _POOL_SIZE != size:
        _reset_pool()
        _POOL = executors.make_executor(workers, cfg)  # spawn processes, or Ray tasks (CHARMETA_EXECUTOR=ray)
        _POOL_SIZE = size
    return _POOL


def _warm(backend: str) -> None:
    try:
        make_engine(backend)
    except Exception:  # noqa: BLE001 - the step that uses the backend reports it
        pass


def warm_pool(workers: int, backend: str = "text") -> None:
    """Start the pool's worker processes now (interpreter, imports, extractor) so that their
    second of start-up overlaps the caller's own (Dagster imports, instance, discovery)."""
    if workers < 2:
        return
    pool = _shared_pool(workers)
    for _ in range(workers):
        pool.submit(_warm, backend)


def _reset_pool() -> None:
    global _POOL, _POOL_SIZE
    _PREFETCHED.clear()  # their futures belong to the pool being dropped
    if _POOL is not None:
        _POOL.shutdown(wait=False, cancel_futures=True)
    _POOL, _POOL_SIZE = None, 0


atexit.register(_reset_pool)


def close_pool() -> None:
    """Stop the pool's workers now, without waiting for each to tear down its interpreter.

    For a caller that is done with the pool (``charmeta run`` before it exits): every task it
    submitted has been awaited, so the workers are idle; a graceful shutdown would wait a second
    or more for them to free their extractor caches. A task still running (an interrupted run)
    is killed like any kill -9: its outputs are temp files, swept by the next writer."""
    pool = _POOL
    if pool is not None:
        for proc in list((getattr(pool, "_processes", None) or {}).values()):
            if proc.is_alive():
                proc.terminate()
    _reset_pool()


def default_workers() -> int:
    """Worker processes per stage step: ``CHARMETA_WORKERS`` or the CPU count."""
    env = os.environ.get("CHARMETA_WORKERS")
    if env:
        return max(1, int(env))
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))
