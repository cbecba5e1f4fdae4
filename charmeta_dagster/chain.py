"""One pass per text partition: raw -> normalized -> embeddings -> predictions -> validated.

Why: run stage by stage, every stage re-reads the previous stage's Parquet, the
60-column rich file is decoded and re-encoded only to be validated, and a Dagster
step per stage is a barrier (with 5-7 partitions on 2 workers one core idles in
the last round of every stage). A text partition needs none of that: one pool
task streams its record batches through every stage and writes each stage's
Parquet as it goes. Files, fingerprints and commit markers are exactly the
per-stage ones, so a single-stage run or a re-run sees them as done; outputs are
temp files until the stream ends, so a kill -9 mid-partition leaves nothing
visible (the next writer sweeps the temp files).

* A partition resumes at its first unfinished stage (the stream then starts from
  that stage's input file), and finished side stages are kept.
* ``validated_records`` is a copy of the predictions file when no row breaks the
  contract (the common case: no second encode); otherwise the per-stage body
  rebuilds it from the committed predictions.
* Guard (the blocking ``one_row_per_input`` check, applied where it matters): a
  partition whose predictions do not have exactly one row per input row gets no
  ``validated_records``; its problems are returned as ``row_problems``.
* Image shards (``tar`` / ``txt``) run the per-stage bodies in the same task:
  their image stages need passes of their own (decode, embed, fuse).
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from charmeta import export_parts
from charmeta.contract import ATTRIBUTES
from charmeta.sources import iter_shard, read_registry
from charmeta.sources.spec import holds_images
from charmeta_dagster import check_facts
from charmeta_dagster.stages import (
    BATCH_ROWS,
    EMBEDDINGS,
    NORMALIZED,
    NORMALIZED_IMAGES,
    POOL_MIN_ROWS,
    PREDICTIONS,
    RAW,
    STAGES,
    VALIDATED,
    Store,
    _AtomicParquet,
    _count,
    _preview,
    _read_batches,
    _schema,
    commit_marker,
    contract_violations,
    estimate_rows,
    extract_batch,
    make_engine,
    normalize_batch,
    null_embeddings,
    partition_fingerprint,
    prefetch,
    process_partition,
    row_problems,
    run_stage,
    run_tasks,
    skipped_stats,
    sweep_stale_tmp,
)

log = logging.getLogger("charmeta.pipeline")

#: The stages a record passes through in order; the image stages hang off the side.
LINEAR = (RAW, NORMALIZED, PREDICTIONS, VALIDATED)
_RICH_PREVIEW = ["id", "status", "reason"] + [a.column for a in ATTRIBUTES if a.is_core]


def covers_chain(stages: set[str] | frozenset[str]) -> bool:
    """Whether a selection includes the whole text path (then one pass builds it)."""
    return set(LINEAR) <= set(stages)


def process_chain(
    root: str,
    key: str,
    backend: str = "text",
    embedder: str = "none",
    force: bool = False,
    stages: tuple[str, ...] = STAGES,
) -> dict[str, Any]:
    """Build every stage of ``stages`` for one partition (skipping finished ones).

    Returns ``{"key", "stages": {stage: stats}, "row_problems": [...] | None}``: the row
    guard's findings (``None`` when it did not run); a partition with problems has no
    ``validated_records`` stats (it was not built)."""
    store = Store(root)
    spec = read_registry(store.root, key)
    fps = {st: partition_fingerprint(st, spec, backend, embedder) for st in stages}
    todo = {st for st in stages if force or not store.is_done(st, key, fps[st])}
    stats = {st: skipped_stats(store, st, key) for st in stages if st not in todo}
    if holds_images(spec):
        return _per_stage(store, spec, [st for st in STAGES if st in todo], backend, embedder, stats)
    start = next((st for st in LINEAR if st in todo), None)
    problems: list[str] | None = None
    if start in (RAW, NORMALIZED, PREDICTIONS):
        built, problems = _stream(
            store, spec, start, fps, backend, with_embeddings=EMBEDDINGS in todo, copy_validated=VALIDATED in todo
        )
        stats.update(built)
    for st in (NORMALIZED_IMAGES, EMBEDDINGS):  # side stages the stream did not write
        if st in todo and st not in stats:
            stats[st] = process_partition(st, root, key, backend, embedder, force=True)
    if VALIDATED in todo and VALIDATED not in stats:  # predictions reused, broke the contract, or lost rows
        problems = row_problems(store, PREDICTIONS, key) if problems is None else problems
        if not problems:
            stats[VALIDATED] = process_partition(VALIDATED, root, key, backend, embedder, force=True)
    return {"key": key, "stages": stats, "row_problems": problems if VALIDATED in todo else None}


def _per_stage(
    store: Store, spec: Any, todo: list[str], backend: str, embedder: str, stats: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """Image shards: the per-stage bodies in stage order, with the same validated guard."""
    problems: list[str] | None = None
    for st in todo:
        if st == VALIDATED:
            problems = row_problems(store, PREDICTIONS, spec.key)
            if problems:
                break
        stats[st] = process_partition(st, store.root, spec.key, backend, embedder, force=True)
    return {"key": spec.key, "stages": stats, "row_problems": problems}


class _Timed:
    """Seconds spent per stage while the stages of a batch interleave."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._t = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = self.seconds.get(stage, 0.0) + now - self._t
        self._t = now


