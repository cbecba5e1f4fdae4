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
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
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
    # Flags default to None: a flag given wins over CHARMETA_* in the environment, which wins over
    # the defaults (charmeta.settings.Settings).
    p.add_argument("--shard-rows", type=int, default=None, help="rows per partition (default 200000)")
    p.add_argument("--text-field", default=None, help="text column/field (default: auto-detect)")
    p.add_argument("--image-field", default=None, help="image column of Parquet/Arrow tables (default: auto-detect)")
    p.add_argument("--config", default=None, help="README config of a hub dataset to follow (default: its default)")
    p.add_argument(
        "--extractor", default=None, help="extractor backend: text (default), null, or package.module:factory"
    )
    p.add_argument(
        "--embedder",
        default=None,
        choices=["none", "auto", "clip", "siglip", "open_clip"],
        help="image embedder backend for image shards (default none; launchpad: image_models.embedder)",
    )
    p.add_argument("--image-model", default=None, help="the embedder's model: Hugging Face id or local folder")
    p.add_argument(
        "--tagger",
        default=None,
        help="WD tagger: folder with model.onnx + selected_tags.csv, or hub id (default none; image_models.tagger)",
    )
    p.add_argument("--tagger-batch", type=int, default=None, help="images per tagger call (default 16)")
    p.add_argument(
        "--captioner",
        default=None,
        help="VLM captioner: transformers folder or hub id (default none; image_models.captioner)",
    )
    p.add_argument(
        "--counter",
        default=None,
        help="character counter: auto (default: animeface, else haar), animeface, haar, animeface+haar, none",
    )
    p.add_argument("--workers", type=int, default=None, help="worker processes per stage (0 = CPU count)")
    p.add_argument("--partitions-per-run", type=int, default=None, help="partitions per Dagster run (default 10)")
    p.add_argument(
        "--dagster-home",
        default=None,
        help="Dagster instance folder (default: $DAGSTER_HOME, else <output>/.dagster_home)",
    )
    p.add_argument("--force", action="store_true", help="ignore finished outputs and rebuild every shard")
    p.add_argument(
        "--publish",
        default=None,
        help="after the export, copy validated partitions + export to this URL (s3://bucket/prefix, gs://...)",
    )
    p.set_defaults(func=run_command)


def _fail_orphaned_runs(instance: Any) -> int:
    """Runs a killed ``charmeta run`` left in STARTED would show as running forever."""
    from dagster import DagsterRunStatus, RunsFilter

    from charmeta.tmpfiles import pid_alive

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


def _settings(args: argparse.Namespace, source_uri: str, output: str) -> Any:
    """The run's ``Settings``: these flags over the ``CHARMETA_*`` environment over the defaults."""
    from charmeta.settings import Settings

    return Settings.load(
        {
            "source": source_uri,
            "output": output,
            "shard_rows": args.shard_rows,
            "text_field": args.text_field,
            "image_field": args.image_field,
            "source_config": args.config,
            "extractor": args.extractor,
            "embedder": args.embedder,
            "image_model": args.image_model,
            "tagger": args.tagger,
            "tagger_batch_size": args.tagger_batch,
            "counter": args.counter,
            "captioner": args.captioner,
            "workers": args.workers,
            "partitions_per_run": args.partitions_per_run,
            "publish": args.publish,
        }
    )


def _register(instance: Any, keys: list[str], discover_s: float, source_uri: str) -> None:
    """Register the source's shards as dynamic partitions (as the shard sensor does)."""
    from charmeta_dagster.defs.assets import SHARDS

    known = set(instance.get_dynamic_partitions(SHARDS))
    new = [k for k in keys if k not in known]
    if new:
        instance.add_dynamic_partitions(SHARDS, new)
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


@dataclass(frozen=True)
class _Launch:
    """How this ``charmeta run`` starts its Dagster runs: in process, on its instance, console logs
    at WARNING, tagged as the CLI's (with this process's id, so a later run can tell it was killed)."""

    instance: Any
    run_config: dict[str, Any]
    tags: dict[str, str]

    def execute(self, job: Any, tags: dict[str, str] | None = None) -> Any:
        """Run ``job`` to its end (``tags``: added to the run's own); its result, failed or not."""
        return job.execute_in_process(
            run_config=self.run_config, instance=self.instance, raise_on_error=False, tags={**self.tags, **(tags or {})}
        )


