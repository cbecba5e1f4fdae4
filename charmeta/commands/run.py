"""``charmeta run --source PATH_OR_URI --output DIR``: the main job, through Dagster.

What it does, in order:

1. opens a local Dagster instance (``--dagster-home``, else ``$DAGSTER_HOME``,
   else ``<output>/.dagster_home``; SQLite, telemetry off) and marks runs left
   ``STARTED`` by a killed ``charmeta run`` as failed;
2. discovers the source's shards, writes the shard registry under the output
   root and registers new shards as dynamic partitions (as the sensor does);
3. skips shards whose ``validated_records`` output is complete and was built from
   the same input + code (fingerprint), and executes ``shards_job`` over the
   rest in contiguous partition ranges of ``--partitions-per-run`` (each range is
   one Dagster run, visible in the UI; inside a run partitions go to a process pool);
4. runs ``export_job`` (skipped when nothing changed) and prints a summary.

Killing it at any point is safe: every output is written to a temp file and
renamed, and the commit marker is written last, so the next run redoes exactly
the unfinished partitions and the export never holds duplicates.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import time
from typing import Any

from charmeta.errors import CharmetaError, ConfigError

log = logging.getLogger("charmeta.run")

RUNNER_TAG = "charmeta/runner"
PID_TAG = "charmeta/pid"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "run",
        help="process every shard of a dataset and export it, through Dagster",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("--source", required=True, help="folder, file, glob or hf://datasets/<org>/<name>/<path>")
    p.add_argument("--output", required=True, help="output root (stage Parquet, export/, registry)")
    p.add_argument("--shard-rows", type=int, default=None, help="rows per partition (default 200000)")
    p.add_argument("--text-field", default="", help="text column/field (default: auto-detect)")
    p.add_argument("--image-field", default="", help="image column of Parquet/Arrow tables (default: auto-detect)")
    p.add_argument("--config", default="", help="README config of a hub dataset to follow (default: its default)")
    p.add_argument(
        "--extractor",
        default=os.environ.get("CHARMETA_EXTRACTOR", "text"),
        help="extractor backend: text (default), null, or package.module:factory",
    )
    p.add_argument(
        "--embedder",
        default=os.environ.get("CHARMETA_EMBEDDER", "none"),
        choices=["none", "auto", "clip", "siglip", "open_clip"],
        help="image embedder backend for image shards (model: CHARMETA_IMAGE_MODEL; default none)",
    )
    p.add_argument("--workers", type=int, default=0, help="worker processes per stage (0 = CPU count)")
    p.add_argument("--partitions-per-run", type=int, default=None, help="partitions per Dagster run (default 10)")
    p.add_argument("--dagster-home", default=None, help="Dagster instance folder")
    p.add_argument("--force", action="store_true", help="ignore finished outputs and rebuild every shard")
    p.add_argument(
        "--publish",
        default=os.environ.get("CHARMETA_PUBLISH", ""),
        help="after the export, copy validated partitions + export to this URL (s3://bucket/prefix, gs://...)",
    )
    p.set_defaults(func=run_command)


def _fail_orphaned_runs(instance: Any) -> int:
    """Runs a killed ``charmeta run`` left in STARTED would show as running forever."""
    from dagster import DagsterRunStatus, RunsFilter

    from charmeta_dagster.stages import pid_alive

    n = 0
    runs = instance.get_runs(
        filters=RunsFilter(
            statuses=[DagsterRunStatus.STARTED, DagsterRunStatus.STARTING, DagsterRunStatus.NOT_STARTED],
            tags={RUNNER_TAG: "cli"},
        )
    )
    for r in runs:
        pid = int(r.tags.get(PID_TAG, "0") or 0)
        if pid and pid != os.getpid() and not pid_alive(pid):
            instance.report_run_failed(r)
            n += 1
    return n


def contiguous_chunks(ordered: list[str], todo: set[str], per_run: int) -> list[list[str]]:
    """Split ``todo`` into runs of consecutive keys in the instance's partition order,
    at most ``per_run`` each (a partition range must not include keys not to run)."""
    chunks: list[list[str]] = []
    cur: list[str] = []
    for k in ordered:
        if k in todo:
            cur.append(k)
        elif cur:
            chunks.append(cur)
            cur = []
    if cur:
        chunks.append(cur)
    return [part for chunk in chunks for part in _balanced(chunk, per_run)]


def _balanced(chunk: list[str], per_run: int) -> list[list[str]]:
    """Re-cut a run of keys into equal-sized runs (25 -> 7/6/6/6, not 8/8/8/1), so no
    run ends with one lone partition keeping a single core busy while the rest idle."""
    if len(chunk) <= per_run:
        return [chunk]
    n_runs = -(-len(chunk) // per_run)
    size, extra = divmod(len(chunk), n_runs)
    out, start = [], 0
    for i in range(n_runs):
        end = start + size + (1 if i < extra else 0)
        out.append(chunk[start:end])
        start = end
    return out


def _worth_a_pool(store: Any, specs: list[Any]) -> bool:
    """Whether the run will likely use the process pool: enough rows, and some shard without
    a validated output yet (a re-run of a finished dataset must not start workers)."""
    from charmeta_dagster.stages import POOL_MIN_ROWS, VALIDATED

    todo = [s for s in specs if not os.path.exists(store.path(VALIDATED, s.key, ".json"))]
    rows = sum((s.stop - s.start) if s.stop is not None else POOL_MIN_ROWS for s in todo)
    return rows >= POOL_MIN_ROWS


def _failure_text(res: Any) -> str:
    """The errors of a failed in-process run's failure events, as text."""
    out = []
    for ev in res.all_events:
        if ev.is_failure:
            err = getattr(ev.event_specific_data, "error", None)
            out.append(err.to_string() if err is not None else (ev.message or ""))
    return "\n".join(out)


