"""``charmeta bench``: synthetic data, the DuckDB floor, core extraction, ``extract`` CLI, end to end.

Every figure is printed with the machine it came from and appended to
``docs/benchmarks.md``; a stage that fails or times out is reported as
``not available`` with its reason instead of failing the bench. No figure is asserted here: the issue's
targets are printed next to the measurement.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from charmeta.bench.stages import StageResult

#: The issue's target for ``charmeta extract`` on one core.
EXTRACT_TARGET_RPS = 20_000
#: Shards added to the source after the end-to-end run (the incremental stage).
NEW_SHARDS = 10


def _floor(work: Path, shard_glob: str, args: argparse.Namespace, ontology: str, name: str) -> StageResult:
    """One DuckDB floor run (``charmeta.bench.floor``) joined to ``ontology``'s tag table."""
    from charmeta.bench.stages import run_child, worker_cmd

    cmd = ["--glob", shard_glob, "--out", str(work / f"floor-{args.rows}-{ontology}.parquet"), "--ontology", ontology]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    res = run_child(name, worker_cmd("floor", *cmd), args.rows, json_result=True, timeout=args.timeout)
    if res.available:
        res.note = f"{res.extra.get('threads')} threads; {res.extra.get('ontology')}"
    return res


def _link(folder: Path, files: list[Path], fresh: bool = False, prefix: str = "") -> None:
    """Symlink ``files`` into ``folder`` (as ``<prefix><name>``); ``fresh``: empty it first."""
    if fresh:
        shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    for f in files:
        link = folder / (prefix + f.name)
        if not link.is_symlink():
            link.symlink_to(f.resolve())


def _did(res: StageResult) -> str:  # noqa: F821 - charmeta.bench.stages, imported lazily
    """What ``charmeta run`` said it did: ``N processed, M skipped``."""
    import re

    m = re.search(r"\((\d+) processed, (\d+) skipped\)", res.extra.get("stdout", ""))
    return f"{m.group(1)} shards processed, {m.group(2)} skipped" if m else "processed / skipped counts not printed"