def _source(store: Store, spec: Any, start: str) -> Iterator[pa.RecordBatch]:
    """Batches entering the stream: source rows (raw), or the stage file before ``start``."""
    if start == RAW:
        return iter_shard(spec, batch_rows=BATCH_ROWS)
    return _read_batches(store.path(RAW if start == NORMALIZED else NORMALIZED, spec.key))


class _Counts:
    """What the per-stage bodies report in their commit markers, gathered while streaming."""

    def __init__(self) -> None:
        self.flagged = self.with_image = self.changed = self.violations = 0
        self.rows_in = self.rows_out = 0
        self.statuses: dict[str, int] = {}
        self.first: dict[str, pa.RecordBatch] = {}
        self.positions_differ = False

    def keep_first(self, stage: str, batch: pa.RecordBatch | pa.Table) -> None:
        if stage not in self.first and batch.num_rows:
            self.first[stage] = batch.to_batches()[0] if isinstance(batch, pa.Table) else batch


def _stream(
    store: Store, spec: Any, start: str, fps: dict[str, str], backend: str, with_embeddings: bool, copy_validated: bool
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Stream the partition from ``start`` through predictions; commit every stage built
    and, when the contract and the row guard hold, validated as a copy of predictions.
    Returns the stats of the stages committed and the guard's problems."""
    key = spec.key
    builds = [st for st in (RAW, NORMALIZED, PREDICTIONS) if LINEAR.index(st) >= LINEAR.index(start)]
    if with_embeddings and start != PREDICTIONS:
        builds.insert(1, EMBEDDINGS)
    outs = {st: _AtomicParquet(store.path(st, key), _schema(st)) for st in builds}
    engine = make_engine(backend)
    timed, n = _Timed(), _Counts()
    try:
        for batch in _source(store, spec, start):
            timed.lap(start)
            if start != PREDICTIONS:
                batch = _raw_side(batch, outs, n, timed)
            _predict(engine, batch, spec.relpath, outs[PREDICTIONS], n, timed)
        for st in builds:
            outs[st].commit()
    except BaseException:
        for out in outs.values():
            out.abort()
        raise
    stats = {
        st: commit_marker(store, st, spec, fps[st], outs[st].rows, timed.seconds.get(st, 0.0), _extra(st, n))
        for st in builds
    }
    problems = _guard(store, key, n)
    if copy_validated and not problems and not n.violations:
        stats[VALIDATED] = _validated_copy(
            store, spec, fps[VALIDATED], outs[PREDICTIONS].rows, n, timed.seconds.get(VALIDATED, 0.0)
        )
    return stats, problems


def _raw_side(batch: pa.RecordBatch, outs: dict[str, _AtomicParquet], n: _Counts, timed: _Timed) -> pa.RecordBatch:
    """Raw rows -> raw (when built), embeddings (when built), normalized; the normalized batch."""
    if RAW in outs:
        n.flagged += batch.num_rows - batch.column("reason").null_count
        n.keep_first(RAW, batch)
        outs[RAW].write(batch)
        timed.lap(RAW)
    if EMBEDDINGS in outs:
        n.with_image += batch.num_rows - batch.column("image_member").null_count
        outs[EMBEDDINGS].write(null_embeddings(batch))
        timed.lap(EMBEDDINGS)
    batch, changed = normalize_batch(batch)
    n.changed += changed
    n.keep_first(NORMALIZED, batch)
    outs[NORMALIZED].write(batch)
    timed.lap(NORMALIZED)
    return batch


def _predict(
    engine: Any, batch: pa.RecordBatch, source_shard: str, out: _AtomicParquet, n: _Counts, timed: _Timed
) -> None:
    """Normalized rows -> predictions, counting statuses, contract violations and the row guard."""
    table = extract_batch(engine, batch, source_shard)
    _count(n.statuses, table.column("status"))
    n.keep_first(PREDICTIONS, table)
    out.write(table)
    timed.lap(PREDICTIONS)
    n.rows_in += batch.num_rows
    n.rows_out += table.num_rows
    if table.num_rows != batch.num_rows:
        n.positions_differ = True
    elif not n.positions_differ:
        n.positions_differ = not table.column("source_position").equals(
            pa.chunked_array([batch.column("source_position")])
        )
    for b in table.to_batches():
        bad, _ = contract_violations(b)
        n.violations += pc.sum(pc.cast(bad, pa.int64())).as_py() or 0
    timed.lap(VALIDATED)


def _extra(stage: str, n: _Counts) -> dict[str, Any]:
    """The stage-specific fields of a commit marker (as the per-stage bodies write them)."""
    first = n.first.get(PREDICTIONS if stage == VALIDATED else stage)
    if stage == RAW:
        return {"upstream_invalid": n.flagged, "preview": _preview(first, ["id", "text", "source_position", "reason"])}
    if stage == NORMALIZED:
        return {"texts_changed": n.changed, "preview": _preview(first, ["id", "text", "reason"])}
    if stage == EMBEDDINGS:
        return {"with_image": n.with_image, "embedded": 0}
    return {"status_counts": dict(n.statuses), "preview": _preview(first, _RICH_PREVIEW)}


def _guard(store: Store, key: str, n: _Counts) -> list[str]:
    """The row guard from the streamed counts; positions out of order are settled from the files."""
    if n.rows_in != n.rows_out:
        return [f"{key}: {n.rows_in} input rows but {n.rows_out} output rows"]
    return row_problems(store, PREDICTIONS, key) if n.positions_differ else []


def _validated_copy(store: Store, spec: Any, fp: str, rows: int, n: _Counts, checked_s: float) -> dict[str, Any]:
    """No row broke the contract: validated_records is the predictions file, byte for byte."""
    t0 = time.perf_counter() - checked_s
    path = store.path(VALIDATED, spec.key)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    sweep_stale_tmp(path)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        shutil.copyfile(store.path(PREDICTIONS, spec.key), tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    extra = {**_extra(VALIDATED, n), "contract_violations": 0, "input_rows": n.rows_in}
    return commit_marker(store, VALIDATED, spec, fp, rows, time.perf_counter() - t0, extra)


def _chain_worker(args: tuple) -> dict[str, Any]:
    """A pool task: the partition's pass, then - while the file is hot in the page cache - what the
    run's checks (``check_facts``) and the export (``export_parts``) read from it."""
    result = process_chain(*args)
    root, key = args[0], args[1]
    if VALIDATED in result["stages"]:
        t0 = time.perf_counter()
        try:
            check_facts.partition_facts(Store(root).path(VALIDATED, key))  # stored for the run's checks
            export_parts.ensure_part(root, key)
        except Exception as exc:  # noqa: BLE001 - ahead-of-time work only: the checks and the export redo it
            log.warning("%s: check facts / export part not built ahead: %r", key, exc)
        result["facts_and_export_part_seconds"] = round(time.perf_counter() - t0, 3)
    return result


def run_chain(
    root: str,
    keys: list[str],
    backend: str = "text",
    embedder: str = "none",
    workers: int = 1,
    on_done: Callable[[dict[str, Any]], None] | None = None,
    stages: tuple[str, ...] = STAGES,
) -> list[dict[str, Any]]:
    """``process_chain`` for every key, one pool task per partition (in-process when small;
    a partition queued by ``prefetch_chain`` is taken from the pool as it is)."""
    jobs = _chain_jobs(root, keys, backend, embedder, stages)
    if workers > 1 and estimate_rows(RAW, root, keys) < POOL_MIN_ROWS:
        workers = 1  # starting spawn workers costs more than a few thousand rows take
    return run_tasks(_chain_worker, jobs, "shard_stages", workers, on_done)


def prefetch_chain(
    root: str,
    keys: list[str],
    backend: str = "text",
    embedder: str = "none",
    workers: int = 1,
    stages: tuple[str, ...] = STAGES,
) -> int:
    """Queue the one-pass chain of ``keys`` on the pool ahead of the runs that will ask for it
    (``charmeta run``: the pool stays busy across run boundaries; see ``stages.prefetch``).
    Nothing is queued when the partitions would run in-process anyway."""
    if workers < 2 or estimate_rows(RAW, root, keys) < POOL_MIN_ROWS:
        return 0
    return prefetch(_chain_worker, _chain_jobs(root, keys, backend, embedder, stages), workers)


def _chain_jobs(root: str, keys: list[str], backend: str, embedder: str, stages: tuple[str, ...]) -> dict[str, tuple]:
    return {k: (root, k, backend, embedder, False, tuple(stages)) for k in keys}


def run_stages(
    stages: list[str],
    root: str,
    keys: list[str],
    backend: str = "text",
    embedder: str = "none",
    workers: int = 1,
    on_done: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, list[str] | None]]:
    """The selected stages for ``keys``: one pass per partition when the selection covers
    the text path, else stage by stage (each stage a pool step, validated guarded).

    Returns the stats per stage (one per partition that has the stage) and, per key, the
    row guard's problems (``None`` where the guard did not run: validated was not rebuilt)."""
    order = tuple(st for st in STAGES if st in stages)
    if covers_chain(set(order)):
        results = run_chain(root, keys, backend, embedder, workers, on_done, order)
        per_stage = {st: [r["stages"][st] for r in results if st in r["stages"]] for st in order}
        return per_stage, {r["key"]: r["row_problems"] for r in results}
    store = Store(root)
    per_stage, guard = {}, {}
    for st in order:
        todo = keys
        if st == VALIDATED:
            guard = _guard_keys(store, keys, backend, embedder)
            todo = [k for k in keys if not guard.get(k)]
        per_stage[st] = run_stage(st, root, todo, backend, embedder, workers, on_done)
    return per_stage, guard


def _guard_keys(store: Store, keys: list[str], backend: str, embedder: str) -> dict[str, list[str] | None]:
    """The row guard for every key whose validated_records is about to be rebuilt."""
    out: dict[str, list[str] | None] = {}
    for k in keys:
        spec = read_registry(store.root, k)
        done = store.is_done(VALIDATED, k, partition_fingerprint(VALIDATED, spec, backend, embedder))
        out[k] = None if done else row_problems(store, PREDICTIONS, k)
    return out