def _execute_ranges(
    shards_job: Any,
    chunks: list[list[str]],
    n_todo: int,
    is_done: Any,
    store: Any,
    launch: _Launch,
    progress: Any,
) -> tuple[list[str], dict[str, str]]:
    """One Dagster run per range, with a progress line each; returns the failed runs and shards.

    One bad shard must not hold back the others of its run: a failed range re-runs each of its
    unfinished shards as its own run, so only the shards that keep failing stay failed."""
    from charmeta.pipeline import graph as G
    from charmeta_dagster.defs.sensors import RANGE_END, RANGE_START

    failed_runs: list[str] = []
    failed_shards: dict[str, str] = {}
    done_shards, done_rows = 0, 0
    t_proc = time.perf_counter()

    def execute(keys_: list[str]) -> Any:
        res = launch.execute(shards_job, {RANGE_START: keys_[0], RANGE_END: keys_[-1]})
        if not res.success:  # a full disk fails every later run too: stop now, with the path and free space
            from charmeta.errors import DiskFullError, explain

            known = explain(RuntimeError(_failure_text(res)), path=store.root)
            if isinstance(known, DiskFullError):
                raise known
        return res

    for i, chunk in enumerate(chunks, 1):
        res = execute(chunk)
        state = "ok" if res.success else "FAILED"
        if not res.success:
            rest = [k for k in chunk if not is_done(k)]
            if len(chunk) > 1 and rest:
                progress.write(
                    f"  [{i}/{len(chunks)}] run {res.run_id[:8]} FAILED: re-running its {len(rest)} unfinished "
                    "shards one per run"
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
        done_rows += sum(int((store.stats(G.VALIDATED, k) or {}).get("rows") or 0) for k in chunk)
        rate = done_rows / max(time.perf_counter() - t_proc, 1e-9)
        eta = (time.perf_counter() - t_proc) / done_shards * (n_todo - done_shards)
        if progress.live and state == "ok":
            continue  # the live line shows it
        progress.write(
            f"  [{i}/{len(chunks)}] run {res.run_id[:8]} {state}: shards {done_shards}/{n_todo}, "
            f"{_fmt(done_rows)} rows, {_fmt(rate)} rows/s, ETA {eta:.0f}s"
        )
    return failed_runs, failed_shards


def _summary(
    output: str,
    home: str,
    keys: list[str],
    todo: set[str],
    skipped: int,
    elapsed: float,
    manifest_path: str,
    failed_runs: list[str],
    failed_shards: dict[str, str],
    export_ok: bool,
    log_file: str | None = None,
) -> int:
    """Print where the results are (and what failed); the exit status."""
    from charmeta.pipeline import graph as G

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
        cleaning_line = _cleaning_line(manifest.get("cleaning"))
        if cleaning_line:
            print(f"  cleaning: {cleaning_line} (report: {os.path.join(exp, 'consistency_report.md')})")
        print(f"  catalog:  {os.path.join(exp, 'catalog.duckdb')}")
        print(f"  manifest: {manifest_path}")
    print(f"  stages:   {output}/<stage>/<shard>.parquet  (stages: {', '.join(G.STAGES)})")
    print(f"  dagster:  DAGSTER_HOME={home}  (browse: charmeta ui --output {output})")
    if log_file:
        print(f"  log:      {log_file}")
    if failed_runs or not export_ok:
        for k, rid in failed_shards.items():
            print(f"  failed shard: {k} (run {rid[:8]})", file=sys.stderr)
        print(
            f"charmeta run: {len(failed_runs)} Dagster runs failed: {', '.join(r[:8] for r in failed_runs)} "
            "(see `charmeta ui`); re-run to retry only the unfinished shards",
            file=sys.stderr,
        )
        return 1
    return 0


def _cleaning_line(cleaning: dict[str, Any] | None) -> str:
    """Why the export holds fewer records than the ``ok`` count, in one line.

    Why: on the bundled sample 39 records are ``ok`` and 35 are exported; without this line
    a new user sees four records vanish (they are duplicates the cleaning dropped, counted
    only in ``manifest.json``)."""
    if not cleaning:
        return ""
    parts = [
        f"{_fmt(cleaning.get('duplicates_dropped', 0))} duplicates not exported",
        f"{_fmt(cleaning.get('identity_excluded', 0))} moved to excluded by their character's age",
        f"{_fmt(cleaning.get('fills', 0))} values filled from character profiles",
        f"{_fmt(cleaning.get('identity_conflicts', 0))} conflicts flagged",
    ]
    return ", ".join(parts)


def _failure_text(res: Any) -> str:
    """The errors of a failed in-process run's failure events, as text."""
    out = []
    for ev in res.all_events:
        if ev.is_failure:
            err = getattr(ev.event_specific_data, "error", None)
            out.append(err.to_string() if err is not None else (ev.message or ""))
    return "\n".join(out)


def _stop_local_workers(settings: Any) -> None:
    """Stop this process's local pool before the export job: no export step uses it.

    Why: a worker keeps what its partitions allocated (~1 GB after a 100k-row partition and its
    cleaning part), and the dataset-level cleaning steps peak in this process (1.6 GB at 5M)
    while the idle workers would still hold theirs: 5M with cleaning measured a 3.9 GB process
    tree before this. A later step that wants the pool starts a fresh one. Ray workers are
    remote and stay."""
    if settings.executor in ("", "local"):
        from charmeta.pipeline.executor import close_shared

        close_shared()


def _fmt(n: float) -> str:
    return f"{int(n):,}"


def run_command(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    finally:  # the workers are idle now: stop them rather than wait for their teardown at exit
        pools = sys.modules.get("charmeta_dagster.pools")
        if pools is not None:
            pools.close_all()


def _run(args: argparse.Namespace) -> int:
    """The steps of the module docstring, in order; each is a function below."""
    started_at = time.time()
    output, source_uri, log_file = _open_output(args)
    from charmeta_dagster.instance import ensure_home, resolve_home

    settings = _settings(args, source_uri, output)
    home = ensure_home(resolve_home(args.dagster_home, output))
    from charmeta.pipeline import planner
    from charmeta.pipeline.layout import Layout
    from charmeta_dagster.defs.assets import SHARDS

    t_start = time.perf_counter()
    specs, discover_s = _discover(settings, source_uri)
    store = Layout(output)
    the_plan = _plan_and_prefetch(settings, output, specs, force=args.force)
    defs, instance = _open_instance(settings, the_plan.keys, bool(the_plan.todo), discover_s, source_uri)

    todo = set(the_plan.todo)
    skipped = len(the_plan.keys) - len(todo)
    chunks = planner.run_ranges(list(instance.get_dynamic_partitions(SHARDS)), todo, settings.partitions_per_run)
    launch = _Launch(
        instance,
        run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        tags={RUNNER_TAG: "cli", PID_TAG: str(os.getpid())},
    )
    print(
        f"charmeta run: {len(the_plan.keys)} shards in {source_uri} ({skipped} already done, {len(todo)} to process "
        f"in {len(chunks)} Dagster run{'' if len(chunks) == 1 else 's'}); instance {home}",
        file=sys.stderr,
        flush=True,
    )

    failed_runs, failed_shards = _process_shards(
        defs.resolve_job_def("shards_job"), chunks, specs, the_plan, store, launch, started_at
    )
    failed_runs += _retrain_heads(defs, output, the_plan.todo, launch)
    _stop_local_workers(settings)
    export_ok, export_failed = _export(defs.resolve_job_def("export_job"), output, the_plan, launch)
    failed_runs += export_failed

    rc = _summary(
        output,
        home,
        the_plan.keys,
        todo,
        skipped,
        time.perf_counter() - t_start,
        store.export_file("manifest.json"),
        failed_runs,
        failed_shards,
        export_ok,
        log_file,
    )
    if rc == 0 and settings.publish:  # only a complete, successful export is published
        from charmeta.publish import publish

        sent = publish(output, settings.publish)
        print(f"  published: {settings.publish} ({sent['sent']} files sent, {sent['unchanged']} unchanged)")
    return rc


def _open_output(args: argparse.Namespace) -> tuple[str, str, str | None]:
    """``(output root, source URI, log file)``: the paths made absolute, the flags checked, the
    output root created and this run's log routed to ``<output>/logs/``."""
    for noisy in ("alembic", "great_expectations", "dagster"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    output = os.path.realpath(os.path.expanduser(args.output))
    source_uri = args.source if "://" in args.source else os.path.realpath(os.path.expanduser(args.source))
    if args.shard_rows is not None and args.shard_rows < 1:
        raise ConfigError("--shard-rows must be >= 1")
    os.makedirs(output, exist_ok=True)
    from charmeta.logsetup import route_logs
    from charmeta.pipeline.layout import LOGS, Layout

    log_file = route_logs(Layout(output).folder(LOGS), "run", verbose=bool(getattr(args, "verbose", False)))
    return output, source_uri, log_file


def _discover(settings: Any, source_uri: str) -> tuple[list[Any], float]:
    """The source's shards and the seconds discovery took; no readable file is an error."""
    from charmeta.sources import Source

    source = Source(
        source_uri,
        shard_rows=settings.shard_rows,
        text_field=settings.text_field or None,
        image_field=settings.image_field or None,
        config=settings.source_config or None,
    )
    t0 = time.perf_counter()
    specs = source.discover()
    discover_s = time.perf_counter() - t0
    if not specs:
        raise CharmetaError(
            f"no readable files in {source_uri} (json, jsonl, parquet, arrow, csv, txt, tar, tar.gz, zip, images,"
            " imagefolder metadata); `charmeta inspect SOURCE` shows what discovery sees"
        )
    return specs, discover_s


def _plan_and_prefetch(settings: Any, output: str, specs: list[Any], force: bool) -> Any:
    """What is left to do, known from the files alone (registry, fingerprints, commit markers);
    its one-pass builds are queued on the pool now, before Dagster loads (~2 s), and each run's
    step adopts its partitions' futures (``executor.prefetch``). Returns the ``planner.Plan``."""
    from charmeta.pipeline import planner
    from charmeta.pipeline.chain import prefetch_chain
    from charmeta.pipeline.engines import backend_identity, make_engine
    from charmeta.pipeline.image_stages import embedder_spec_of
    from charmeta.pipeline.layout import Layout
    from charmeta.sources import write_registry
    from charmeta_dagster.pools import executor_for

    workers = settings.resolved_workers()
    pool = executor_for(settings.executor, workers, settings.ray_address)  # the one the runs' steps use too
    if workers > 1 and planner.worth_a_pool(output, specs):
        from charmeta.pipeline.engines import warm

        pool.warm(warm, settings.extractor_spec())  # workers start while the rest of the set-up runs

    write_registry(output, specs)
    backend_id = backend_identity(settings.extractor_spec())
    if "unavailable" in backend_id:
        make_engine(settings.extractor_spec())  # raises the real error (missing backend, bad factory)
    emb_spec = embedder_spec_of(settings)
    the_plan = planner.plan(output, specs, backend_id, emb_spec, force=force)
    if force:
        store = Layout(output)
        for k in the_plan.keys:  # drop commit markers so every stage rebuilds
            store.drop_markers(k)
    prefetch_chain(
        output, the_plan.todo, backend=settings.extractor_spec(), embedder=emb_spec, workers=workers, executor=pool
    )
    return the_plan


def _open_instance(
    settings: Any, keys: list[str], has_work: bool, discover_s: float, source_uri: str
) -> tuple[Any, Any]:
    """``(definitions, instance)``: the code location loaded with resources bound from these
    settings (as the UI's are from its own), runs of a killed ``charmeta run`` marked failed and
    the shards registered as partitions."""
    from dagster import DagsterInstance

    from charmeta_dagster.loader import load_definitions

    defs = load_definitions(settings)
    instance = DagsterInstance.get()
    if has_work:
        from charmeta.pipeline.checks import preload_great_expectations

        preload_great_expectations()  # the run's checks need it; its import overlaps the pool's work
    orphaned = _fail_orphaned_runs(instance)
    if orphaned:
        log.info("marked %d runs of a killed charmeta run as failed", orphaned)
    _register(instance, keys, discover_s, source_uri)
    return defs, instance


def _process_shards(
    shards_job: Any,
    chunks: list[list[str]],
    specs: list[Any],
    the_plan: Any,
    store: Any,
    launch: _Launch,
    started_at: float,
) -> tuple[list[str], dict[str, str]]:
    """``shards_job`` over the run ranges, with a live progress line fed by the commit markers;
    returns the failed runs and shards (``_execute_ranges``)."""
    from charmeta.pipeline import graph as G
    from charmeta.progress import MarkerWatcher, Progress

    todo = set(the_plan.todo)
    fp = the_plan.fingerprints
    rows_of = {s.key: (s.stop - s.start) if s.stop is not None else 0 for s in specs if s.key in todo}
    progress = Progress(len(todo), sum(rows_of.values()), stream=sys.stderr)
    marker = lambda k: store.path(G.VALIDATED, k, ".json")  # noqa: E731 - a partition is done when this exists

    def rows_when_done(k: str) -> int:
        return int((store.stats(G.VALIDATED, k) or {}).get("rows") or 0)

    with MarkerWatcher(progress, rows_of, marker, since=started_at, rows_when_done=rows_when_done):
        return _execute_ranges(
            shards_job,
            chunks,
            len(todo),
            lambda k: store.is_done(G.VALIDATED, k, fp[k]),
            store,
            launch,
            progress,
        )


def _retrain_heads(defs: Any, output: str, todo: list[str], launch: _Launch) -> list[str]:
    """Image attribute heads: (re)trained when this run embedded images (later prediction runs use
    them); returns the failed run, if any."""
    from charmeta.pipeline import runner

    if not (todo and runner.embedded_images(output, todo)):
        return []
    res = launch.execute(defs.resolve_job_def("heads_job"))
    return [] if res.success else [res.run_id]


def _export(export_job: Any, output: str, the_plan: Any, launch: _Launch) -> tuple[bool, list[str]]:
    """The export, rebuilt when any partition changed or it is missing (the asset stamps its
    manifest with the input's fingerprint, ``runner.export``, whoever launched it); returns
    ``(export ok, failed runs)``."""
    from charmeta.pipeline import runner

    if runner.export_is_current(output, the_plan):
        log.info(json.dumps({"event": "export_skipped", "reason": "no shard changed"}))
        return True, []
    res = launch.execute(export_job)
    return res.success, [] if res.success else [res.run_id]