PREAMBLE = """# Benchmarks

Produced by `make bench` / `charmeta bench --rows N` (`charmeta/bench/`). Each run
appends a section: the machine, then one row per stage. Every stage runs in its own
child process; *wall* is that process start to exit, *work* the timed loop the child
reports (without interpreter start-up or model load), rows/s uses *work* when there
is one. Peak RSS is sampled every 50 ms over the process tree (psutil when installed,
else /proc); for in-process stages the child's own `ru_maxrss` is used when larger.

Stages:

- **synth**: `charmeta synth` writing the input shards (Parquet, zstd), or `reused`.
- **duckdb floor**: one DuckDB query over the same shards: read text, split tags
  (`,` for ordered tags, space for raw Danbooru), lower-case, `_` -> space, unescape
  parentheses, join the engine's compiled tag index (every tag the extractor looks up,
  ~25k (tag, attribute, value) rows), group by entry, write Parquet. The least any tag
  pipeline can do; end to end is quoted as a multiple of it.
- **duckdb floor, JSON tags**: the same query joined to the ~600-row table read from
  `charmeta/data/ontology/*.json` alone (no colour x garment expansions, no character
  names): the floor of reports before 2026-11-27, kept so figures stay comparable.
- **core extraction**: `Engine.default().process_batch(ids, texts)` over the shards in
  batches, one core.
- **prompt-style entries / prose entries**: `Engine.process_batch` over the texts of
  `tests/data/prompt_set.jsonl` / `prose_set.jsonl` cycled to `--kinds-rows` entries, one
  core: these kinds take the per-entry reading path. The note gives the first pass over the
  distinct texts with cold caches.
- **extract CLI**: `charmeta extract --input X.jsonl --output Y.jsonl` on synthetic JSONL
  captions (target: >= 20,000 entries/s on one core; rows/s here is over the whole
  process wall, start-up included).
- **end to end**: `charmeta run --source <shards> --output <dir>`, process tree.
- **stage X** (under end to end): rows/s of each pipeline stage of that run, from its commit
  markers (rows written and seconds taken, summed over the partitions: worker time).
- **re-run, nothing new**: the same command again (every shard is skipped).
- **10 new shards**: 10 more synthetic shards (another seed) linked into the source,
  the same command again: only those are processed (the export is rebuilt over all).

"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("bench", help="benchmark: DuckDB floor, core extraction, extract CLI, end to end")
    p.add_argument("--rows", type=int, default=200_000, help="synthetic rows (default 200000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", default="out/bench", help="where shards and outputs go (default out/bench)")
    p.add_argument("--extract-rows", type=int, default=100_000, help="captions for the extract CLI stage")
    p.add_argument("--batch-rows", type=int, default=32_768, help="batch size for core extraction (the pipeline's)")
    p.add_argument("--threads", type=int, default=None, help="DuckDB threads for the floor (default: all)")
    p.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=("floor", "core", "kinds", "extract", "e2e", "containers", "image-backends"),
        help="skip a stage (repeatable)",
    )
    p.add_argument("--kinds-rows", type=int, default=20_000, help="entries per prompt-style / prose stage")
    p.add_argument("--images", type=int, default=1000, help="images per container layout (default 1000)")
    p.add_argument("--timeout", type=float, default=3600, help="seconds per stage before it is killed")
    p.add_argument("--report", default=None, help="Markdown file to append to (default docs/benchmarks.md)")
    p.add_argument("--no-report", action="store_true", help="print only, write no Markdown")
    p.add_argument(
        "--image-backends",
        action="store_true",
        help="only the image backends: CPU images/s of decode, animeface, colours, tagger on samples/drawings",
    )
    p.add_argument("--tagger", default=None, help="with --image-backends: a WD tagger folder (default: a tiny one)")
    p.set_defaults(func=run)


def run_images(args: argparse.Namespace) -> int:
    """``charmeta bench --image-backends``: per-backend CPU images/s on the shipped drawings."""
    from charmeta.bench import machine
    from charmeta.images.backend_bench import format_rows
    from charmeta.images.backend_bench import run as bench_images

    print("machine:", ", ".join(f"{k}={v}" for k, v in machine.describe().items()))
    print(format_rows(bench_images(tagger=args.tagger)))
    return 0


def image_backend_results(tagger: str | None = None, **kw: Any) -> list[Any]:
    """``charmeta.images.backend_bench`` rows as bench rows (``image: <backend>``): CPU images/s,
    with images per CPU-second in the note (the figure to compare on a loaded machine)."""
    from charmeta.bench.stages import StageResult
    from charmeta.images.backend_bench import run as bench_images

    out = []
    for r in bench_images(tagger=tagger, **kw):
        ok = r["seconds"] is not None
        note = r["note"] + (f"; {r['images_per_cpu_s']} images/CPU-s" if ok and r.get("images_per_cpu_s") else "")
        out.append(
            StageResult(
                f"image: {r['stage']}", ok, r["images"], r["seconds"] or 0.0, r["seconds"] if ok else None, note=note
            )
        )
    return out


def _default_report() -> Path:
    root = Path(__file__).resolve().parents[2]
    return (root if (root / "docs").is_dir() else Path.cwd()) / "docs" / "benchmarks.md"


def run(args: argparse.Namespace) -> int:
    if getattr(args, "image_backends", False):
        return run_images(args)
    from charmeta.bench import machine, report
    from charmeta.bench.data import ensure_synth
    from charmeta.bench.stages import StageResult, cli_cmd, pipeline_stage_results, run_child, worker_cmd
    from charmeta.errors import ConfigError

    if args.rows < 1 or args.extract_rows < 1:
        raise ConfigError("--rows and --extract-rows must be >= 1")

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    results: list[StageResult] = []
    summary: list[str] = []

    t0 = time.perf_counter()
    shards, reused = ensure_synth(work, args.rows, args.seed, log=log)
    synth_s = time.perf_counter() - t0
    # a reused data set has no generation rate to report
    results.append(
        StageResult(
            "synth (parquet)",
            True,
            args.rows,
            0.0 if reused else synth_s,
            note=f"reused {shards.name}" if reused else f"wrote {shards.name}",
        )
    )
    shard_glob = str(shards / "*.parquet")

    floor = json_floor = None
    if "floor" not in args.skip:
        log("bench: duckdb floor ...")
        floor = _floor(work, shard_glob, args, "engine", "duckdb floor")
        json_floor = _floor(work, shard_glob, args, "json", "duckdb floor, JSON tags")
        results.extend([floor, json_floor])

    if "core" not in args.skip:
        log("bench: core extraction ...")
        core = run_child(
            "core extraction",
            worker_cmd("core", "--glob", shard_glob, "--batch-rows", str(args.batch_rows)),
            args.rows,
            json_result=True,
            timeout=args.timeout,
        )
        if core.available:
            core.note = f"1 core, batches of {args.batch_rows:,}; engine load {core.extra.get('load_seconds', 0):.2f}s"
        results.append(core)

    if "kinds" not in args.skip:
        data = Path(__file__).resolve().parents[2] / "tests" / "data"
        for kind, file in (("prompt-style", "prompt_set.jsonl"), ("prose", "prose_set.jsonl")):
            log(f"bench: {kind} entries ...")
            res = run_child(
                f"{kind} entries",
                worker_cmd(
                    "kinds", "--labeled", str(data / file), "--rows", str(args.kinds_rows), "--batch-rows", "4096"
                ),
                args.kinds_rows,
                json_result=True,
                timeout=args.timeout,
            )
            if res.available:
                first = res.extra.get("first_pass_seconds", 0) or 0
                distinct = res.extra.get("distinct", 0)
                cold = f"{distinct / first:,.0f}/s" if first else "n/a"
                res.note = f"{distinct} texts of {file} cycled, 1 core; first pass (cold caches) {cold}"
                summary.append(f"{kind}: {res.rows_per_s:,.0f} entries/s (first pass over the distinct texts {cold})")
            results.append(res)

    if "extract" not in args.skip:
        log("bench: extract CLI ...")
        jdir, _ = ensure_synth(work, args.extract_rows, args.seed, fmt="jsonl", shards=1, log=log)
        out = work / f"extract-{args.extract_rows}.jsonl"
        ex = run_child(
            "extract CLI",
            cli_cmd("extract", "--input", str(jdir / "part-00000.jsonl"), "--output", str(out)),
            args.extract_rows,
            timeout=args.timeout,
        )
        if ex.available and ex.rows_per_s:
            verdict = "meets" if ex.rows_per_s >= EXTRACT_TARGET_RPS else "BELOW"
            ex.note = f"{verdict} the {EXTRACT_TARGET_RPS:,}/s one-core target"
            summary.append(
                f"extract CLI: {ex.rows_per_s:,.0f} entries/s over the process wall ({verdict} >= {EXTRACT_TARGET_RPS:,}/s)"
            )
        results.append(ex)

    if "e2e" not in args.skip:
        log("bench: end to end (charmeta run) ...")
        out_dir = work / f"run-{args.rows}"
        shutil.rmtree(out_dir, ignore_errors=True)
        # the run reads a folder of links to the shards, so the incremental stage can add shards to it
        source = work / f"run-{args.rows}-source"
        originals = sorted(shards.glob("*.parquet"))
        _link(source, originals, fresh=True)
        run_cmd = cli_cmd("run", "--source", str(source), "--output", str(out_dir))
        e2e = run_child("end to end", run_cmd, args.rows, timeout=args.timeout)
        results.append(e2e)
        if e2e.available:
            from charmeta.pipeline.stages import STAGES

            results.extend(pipeline_stage_results(out_dir, STAGES))
        if e2e.available and floor is not None and floor.available and floor.seconds > 0:
            ratio = e2e.wall_s / floor.seconds
            e2e.note = f"{ratio:.1f}x the DuckDB floor"
            summary.append(
                f"end to end / DuckDB floor: {ratio:.1f}x the floor's time "
                f"({e2e.rows_per_s:,.0f} vs {floor.rows_per_s:,.0f} rows/s)"
            )
            if json_floor is not None and json_floor.available and json_floor.seconds > 0:
                summary.append(
                    f"end to end / DuckDB floor with the JSON-only tag table (the floor before "
                    f"2026-11-27): {e2e.wall_s / json_floor.seconds:.1f}x"
                )
        if e2e.available:
            log("bench: re-run with every shard done ...")
            again = run_child("re-run, nothing new", run_cmd, 0, timeout=args.timeout)
            again.note = _did(again)
            results.append(again)
            per_shard = -(-args.rows // max(1, len(originals)))
            log(f"bench: {NEW_SHARDS} new shards ...")
            extra_dir, _ = ensure_synth(work, NEW_SHARDS * per_shard, args.seed + 1, shards=NEW_SHARDS, log=log)
            _link(source, sorted(extra_dir.glob("*.parquet")), prefix="new-")
            inc = run_child(f"{NEW_SHARDS} new shards", run_cmd, NEW_SHARDS * per_shard, timeout=args.timeout)
            inc.note = _did(inc) + "; export rebuilt over all shards"
            results.append(inc)

    if "containers" not in args.skip:
        from charmeta.bench.containers import bench_containers

        log(f"bench: image containers, {args.images:,} images each (read + decode) ...")
        results.extend(bench_containers(work, args.images, args.seed, args.timeout, log))

    if "image-backends" not in args.skip:
        log("bench: image backends on samples/drawings (decode, animeface, colours, haar, tagger) ...")
        results.extend(image_backend_results(args.tagger))

    print(report.console_table(results))
    for line in summary:
        print(line)
    if not args.no_report:
        path = Path(args.report) if args.report else _default_report()
        params = {"rows": f"{args.rows:,}", "seed": str(args.seed), "shards": str(len(list(shards.glob("*.parquet"))))}
        report.append(path, report.markdown_section(results, machine.describe(), params, summary), PREAMBLE)
        log(f"bench: appended results to {path}")
    return 0
