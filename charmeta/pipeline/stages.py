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

import functools
import logging
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from charmeta.contract import ATTRIBUTES, STATUSES, rich_arrow_schema
from charmeta.pipeline.engines import NullExtractor, backend_identity, extract_batch, make_engine  # noqa: F401
from charmeta.pipeline.executor import Executor, PartitionsFailed, default_workers, local_executor, run_tasks  # noqa: F401
from charmeta.pipeline.graph import (
    EMBEDDING_SCHEMA,
    EMBEDDINGS,
    NORMALIZED,
    NORMALIZED_IMAGES,
    PREDICTIONS,
    RAW,
    STAGE_VERSIONS,  # noqa: F401 - the graph's names, also read as ``stages.X``
    STAGES,  # noqa: F401
    UPSTREAM,  # noqa: F401
    VALIDATED,
    carries_images,
    effective_embedder,
    stage_fingerprint,
    stage_schema,
)
from charmeta.pipeline.layout import Layout, Store  # noqa: F401
from charmeta.sources import iter_shard, read_registry
from charmeta.tmpfiles import pid_alive, sweep_stale_tmp  # noqa: F401 - re-exported

log = logging.getLogger("charmeta.pipeline")

BATCH_ROWS = 32_768


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


def _per_value(col: pa.Array, fn: Callable[[pa.Array], pa.Array]) -> pa.Array:
    """``fn`` per row; on a dictionary column it runs on the few distinct values and is
    spread to the rows by index (the checks read the Parquet dictionaries as they are)."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if isinstance(col, pa.DictionaryArray):
        return fn(col.dictionary).take(col.indices)
    return fn(col)


def _out_of_vocabulary(v: pa.Array, vocab: pa.Array) -> pa.Array:
    return pc.and_(pc.is_valid(v), pc.invert(pc.fill_null(pc.is_in(v, vocab), False)))


def _not_matching(v: pa.Array, pattern: str) -> pa.Array:
    return pc.and_(pc.is_valid(v), pc.invert(pc.fill_null(pc.match_substring_regex(v, pattern), False)))


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
            out_of_vocab = _per_value(col, functools.partial(_out_of_vocabulary, vocab=vocab))
            problems.append((out_of_vocab, f"{spec.key} value outside the vocabulary"))
        elif spec.pattern:
            mism = _per_value(col, functools.partial(_not_matching, pattern=spec.pattern))
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


# ---------------------------------------------------------------------------
# the stages as blocks
# ---------------------------------------------------------------------------
_RICH_PREVIEW = ["id", "status", "reason"] + [a.column for a in ATTRIBUTES if a.is_core]
#: Columns of the rich schema a contract violation blanks.
_ATTR_COLUMNS = [
    c
    for a in ATTRIBUTES
    for c in (
        [a.column]
        if a.is_list
        else [a.column, f"{a.column}_confidence", f"{a.column}_evidence", f"{a.column}_conflict"]
    )
]


class Block:
    """One stage of one partition, as a transformation of a stream of Arrow batches.

    Every stage has this one shape, composed one way by both runners: ``process`` takes a
    batch of the stage's input and returns the stage's rows for it, gathering on the way
    the counts its commit marker reports (``extra``). A single stage runs ``run``: its
    input file (``inputs``) through ``process`` into its writer. The one-pass chain
    (``charmeta.pipeline.chain``) feeds each block the previous block's output instead,
    so a text partition is read once and every stage file is written as it streams.
    """

    stage = ""
    #: Columns of the input file a single-stage run reads (None: all of them).
    columns: list[str] | None = None
    #: Columns of the first output batch shown as the marker's preview.
    preview_columns: list[str] = []

    def __init__(self, store: Layout, spec: Any, backend: str = "text", embedder: str = "none") -> None:
        self.store, self.spec, self.backend, self.embedder = store, spec, backend, embedder
        self.first: pa.RecordBatch | None = None

    def inputs(self) -> Iterator[pa.RecordBatch]:
        """The batches a single-stage run feeds ``process``: its input stage's file."""
        return _read_batches(self.store.path(self.input_stage(), self.spec.key), self.columns)

    def input_stage(self) -> str:
        raise NotImplementedError

    def process(self, batch: pa.RecordBatch) -> pa.RecordBatch | pa.Table:
        raise NotImplementedError

    def extra(self) -> dict[str, Any]:
        """The stage-specific fields of the commit marker."""
        return {"preview": _preview(self.first, self.preview_columns)}

    def run(self, out: _AtomicParquet) -> dict[str, Any]:
        """The whole stage for the partition: inputs -> process -> ``out``; the marker's fields."""
        for batch in self.inputs():
            out.write(self.process(batch))
        return self.extra()

    def _keep_first(self, batch: pa.RecordBatch | pa.Table) -> None:
        if self.first is None and batch.num_rows:
            self.first = batch.to_batches()[0] if isinstance(batch, pa.Table) else batch


