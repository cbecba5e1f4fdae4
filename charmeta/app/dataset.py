"""The Dataset tab: an export folder (``charmeta run --output DIR``) as counts, plots and tables.

Why from the manifest: ``export/manifest.json`` already holds the status counts,
per-attribute value distributions and quarantine reasons of the whole dataset
(added up from the per-partition parts), so opening a 5M-record export reads a
few kilobytes; only the tables (quarantine, profiles, clusters) are read, with a
row limit, by DuckDB. Character profiles and duplicate clusters are optional
outputs: shown when their files exist, ``not built yet`` otherwise.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Rows shown of each table (the files can hold millions).
MAX_TABLE_ROWS = 500
#: Names the optional cleaning outputs may have, under ``cleaning/``, ``export/`` or the output root
#: (the cleaning stage writes ``<root>/cleaning/<name>.parquet`` and lists it in the manifest's ``files``).
OPTIONAL_TABLES = {
    "character_profiles": ("character_profiles", "profiles"),
    "dedup_clusters": ("dedup_clusters", "duplicate_clusters", "duplicates"),
}
#: The manifest's ``files`` key of each optional table.
MANIFEST_KEYS = {"character_profiles": "profiles", "dedup_clusters": "clusters"}
TABLE_EXTS = (".parquet", ".jsonl", ".json", ".csv")


class DatasetError(ValueError):
    """The folder is not an export; the message says what to open instead."""


@dataclass
class TableView:
    """A table read with a row limit, or why it is not there."""

    headers: list[str] = field(default_factory=list)
    rows: list[list[Any]] = field(default_factory=list)
    total: int = 0
    path: str | None = None
    note: str = ""


@dataclass
class DatasetView:
    root: str
    manifest: dict[str, Any]
    status_counts: dict[str, int]
    distributions: dict[str, dict[str, int]]
    quarantine: TableView
    quarantine_by_reason: dict[str, int]
    tables: dict[str, TableView]

    def summary(self) -> str:
        m = self.manifest
        counts = " · ".join(f"{k} {v:,}" for k, v in self.status_counts.items())
        lines = [
            f"**{m.get('records', 0):,} records** in `{self.root}` ({m.get('partitions', '?')} partitions, "
            f"{m.get('exported_records', 0):,} in the clean export): {counts}",
            f"schema {m.get('schema_version', '?')} · created {m.get('created_at', '?')} · "
            f"records lost {m.get('records_lost', '?')} · invalid rate {m.get('invalid_rate', '?')}",
        ]
        return "  \n".join(lines)


def find_export(folder: str | Path) -> Path:
    """The ``export/`` folder of an output root, or the folder itself when it is one."""
    p = Path(str(folder)).expanduser()
    if not str(folder).strip():
        raise DatasetError("no folder given: enter an output folder of `charmeta run` (e.g. out/demo)")
    if not p.exists():
        raise DatasetError(f"{p} does not exist: run `charmeta run --source samples/ --output {p}` (or `make demo`)")
    for cand in (p / "export", p):
        if (cand / "manifest.json").is_file():
            return cand
    raise DatasetError(f"{p} has no export/manifest.json: is it the --output folder of a finished `charmeta run`?")


def load_dataset(folder: str | Path) -> DatasetView:
    export = find_export(folder)
    try:
        manifest = json.loads((export / "manifest.json").read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{export / 'manifest.json'} is not readable JSON ({exc})") from exc
    if not isinstance(manifest, dict) or "status_counts" not in manifest:
        raise DatasetError(f"{export / 'manifest.json'} is not a charmeta manifest (no status_counts)")
    quarantine_meta = manifest.get("quarantine") or {}
    qfile = export / str(quarantine_meta.get("file") or "quarantine.parquet")
    quarantine = read_table(qfile) if qfile.is_file() else TableView(note="no quarantine file (no invalid records)")
    files = manifest.get("files") if isinstance(manifest.get("files"), dict) else {}
    tables = {
        name: _optional(export, name, stems, files.get(MANIFEST_KEYS[name])) for name, stems in OPTIONAL_TABLES.items()
    }
    return DatasetView(
        root=str(export.parent if export.name == "export" else export),
        manifest=manifest,
        status_counts={k: int(v) for k, v in (manifest.get("status_counts") or {}).items()},
        distributions={k: dict(v) for k, v in (manifest.get("attribute_distributions") or {}).items()},
        quarantine=quarantine,
        quarantine_by_reason={k: int(v) for k, v in (quarantine_meta.get("by_reason") or {}).items()},
        tables=tables,
    )


def _optional(export: Path, name: str, stems: tuple[str, ...], listed: object = None) -> TableView:
    if isinstance(listed, str) and listed:
        f = (export / listed).resolve()
        if f.is_file() and f.suffix in TABLE_EXTS:
            return read_table(f)
    for base in (export.parent / "cleaning", export, export.parent):
        for stem in stems:
            for ext in TABLE_EXTS:
                f = base / f"{stem}{ext}"
                if f.is_file():
                    return read_table(f)
            d = base / stem
            if d.is_dir():
                files = sorted(x for x in d.iterdir() if x.suffix in (".parquet", ".jsonl"))
                if files:
                    return read_table(files[0].parent / f"*{files[0].suffix}")
    return TableView(note=f"{name.replace('_', ' ')}: not built yet (no {stems[0]} file in {export})")


def read_table(path: str | Path, limit: int = MAX_TABLE_ROWS) -> TableView:
    """First ``limit`` rows of a Parquet / JSON / CSV file (or glob) via DuckDB; a bad file -> a note."""
    from charmeta.duck import connect, sql_string

    p = str(path)
    reader = {
        ".parquet": "read_parquet",
        ".jsonl": "read_json_auto",
        ".json": "read_json_auto",
        ".csv": "read_csv_auto",
    }[Path(p).suffix.lower()]
    con = connect()
    try:
        rel = con.sql(f"SELECT * FROM {reader}({sql_string(p)})")
        total = int(con.sql(f"SELECT count(*) FROM {reader}({sql_string(p)})").fetchall()[0][0])
        headers = list(rel.columns)
        rows = [[_cell(v) for v in r] for r in rel.limit(limit).fetchall()]
    except Exception as exc:  # a damaged optional file must not break the tab
        return TableView(path=p, note=f"cannot read {Path(p).name}: {type(exc).__name__}: {exc}".splitlines()[0])
    finally:
        con.close()
    note = f"{total:,} rows in `{Path(p).name}`" + (f" (first {limit} shown)" if total > limit else "")
    return TableView(headers, rows, total, p, note)


def _cell(v: Any) -> Any:
    if isinstance(v, (list, dict)):
        return json.dumps(v, ensure_ascii=False, default=str)
    return v