def _fmt(n: float) -> str:
    return f"{int(n):,}"


def run_command(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    finally:  # the workers are idle now: stop them rather than wait for their teardown at exit
        stages = sys.modules.get("charmeta_dagster.stages")
        if stages is not None:
            stages.close_pool()


def _run(args: argparse.Namespace) -> int:
    for noisy in ("alembic", "great_expectations", "dagster"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    output = os.path.realpath(os.path.expanduser(args.output))
    source_uri = args.source if "://" in args.source else os.path.realpath(os.path.expanduser(args.source))
    if args.shard_rows is not None and args.shard_rows < 1:
        raise ConfigError("--shard-rows must be >= 1")
    os.makedirs(output, exist_ok=True)

    from charmeta_dagster.instance import ensure_home, resolve_home

    home = ensure_home(resolve_home(args.dagster_home, output))
    # The code location reads its defaults from these, so the UI opened later on the
    # same instance points at the same dataset.
    os.environ["CHARMETA_SOURCE"] = source_uri
    os.environ["CHARMETA_OUTPUT"] = output
    if args.partitions_per_run:
        os.environ["CHARMETA_PARTITIONS_PER_RUN"] = str(args.partitions_per_run)
    if args.shard_rows:
        os.environ["CHARMETA_SHARD_ROWS"] = str(args.shard_rows)

    from charmeta.sources import DEFAULT_SHARD_ROWS, Source, write_registry
    from charmeta.sources.spec import holds_images
    from charmeta_dagster import stages as S

    t_start = time.perf_counter()
    shard_rows = args.shard_rows or DEFAULT_SHARD_ROWS
    source = Source(
        source_uri,
        shard_rows=shard_rows,
        text_field=args.text_field or None,
        image_field=args.image_field or None,
        config=args.config or None,
    )
    t0 = time.perf_counter()
    specs = source.discover()
    discover_s = time.perf_counter() - t0
    if not specs:
        raise CharmetaError(
            f"no readable files in {source_uri} (json, jsonl, parquet, arrow, csv, txt, tar, tar.gz, zip, images,"
            " imagefolder metadata); `charmeta inspect SOURCE` shows what discovery sees"
        )
    workers = args.workers if args.workers > 0 else S.default_workers()
    store = S.Store(output)
    if _worth_a_pool(store, specs):
        S.warm_pool(workers, args.extractor)  # workers start while the rest of the set-up runs

    # What is left to do is known from the files alone (registry, fingerprints, commit markers):
    # the one-pass builds are queued on the pool now, before Dagster loads (~2 s), and each
    # run's step below adopts its partitions' futures (``stages.prefetch``).
    write_registry(output, specs)
    keys = [s.key for s in specs]
    backend_id = S.backend_identity(args.extractor)
    if "unavailable" in backend_id:
        S.make_engine(args.extractor)  # raises the real error (missing backend, bad factory)
    from charmeta_dagster.image_stages import embedder_config_from_env, embedder_spec_from_env

    image_cfg = embedder_config_from_env(args.embedder)
    emb_spec = embedder_spec_from_env(args.embedder)
    fp = {
        s.key: S.stage_fingerprint(S.VALIDATED, s.fingerprint, backend_id, emb_spec if holds_images(s) else "none")
        for s in specs
    }
    todo = set(keys) if args.force else {k for k in keys if not store.is_done(S.VALIDATED, k, fp[k])}
    if args.force:
        for k in keys:  # drop commit markers so every stage rebuilds
            for st in S.STAGES:
                try:
                    os.remove(store.path(st, k, ".json"))
                except FileNotFoundError:
                    pass
    from charmeta_dagster.chain import prefetch_chain

    prefetch_chain(output, [k for k in keys if k in todo], backend=args.extractor, embedder=emb_spec, workers=workers)

    from dagster import DagsterInstance

    from charmeta_dagster.assets import PARTITIONS_PER_RUN, shards_partitions
    from charmeta_dagster.definitions import defs
    from charmeta_dagster.sensors import RANGE_END, RANGE_START

    instance = DagsterInstance.get()
    if todo:
        from charmeta_dagster.checks import preload_great_expectations

        preload_great_expectations()  # the run's checks need it; its import overlaps the pool's work
    orphaned = _fail_orphaned_runs(instance)
    if orphaned:
        log.info("marked %d runs of a killed charmeta run as failed", orphaned)
    known = set(instance.get_dynamic_partitions(shards_partitions.name))
    new = [k for k in keys if k not in known]
    if new:
        instance.add_dynamic_partitions(shards_partitions.name, new)
    log.info(
        json.dumps(
            {
                "event": "discovered",
                "shards": len(keys),
                "new_partitions": len(new),
                "seconds": round(discover_s, 2),
                "source": source_uri,
            }
        )
    )

    skipped = len(keys) - len(todo)
    ordered = list(instance.get_dynamic_partitions(shards_partitions.name))
    chunks = contiguous_chunks(ordered, todo, args.partitions_per_run or PARTITIONS_PER_RUN)

    run_config = {
        "resources": {
            "source": {
                "config": {
                    "uri": source_uri,
                    "shard_rows": shard_rows,
                    "text_field": args.text_field or "",
                    "image_field": args.image_field or "",
                    "config": args.config or "",
                }
            },
            "store": {"config": {"root": output}},
            "extractor": {"config": {"backend": args.extractor, "embedder": "none", "workers": args.workers}},
            "image_embedder": {"config": image_cfg},
        },
        "loggers": {"console": {"config": {"log_level": "WARNING"}}},
    }
    tags = {RUNNER_TAG: "cli", PID_TAG: str(os.getpid())}
    print(
        f"charmeta run: {len(keys)} shards in {source_uri} ({skipped} already done, {len(todo)} to process "
        f"in {len(chunks)} Dagster run{'' if len(chunks) == 1 else 's'}); instance {home}",
        file=sys.stderr,
        flush=True,
    )

    shards_job = defs.resolve_job_def("shards_job")
    export_job = defs.resolve_job_def("export_job")
    failed_runs = []
    done_shards, done_rows = 0, 0
    t_proc = time.perf_counter()
    failed_shards: dict[str, str] = {}

    def execute(keys_: list[str]) -> Any:
        res = shards_job.execute_in_process(
            run_config=run_config,
            instance=instance,
            raise_on_error=False,
            tags={**tags, RANGE_START: keys_[0], RANGE_END: keys_[-1]},
        )
        if not res.success:  # a full disk fails every later run too: stop now, with the path and free space
            from charmeta.errors import DiskFullError, explain

            known = explain(RuntimeError(_failure_text(res)), path=output)
            if isinstance(known, DiskFullError):
                raise known
        return res

    for i, chunk in enumerate(chunks, 1):
        res = execute(chunk)
        state = "ok" if res.success else "FAILED"
        if not res.success:
            # One bad shard must not hold back the others of its run: re-run every unfinished
            # shard of the chunk as its own run, so only the shards that keep failing stay failed.
            rest = [k for k in chunk if not store.is_done(S.VALIDATED, k, fp[k])]
            if len(chunk) > 1 and rest:
                print(
                    f"  [{i}/{len(chunks)}] run {res.run_id[:8]} FAILED: re-running its {len(rest)} unfinished "
                    "shards one per run",
                    file=sys.stderr,
                    flush=True,
                )
                for k in rest:
                    r1 = execute([k])
                    if not r1.success:
                        failed_runs.append(r1.run_id)
                        failed_shards[k] = r1.run_id
                state = "ok" if not any(k in failed_shards for k in chunk) else "FAILED"
            else:
                failed_runs.append(res.run_id)
                failed_shards.update({k: res.run_id for k in rest})
        done_shards += len(chunk)
        done_rows += sum(int((store.stats(S.VALIDATED, k) or {}).get("rows") or 0) for k in chunk)
        rate = done_rows / max(time.perf_counter() - t_proc, 1e-9)
        eta = (time.perf_counter() - t_proc) / done_shards * (len(todo) - done_shards)
        print(
            f"  [{i}/{len(chunks)}] run {res.run_id[:8]} {state}: shards {done_shards}/{len(todo)}, "
            f"{_fmt(done_rows)} rows, {_fmt(rate)} rows/s, ETA {eta:.0f}s",
            file=sys.stderr,
            flush=True,
        )

    # image attribute heads: (re)trained when this run embedded images; used by later prediction runs
    if todo and any((store.stats(S.EMBEDDINGS, k) or {}).get("embedded") for k in todo):
        res = defs.resolve_job_def("heads_job").execute_in_process(
            run_config=run_config, instance=instance, raise_on_error=False, tags=tags
        )
        if not res.success:
            failed_runs.append(res.run_id)

    # the export: rebuilt when any partition changed or it is missing
    manifest_path = os.path.join(output, "export", "manifest.json")
    inputs_fp = hashlib.sha1("|".join(f"{k}={fp[k]}" for k in keys).encode()).hexdigest()[:16]
    prev = None
    try:
        with open(manifest_path, encoding="utf-8") as fh:
            prev = json.load(fh)
    except (FileNotFoundError, ValueError):
        pass
    export_ok = True
    complete = all(store.is_done(S.VALIDATED, k, fp[k]) for k in keys)
    if prev and prev.get("inputs_fingerprint") == inputs_fp and not todo and complete:
        log.info(json.dumps({"event": "export_skipped", "reason": "no shard changed"}))
    else:
        ecfg = {**run_config}
        res = export_job.execute_in_process(run_config=ecfg, instance=instance, raise_on_error=False, tags=tags)
        export_ok = res.success
        if res.success:
            with open(manifest_path, encoding="utf-8") as fh:
                m = json.load(fh)
            m["inputs_fingerprint"] = inputs_fp if complete else None
            with open(manifest_path + ".tmp", "w", encoding="utf-8") as fh:
                json.dump(m, fh, indent=2)
            os.replace(manifest_path + ".tmp", manifest_path)
        else:
            failed_runs.append(res.run_id)

    elapsed = time.perf_counter() - t_start
    try:
        with open(manifest_path, encoding="utf-8") as fh:
            manifest = json.load(fh)
    except (FileNotFoundError, ValueError):
        manifest = None
    print(f"charmeta run: {len(keys)} shards ({len(todo)} processed, {skipped} skipped) in {elapsed:.1f}s")
    if manifest:
        counts = manifest["status_counts"]
        print(f"  records: {_fmt(manifest['records'])} | " + " | ".join(f"{k} {_fmt(v)}" for k, v in counts.items()))
        exp = os.path.join(output, "export")
        print(f"  export:   {os.path.join(exp, 'records.jsonl')} ({_fmt(manifest['exported_records'])} ok records)")
        print(f"  catalog:  {os.path.join(exp, 'catalog.duckdb')}")
        print(f"  manifest: {manifest_path}")
    print(f"  stages:   {output}/<stage>/<shard>.parquet  (stages: {', '.join(S.STAGES)})")
    print(f"  dagster:  DAGSTER_HOME={home}  (browse: charmeta ui --output {output})")
    if failed_runs or not export_ok:
        for k, rid in failed_shards.items():
            print(f"  failed shard: {k} (run {rid[:8]})", file=sys.stderr)
        print(
            f"charmeta run: {len(failed_runs)} Dagster runs failed: {', '.join(r[:8] for r in failed_runs)} "
            "(see `charmeta ui`); re-run to retry only the unfinished shards",
            file=sys.stderr,
        )
        return 1
    if args.publish:  # only a complete, successful export is published
        from charmeta.publish import publish

        sent = publish(output, args.publish)
        print(f"  published: {args.publish} ({sent['sent']} files sent, {sent['unchanged']} unchanged)")
    return 0
