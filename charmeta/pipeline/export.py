"""The dataset export: clean JSON Lines, a DuckDB catalog and ``manifest.json``.

Everything is computed by DuckDB over the per-partition ``validated_records``
Parquet files, one partition at a time (bounded memory, no global sort: output
order is partition order, then source position), with no per-row Python. Each
partition's lines and counts are built once per validated file
(``charmeta.pipeline.export_parts``, usually by the worker that built the partition), so
the export concatenates the parts and adds up their histograms. Files are built
under temp names and renamed into place, so a killed export never leaves a
half-written dataset behind.

Layout under ``<root>/export/``:

* ``records.jsonl`` - only ``ok`` records; ``id`` plus the contract keys (Title
  Case); optional keys only when evidenced (same rule as ``records.to_clean``);
* ``catalog.duckdb`` - one view per stage over exactly the current partitions,
  plus ``export_records`` and ``status_counts``;
* ``manifest.json`` - schema version + JSON Schema, counts per status, value
  distributions per attribute, code / ontology / backend versions, partitions.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import subprocess
from collections.abc import Iterable
from importlib import resources
from typing import Any

import charmeta
from charmeta import duck
from charmeta.contract import SCHEMA_VERSION, STATUSES, clean_json_schema
from charmeta.duck import sql_string
from charmeta.pipeline.export_parts import concatenate_files, current_parts, merged_counts
from charmeta.pipeline.graph import CATALOG_VIEWS, VALIDATED
from charmeta.pipeline.layout import CATALOG, EXPORT, MANIFEST, QUARANTINE, RECORDS, Layout

log = logging.getLogger("charmeta.export")

EXPORT_DIR = EXPORT
STAGE_VIEWS = CATALOG_VIEWS


def _files(root: str, stage: str, keys: Iterable[str]) -> list[str]:
    """The stage files of ``keys`` that exist (the layout's guarded paths)."""
    return Layout(root).existing(stage, list(keys))


def _read(files: list[str]) -> str:
    return "read_parquet([" + ", ".join(sql_string(f) for f in files) + "])"


def code_version() -> dict[str, str | None]:
    """Package version + git commit (when run from a checkout) for the manifest."""
    commit = None
    try:
        here = os.path.dirname(os.path.abspath(charmeta.__file__))
        commit = (
            subprocess.run(
                ["git", "-C", here, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        pass
    return {"package": charmeta.__version__, "git_commit": commit}


def ontology_version() -> str:
    """Hash of the contract and the reference vocabularies the extractors read."""
    h = hashlib.sha256()
    base = resources.files("charmeta").joinpath("data")
    names = []

    def walk(node, prefix=""):  # noqa: ANN001
        for child in sorted(node.iterdir(), key=lambda c: c.name):
            if child.is_dir():
                walk(child, prefix + child.name + "/")
            else:
                names.append((prefix + child.name, child))

    walk(base)
    for name, node in names:
        h.update(name.encode())
        h.update(node.read_bytes())
    return h.hexdigest()[:16]


def _created_at() -> str:
    """Now (UTC), or ``$SOURCE_DATE_EPOCH`` when set, so a rebuild can be byte-identical."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = _dt.datetime.fromtimestamp(int(epoch), _dt.UTC) if epoch and epoch.isdigit() else _dt.datetime.now(_dt.UTC)
    return when.isoformat(timespec="seconds")


def _cleaning_views(cat: Any, root: str, keys: list[str]) -> None:
    """Catalog views of the cleaning outputs: ``character_profiles``, ``dedup_clusters`` (every
    entry: its cluster and ``duplicate_of``; singletons are their own cluster) and ``identity``
    (fills, conflicts, exclusions, drops with consensus support and agreement)."""
    from charmeta.cleaning.dedup import clusters_path
    from charmeta.cleaning.profiles import profiles_path

    if os.path.exists(profiles_path(root)):
        cat.execute(f"CREATE VIEW character_profiles AS SELECT * FROM read_parquet({sql_string(profiles_path(root))})")
    vf = _files(root, "validated_records", keys)
    if vf and os.path.exists(clusters_path(root)):
        cat.execute(
            f"CREATE VIEW dedup_clusters AS SELECT v.id, v.source_shard, v.source_position, v.status, "
            f"coalesce(c.cluster_id, v.id) AS cluster_id, coalesce(c.cluster_size, 1) AS cluster_size, "
            f"c.duplicate_of, coalesce(c.kind, 'single') AS kind FROM (SELECT *, "
            f"regexp_extract(filename, '([^/]+)\\.parquet$', 1) AS partition FROM {_read(vf)[:-1]}, filename = true)) v "
            f"LEFT JOIN read_parquet({sql_string(clusters_path(root))}) c "
            f"ON c.partition = v.partition AND c.source_position = v.source_position"
        )
    idf = [p for p in (os.path.join(root, "cleaning", "identity", k + ".parquet") for k in keys) if os.path.exists(p)]
    if idf:
        cat.execute(f"CREATE VIEW identity AS SELECT * FROM {_read(idf)}")


def _write_records(layout: Layout, parts: list[dict[str, Any]]) -> tuple[dict[str, Any], str, int]:
    """``records.jsonl``: the parts' lines in partition order, after the dataset cleaning
    (``charmeta.cleaning``: one entry per duplicate cluster, identity fills, safety re-check;
    partitions with decisions export their cleaned lines instead). Returns ``(cleaning state,
    path, lines written)``."""
    from charmeta.cleaning.config import cleaning_enabled
    from charmeta.cleaning.run import ensure_clean, export_sources

    root = layout.root
    cleaning = ensure_clean(root, [p["key"] for p in parts]) if cleaning_enabled() else {"summary": {"enabled": False}}
    jsonl = layout.export_file(RECORDS)
    tmp = jsonl + f".tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as fh:
            sources = export_sources(parts, cleaning, lambda key: layout.part_paths(key)[0])
            exported = concatenate_files(sources, fh)
        os.replace(tmp, jsonl)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return cleaning, jsonl, exported


def _write_catalog(
    layout: Layout, keys: list[str], has_validated: bool, quarantine_path: str, jsonl: str, has_records: bool
) -> None:
    """``catalog.duckdb``: one view per stage over exactly the current partitions (absolute paths),
    plus ``status_counts``, ``quarantine``, the cleaning's views and ``export_records``; built
    under a temp name and renamed."""
    root = layout.root
    catalog = layout.export_file(CATALOG)
    tmp_cat = catalog + f".tmp-{os.getpid()}"
    for p in (tmp_cat, tmp_cat + ".wal"):
        if os.path.exists(p):
            os.remove(p)
    cat = duck.connect(tmp_cat)
    try:
        for stage in STAGE_VIEWS:
            sf = _files(root, stage, keys)
            if sf:
                cat.execute(f"CREATE VIEW {stage} AS SELECT * FROM {_read(sf)}")
        if has_validated:
            cat.execute("CREATE VIEW status_counts AS SELECT status, count(*) AS n FROM validated_records GROUP BY 1")
        cat.execute(f"CREATE VIEW quarantine AS SELECT * FROM read_parquet({sql_string(quarantine_path)})")
        _cleaning_views(cat, root, keys)
        cat.execute(
            f"CREATE VIEW export_records AS SELECT * FROM read_json_auto({sql_string(jsonl)}, format='newline_delimited')"
            if has_records
            else "CREATE VIEW export_records AS SELECT NULL::VARCHAR AS id WHERE false"
        )
    finally:
        cat.close()
    os.replace(tmp_cat, catalog)


def export_dataset(root: str, keys: list[str], extra_manifest: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write ``records.jsonl``, ``catalog.duckdb`` and ``manifest.json`` for ``keys``."""
    layout = Layout(root)
    root = layout.root
    out_dir = layout.folder(EXPORT)
    os.makedirs(out_dir, exist_ok=True)
    files = _files(root, VALIDATED, keys)
    missing = len(keys) - len(files)
    # 1. each partition's lines and counts (``export_parts``: built by the workers as partitions
    #    finish; stale or missing parts are built now), then JSONL = the parts in partition order
    parts = current_parts(root, keys)
    cleaning, jsonl, exported = _write_records(layout, parts)

    # 2. counts + distributions: the parts' histograms added up
    status_counts = {s: 0 for s in STATUSES}
    counts, distributions = merged_counts(parts)
    status_counts.update(counts)
    total = sum(status_counts.values())

    # 2b. quarantine table (every invalid record: shard + position + reason) and per-partition accounting
    from charmeta.pipeline.quarantine import QUARANTINE_FILE, partition_report, write_quarantine

    quarantine_path = layout.export_file(QUARANTINE)
    quarantine = write_quarantine(root, keys, quarantine_path)
    per_partition = partition_report(root, keys)
    done = [p for p in per_partition if p["status"] == "done"]
    records_lost = sum(int(p["records_lost"] or 0) for p in done)

    # 3. the catalog: views over exactly the current partitions (absolute paths)
    _write_catalog(layout, keys, bool(files), quarantine_path, jsonl, bool(exported))

    manifest = {
        "schema_version": SCHEMA_VERSION,
        "created_at": _created_at(),
        "records": total,
        "exported_records": exported,
        "status_counts": status_counts,
        "partitions": len(files),
        "partitions_missing": missing,
        "attribute_distributions": distributions,
        "code_version": code_version(),
        "ontology_version": ontology_version(),
        "files": {
            "records": "records.jsonl",
            "catalog": "catalog.duckdb",
            "quarantine": QUARANTINE_FILE,
            **(
                {
                    "profiles": "../cleaning/character_profiles.parquet",
                    "clusters": "../cleaning/dedup_clusters.parquet",
                    "consistency_report": "consistency_report.md",
                }
                if "fingerprint" in cleaning
                else {}
            ),
        },
        "quarantine": quarantine,
        "records_lost": records_lost,
        "cleaning": {
            # counts only: the step's seconds would make two runs' manifests differ
            **{k: v for k, v in cleaning.get("summary", {}).items() if k != "seconds"},
            "report": "consistency_report.md",
            "profiles": "../cleaning/character_profiles.parquet",
            "clusters": "../cleaning/dedup_clusters.parquet",
        },
        "invalid_rate": round(status_counts.get("invalid", 0) / total, 6) if total else 0.0,
        "partitions_report": per_partition,
        "json_schema": clean_json_schema(),
        **(extra_manifest or {}),
    }
    mpath = layout.export_file(MANIFEST)
    with open(mpath + ".tmp", "w", encoding="utf-8") as fh:
        json.dump(manifest, fh, indent=2, sort_keys=False)
    os.replace(mpath + ".tmp", mpath)
    log.info("export: %d records (%d ok exported) from %d partitions -> %s", total, exported, len(files), out_dir)
    return manifest
