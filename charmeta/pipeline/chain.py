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

import numpy as np
import pyarrow as pa

from charmeta.pipeline import check_facts, export_parts
from charmeta.pipeline.executor import Executor, local_executor, prefetch, run_tasks
from charmeta.pipeline.graph import (
    EMBEDDINGS,
    LINEAR,
    NORMALIZED,
    NORMALIZED_IMAGES,
    PREDICTIONS,
    RAW,
    STAGES,
    VALIDATED,
    carries_images,
    stage_schema,
)
from charmeta.pipeline.layout import Layout
from charmeta.pipeline.planner import small_step
from charmeta.pipeline.stages import (
    BLOCKS,
    PredictionsBlock,
    ValidatedBlock,
    _AtomicParquet,
    partition_fingerprint,
    process_partition,
    row_problems,
    run_stage,
)
from charmeta.sources import read_registry
from charmeta.tmpfiles import sweep_stale_tmp

log = logging.getLogger("charmeta.pipeline")


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
    hot: list[tuple[pa.Array, pa.Array]] | None = None,
) -> dict[str, Any]:
    """Build every stage of ``stages`` for one partition (skipping finished ones).

    Returns ``{"key", "stages": {stage: stats}, "row_problems": [...] | None}``: the row
    guard's findings (``None`` when it did not run); a partition with problems has no
    ``validated_records`` stats (it was not built). ``hot``: a list that receives the
    ``(source_position, text)`` columns of each normalized batch when this pass writes
    ``normalized_records`` (the cleaning part's texts, without reading the file back)."""
    store = Layout(root)
    spec = read_registry(store.root, key)
    fps = {st: partition_fingerprint(st, spec, backend, embedder) for st in stages}
    todo = {st for st in stages if force or not store.is_done(st, key, fps[st])}
    stats = {st: store.skipped_stats(st, key) for st in stages if st not in todo}
    if carries_images(spec):
        return _per_stage(store, spec, [st for st in STAGES if st in todo], backend, embedder, stats)
    start = next((st for st in LINEAR if st in todo), None)
    problems: list[str] | None = None
    if start in (RAW, NORMALIZED, PREDICTIONS):
        built, problems = _stream(
            store,
            spec,
            start,
            fps,
            backend,
            with_embeddings=EMBEDDINGS in todo,
            copy_validated=VALIDATED in todo,
            hot=hot,
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
    store: Layout, spec: Any, todo: list[str], backend: str, embedder: str, stats: dict[str, dict[str, Any]]
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


class _Stream:
    """The blocks of one pass and the writers of the stages it builds."""

    def __init__(self, store: Layout, spec: Any, start: str, backend: str, with_embeddings: bool) -> None:
        self.start = start
        self.builds = [st for st in (RAW, NORMALIZED, PREDICTIONS) if LINEAR.index(st) >= LINEAR.index(start)]
        if with_embeddings and start != PREDICTIONS:
            self.builds.insert(1, EMBEDDINGS)
        # validated runs as a check only: its file is a copy of predictions when no row breaks the contract
        self.blocks = {st: BLOCKS[st](store, spec, backend) for st in [*self.builds, VALIDATED]}
        self.outs = {st: _AtomicParquet(store.path(st, spec.key), stage_schema(st)) for st in self.builds}

    def source(self) -> Iterator[pa.RecordBatch]:
        """Batches entering the stream: source rows (raw), or the input file of the first stage built."""
        return self.blocks[self.start].inputs()

    def through(self, stage: str, batch: pa.RecordBatch | pa.Table, timed: _Timed) -> pa.RecordBatch | pa.Table:
        """``batch`` through one block, its output written when the stage is built."""
        out = self.blocks[stage].process(batch)
        if stage in self.outs:
            self.outs[stage].write(out)
        timed.lap(stage)
        return out


def _stream(
    store: Layout,
    spec: Any,
    start: str,
    fps: dict[str, str],
    backend: str,
    with_embeddings: bool,
    copy_validated: bool,
    hot: list[tuple[pa.Array, pa.Array]] | None = None,
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Stream the partition from ``start`` through predictions; commit every stage built
    and, when the contract and the row guard hold, validated as a copy of predictions.
    Returns the stats of the stages committed and the guard's problems (``hot``: see
    ``process_chain``; left empty unless normalized_records is written and committed)."""
    s = _Stream(store, spec, start, backend, with_embeddings)
    timed = _Timed()
    texts: list[tuple[pa.Array, pa.Array]] = []
    keep = hot is not None and NORMALIZED in s.outs
    try:
        for batch in s.source():
            timed.lap(start)
            if start != PREDICTIONS:
                if RAW in s.outs:
                    s.through(RAW, batch, timed)
                if EMBEDDINGS in s.outs:
                    s.through(EMBEDDINGS, batch, timed)
                batch = s.through(NORMALIZED, batch, timed)
                if keep:
                    texts.append((batch.column("source_position"), batch.column("text")))
            table = s.through(PREDICTIONS, batch, timed)
            for b in table.to_batches():
                s.through(VALIDATED, b, timed)
        for st in s.builds:
            s.outs[st].commit()
        if keep and hot is not None:
            hot.extend(texts)
    except BaseException:
        for out in s.outs.values():
            out.abort()
        raise
    stats = {
        st: store.commit_marker(st, spec, fps[st], s.outs[st].rows, timed.seconds.get(st, 0.0), s.blocks[st].extra())
        for st in s.builds
    }
    predictions = s.blocks[PREDICTIONS]
    assert isinstance(predictions, PredictionsBlock)
    problems = predictions.guard_problems()
    validated = s.blocks[VALIDATED]
    assert isinstance(validated, ValidatedBlock)
    if copy_validated and not problems and not validated.violations:
        rows = s.outs[PREDICTIONS].rows
        stats[VALIDATED] = _validated_copy(
            store, spec, fps[VALIDATED], rows, validated, timed.seconds.get(VALIDATED, 0.0)
        )
    return stats, problems


def _validated_copy(
    store: Layout, spec: Any, fp: str, rows: int, block: ValidatedBlock, checked_s: float
) -> dict[str, Any]:
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
    return store.commit_marker(VALIDATED, spec, fp, rows, time.perf_counter() - t0, block.extra())


def _chain_worker(args: tuple) -> dict[str, Any]:
    """A pool task: the partition's pass, then - while the file is hot in the page cache - what the
    run's checks (``check_facts``) and the export (``export_parts``) read from it."""
    from charmeta.cleaning.config import cleaning_enabled

    hot: list[tuple[pa.Array, pa.Array]] | None = [] if cleaning_enabled() else None
    root, key, backend, embedder, force, stages = args  # _chain_jobs
    result = process_chain(root, key, backend, embedder, force, stages, hot=hot)
    if VALIDATED in result["stages"]:
        t0 = time.perf_counter()
        try:
            check_facts.partition_facts(Layout(root).path(VALIDATED, key))  # stored for the run's checks
            # the normalized texts this pass wrote, still in memory: the cleaning part's tags
            # without reading normalized_records back (~0.04 s of CPU per 100k rows)
            export_parts.ensure_part(root, key, texts=_hot_texts(hot))
        except Exception as exc:  # noqa: BLE001 - ahead-of-time work only: the checks and the export redo it
            log.warning("%s: check facts / export part not built ahead: %r", key, exc)
        result["facts_and_export_part_seconds"] = round(time.perf_counter() - t0, 3)
    return result


def _hot_texts(hot: list[tuple[Any, Any]] | None) -> tuple[np.ndarray, pa.ChunkedArray] | None:
    """The ``(source_position, text)`` columns ``_stream`` kept, as one array and one chunked array."""
    if not hot:
        return None
    pos = np.concatenate([np.asarray(p.to_numpy()) for p, _ in hot])
    chunks = [c for _, t in hot for c in (t.chunks if isinstance(t, pa.ChunkedArray) else [t])]
    return pos, pa.chunked_array(chunks, type=hot[0][1].type)


def run_chain(
    root: str,
    keys: list[str],
    backend: str = "text",
    embedder: str = "none",
    workers: int = 1,
    on_done: Callable[[dict[str, Any]], None] | None = None,
    stages: tuple[str, ...] = STAGES,
    executor: Executor | None = None,
) -> list[dict[str, Any]]:
    """``process_chain`` for every key, one pool task per partition (in-process when small;
    a partition queued by ``prefetch_chain`` is taken from the pool as it is)."""
    jobs = _chain_jobs(root, keys, backend, embedder, stages)
    if workers > 1 and (executor is None or executor.should_inline(1)) and small_step(RAW, root, keys):
        executor = local_executor(1)  # starting spawn workers costs more than a few thousand rows take
    return run_tasks(_chain_worker, jobs, "shard_stages", executor or local_executor(workers), on_done)


def prefetch_chain(
    root: str,
    keys: list[str],
    backend: str = "text",
    embedder: str = "none",
    workers: int = 1,
    stages: tuple[str, ...] = STAGES,
    executor: Executor | None = None,
) -> int:
    """Queue the one-pass chain of ``keys`` on the pool ahead of the runs that will ask for it
    (``charmeta run``: the pool stays busy across run boundaries; see ``executor.prefetch``).
    Nothing is queued when the partitions would run in-process anyway."""
    executor = executor or local_executor(workers)
    if executor.workers < 2 or (executor.should_inline(1) and small_step(RAW, root, keys)):
        return 0
    return prefetch(_chain_worker, _chain_jobs(root, keys, backend, embedder, stages), executor)


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
    executor: Executor | None = None,
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, list[str] | None]]:
    """The selected stages for ``keys``: one pass per partition when the selection covers
    the text path, else stage by stage (each stage a pool step, validated guarded).

    Returns the stats per stage (one per partition that has the stage) and, per key, the
    row guard's problems (``None`` where the guard did not run: validated was not rebuilt)."""
    order = tuple(st for st in STAGES if st in stages)
    if covers_chain(set(order)):
        results = run_chain(root, keys, backend, embedder, workers, on_done, order, executor)
        per_stage = {st: [r["stages"][st] for r in results if st in r["stages"]] for st in order}
        return per_stage, {r["key"]: r["row_problems"] for r in results}
    store = Layout(root)
    per_stage, guard = {}, {}
    for st in order:
        todo = keys
        if st == VALIDATED:
            guard = _guard_keys(store, keys, backend, embedder)
            todo = [k for k in keys if not guard.get(k)]
        per_stage[st] = run_stage(st, root, todo, backend, embedder, workers, on_done, executor)
    return per_stage, guard


def _guard_keys(store: Layout, keys: list[str], backend: str, embedder: str) -> dict[str, list[str] | None]:
    """The row guard for every key whose validated_records is about to be rebuilt."""
    out: dict[str, list[str] | None] = {}
    for k in keys:
        spec = read_registry(store.root, k)
        done = store.is_done(VALIDATED, k, partition_fingerprint(VALIDATED, spec, backend, embedder))
        out[k] = None if done else row_problems(store, PREDICTIONS, k)
    return out