class RawBlock(Block):
    """Source rows as read (one per input row; unreadable rows carry a ``reason``)."""

    stage = RAW
    preview_columns = ["id", "text", "source_position", "reason"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.flagged = 0

    def inputs(self) -> Iterator[pa.RecordBatch]:
        return iter_shard(self.spec, batch_rows=BATCH_ROWS)

    def process(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        self.flagged += batch.num_rows - batch.column("reason").null_count
        self._keep_first(batch)
        return batch

    def extra(self) -> dict[str, Any]:
        return {"upstream_invalid": self.flagged, **super().extra()}


class NormalizedBlock(Block):
    """Texts cleaned without changing meaning (``normalize_batch``)."""

    stage = NORMALIZED
    preview_columns = ["id", "text", "reason"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.changed = 0

    def input_stage(self) -> str:
        return RAW

    def process(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        batch, n = normalize_batch(batch)
        self.changed += n
        self._keep_first(batch)
        return batch

    def extra(self) -> dict[str, Any]:
        return {"texts_changed": self.changed, **super().extra()}


class NormalizedImagesBlock(Block):
    """The partition's images (``image_stages``): a pass of its own over the image members;
    text-only formats give an empty partition without importing the image stack."""

    stage = NORMALIZED_IMAGES

    def run(self, out: _AtomicParquet) -> dict[str, Any]:
        if not carries_images(self.spec):
            return {"images": 0}
        from charmeta.pipeline import image_stages

        return image_stages.normalized_images_body(self.store, self.spec.key, self.spec, out, self.embedder)


class EmbeddingsBlock(Block):
    """One row per record: the image vector for image rows (``image_stages``, a pass of its
    own), null otherwise (streamed from the raw rows)."""

    stage = EMBEDDINGS
    columns = ["id", "source_position", "image_member"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.with_image = 0

    def input_stage(self) -> str:
        return RAW

    def run(self, out: _AtomicParquet) -> dict[str, Any]:
        if self.embedder != "none" or (self.store.stats(NORMALIZED_IMAGES, self.spec.key) or {}).get("images"):
            from charmeta.pipeline import image_stages

            return image_stages.embeddings_body(self.store, self.spec.key, self.spec, out, self.embedder)
        return super().run(out)

    def process(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        self.with_image += batch.num_rows - batch.column("image_member").null_count
        return null_embeddings(batch, self.embedder)

    def extra(self) -> dict[str, Any]:
        return {"with_image": self.with_image, "embedded": 0}


class PredictionsBlock(Block):
    """Rich records from the extractor backend; image rows replaced by the fusion of caption and
    pixels. Counts what the row guard needs (rows in and out, source positions kept in order)."""

    stage = PREDICTIONS
    columns = ["id", "text", "source_position", "reason"]
    preview_columns = _RICH_PREVIEW

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.engine = make_engine(self.backend)
        self.statuses: dict[str, int] = {}
        self.rows_in = self.rows_out = 0
        self.positions_differ = False
        self.images = None  # image rows: caption + pixels fused (image_stages), replacing the text-only row
        if carries_images(self.spec) and (self.store.stats(NORMALIZED_IMAGES, self.spec.key) or {}).get("images"):
            from charmeta.pipeline import image_stages

            self.images = image_stages.image_predictions(self.store, self.spec.key, self.embedder, self.engine)

    def input_stage(self) -> str:
        return NORMALIZED

    def process(self, batch: pa.RecordBatch) -> pa.Table:
        table = extract_batch(self.engine, batch, self.spec.relpath)
        if self.images:
            from charmeta.pipeline import image_stages

            table = image_stages.overlay(table, self.images)
        _count(self.statuses, table.column("status"))
        self._keep_first(table)
        self.rows_in += batch.num_rows
        self.rows_out += table.num_rows
        if table.num_rows != batch.num_rows:
            self.positions_differ = True
        elif not self.positions_differ:
            self.positions_differ = not table.column("source_position").equals(
                pa.chunked_array([batch.column("source_position")])
            )
        return table

    def extra(self) -> dict[str, Any]:
        return {"status_counts": dict(self.statuses), **super().extra()}

    def guard_problems(self) -> list[str]:
        """The row guard from the streamed counts; positions out of order are settled from the files."""
        key = self.spec.key
        if self.rows_in != self.rows_out:
            return [f"{key}: {self.rows_in} input rows but {self.rows_out} output rows"]
        return row_problems(self.store, PREDICTIONS, key) if self.positions_differ else []


class ValidatedBlock(Block):
    """Predictions checked against the contract in bulk: a row that breaks it becomes an
    ``invalid`` record with the reason and its attributes blanked (no per-row pydantic)."""

    stage = VALIDATED
    preview_columns = _RICH_PREVIEW

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.statuses: dict[str, int] = {}
        self.violations = 0
        self.schema = rich_arrow_schema()

    def input_stage(self) -> str:
        return PREDICTIONS

    def process(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        bad, reasons = contract_violations(batch)
        nbad = pc.sum(pc.cast(bad, pa.int64())).as_py() or 0
        if nbad:
            self.violations += nbad
            cols = {name: batch.column(name) for name in batch.schema.names}
            cols["status"] = pc.if_else(bad, pa.scalar("invalid"), cols["status"])
            cols["reason"] = pc.if_else(bad, pa.array(reasons, pa.string()), cols["reason"])
            for c in _ATTR_COLUMNS:
                cols[c] = pc.if_else(bad, pa.scalar(None, cols[c].type), cols[c])
            batch = pa.RecordBatch.from_arrays([cols[n] for n in self.schema.names], schema=self.schema)
        _count(self.statuses, batch.column("status"))
        self._keep_first(batch)
        return batch

    def extra(self) -> dict[str, Any]:
        input_rows = pq.ParquetFile(self.store.path(NORMALIZED, self.spec.key)).metadata.num_rows
        return {
            "status_counts": dict(self.statuses),
            "contract_violations": self.violations,
            "input_rows": input_rows,
            **super().extra(),
        }


#: Every stage's block.
BLOCKS: dict[str, type[Block]] = {
    RAW: RawBlock,
    NORMALIZED: NormalizedBlock,
    NORMALIZED_IMAGES: NormalizedImagesBlock,
    EMBEDDINGS: EmbeddingsBlock,
    PREDICTIONS: PredictionsBlock,
    VALIDATED: ValidatedBlock,
}


def partition_fingerprint(stage: str, spec: Any, backend: str = "text", embedder: str = "none") -> str:
    """The fingerprint a stage's commit marker must carry for ``spec`` (formats without
    images ignore the embedder; only predictions and validated depend on the backend)."""
    embedder = effective_embedder(spec, embedder)
    return stage_fingerprint(
        stage, spec.fingerprint, backend_identity(backend) if stage in (PREDICTIONS, VALIDATED) else "", embedder
    )


def process_partition(
    stage: str, root: str, key: str, backend: str = "text", embedder: str = "none", force: bool = False
) -> dict[str, Any]:
    """Build one stage's output for one partition (or skip it when already done)."""
    store = Layout(root)
    spec = read_registry(store.root, key)
    embedder = effective_embedder(spec, embedder)  # formats without images ignore the embedder
    fp = partition_fingerprint(stage, spec, backend, embedder)
    if not force and store.is_done(stage, key, fp):
        return store.skipped_stats(stage, key)
    t0 = time.perf_counter()
    out = _AtomicParquet(store.path(stage, key), stage_schema(stage))
    try:
        extra = BLOCKS[stage](store, spec, backend, embedder).run(out)
        out.commit()
    except BaseException:
        out.abort()
        raise
    return store.commit_marker(stage, spec, fp, out.rows, time.perf_counter() - t0, extra)


def row_problems(store: Layout, stage: str, key: str) -> list[str]:
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


def _worker(args: tuple) -> dict[str, Any]:
    return process_partition(*args)


def run_stage(
    stage: str,
    root: str,
    keys: list[str],
    backend: str = "text",
    embedder: str = "none",
    workers: int = 1,
    on_done: Callable[[dict[str, Any]], None] | None = None,
    executor: Executor | None = None,
) -> list[dict[str, Any]]:
    """Run ``stage`` for ``keys``: one task per partition on ``executor`` (default: the shared
    local pool of ``workers`` processes; in-process when the step is small)."""
    from charmeta.pipeline.planner import small_step

    jobs = {k: (stage, root, k, backend, embedder) for k in keys}
    if workers > 1 and (executor is None or executor.should_inline(1)) and small_step(stage, root, keys):
        executor = local_executor(1)  # starting spawn workers costs more than a few thousand rows take
    return run_tasks(_worker, jobs, stage, executor or local_executor(workers), on_done)
