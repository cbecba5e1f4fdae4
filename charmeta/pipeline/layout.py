"""The output root: every path under it, the commit markers, and the path guard.

Why one owner: the stages, the export, the export parts, the quarantine, the
checks' stored facts and the image heads all write under the same root. When
each built its paths by hand (``os.path.join(root, "validated_records", key +
".parquet")`` in five modules, the facts' root found as ``dirname(dirname(path))``)
only the stages went through the guard. Here a path is built only from a fixed
folder name and a validated partition key, and is checked to resolve inside the
root, so no key (``../x``, a symlinked folder) can make anything write elsewhere.

Folders under ``<root>/``::

    <stage>/<key>.parquet + <key>.json   stage output + commit marker (graph.STAGES)
    export/                              records.jsonl, catalog.duckdb, manifest.json, quarantine.parquet
    export_parts/<key>.jsonl + .json     each partition's share of the export (charmeta.pipeline.export_parts)
    check_facts/<key>.json + .parquet    what the checks read of a validated file (check_facts)
    attribute_heads/                     versioned image heads
    _shards/<key>.json, _shards.json     the shard registry (charmeta.sources)
    .dagster_home/                       the Dagster instance of this output root (charmeta_dagster)

A stage output counts as finished only when its ``.json`` commit marker exists
*and* names the fingerprint of the input it must be built from; the marker is
written last, after the Parquet was renamed into place.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

from charmeta.pipeline.graph import STAGES

EXPORT = "export"
EXPORT_PARTS = "export_parts"
CHECK_FACTS = "check_facts"
#: reference profile of label_distribution and its plots (charmeta.quality.drift)
QUALITY = "quality"
#: structured logs of the commands run on this output root
LOGS = "logs"
HEADS = "attribute_heads"
REGISTRY = "_shards"
DAGSTER_HOME = ".dagster_home"
#: Folders that hold one file (pair) per partition key.
KEYED_FOLDERS = frozenset(STAGES) | {EXPORT_PARTS, CHECK_FACTS, EXPORT}
#: Files of ``export/``.
RECORDS, CATALOG, MANIFEST, QUARANTINE = "records.jsonl", "catalog.duckdb", "manifest.json", "quarantine.parquet"

_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._~-]{0,200}$")


def atomic_json(path: str, obj: Any, *, sort_keys: bool = True, indent: int | None = None) -> None:
    """Write ``obj`` as JSON to a temp file and rename it into place."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, sort_keys=sort_keys, indent=indent)
    os.replace(tmp, path)


class Layout:
    """The output root: where every stage's Parquet lives, and nowhere else.

    Paths are built only from validated partition keys and fixed folder names,
    and checked to resolve inside the root, so data can never write elsewhere.
    """

    def __init__(self, root: str) -> None:
        self.root = os.path.realpath(os.path.expanduser(root))

    # -- paths -----------------------------------------------------------------
    def path(self, stage: str, key: str, suffix: str = ".parquet") -> str:
        """``<root>/<stage>/<key><suffix>``, guarded (unknown folder, unsafe key, escape)."""
        if stage not in KEYED_FOLDERS:
            raise ValueError(f"unknown stage {stage!r}")
        if not _KEY_RE.fullmatch(key) or ".." in key:  # fullmatch: "$" would let a trailing newline in
            raise ValueError(f"unsafe partition key {key!r}")
        path = os.path.join(self.root, stage, key + suffix)
        if os.path.commonpath([os.path.realpath(path), self.root]) != self.root:
            raise ValueError(f"partition key {key!r} escapes the output root")
        return path

    def folder(self, name: str) -> str:
        """``<root>/<name>`` for one of the fixed folders."""
        if name not in KEYED_FOLDERS | {HEADS, REGISTRY, DAGSTER_HOME, QUALITY, LOGS}:
            raise ValueError(f"unknown output folder {name!r}")
        return os.path.join(self.root, name)

    def export_file(self, name: str) -> str:
        """``<root>/export/<name>`` for one of the export's files."""
        if name not in (RECORDS, CATALOG, MANIFEST, QUARANTINE):
            raise ValueError(f"unknown export file {name!r}")
        return os.path.join(self.root, EXPORT, name)

    def part_paths(self, key: str) -> tuple[str, str]:
        """``(lines, marker)`` of a partition's export part."""
        return self.path(EXPORT_PARTS, key, ".jsonl"), self.path(EXPORT_PARTS, key, ".json")

    def facts_paths(self, key: str) -> tuple[str, str]:
        """``(facts json, GX sample parquet)`` stored for a partition's validated file."""
        return self.path(CHECK_FACTS, key, ".json"), self.path(CHECK_FACTS, key, ".parquet")

    def existing(self, stage: str, keys: list[str] | tuple[str, ...]) -> list[str]:
        """The stage files of ``keys`` that exist, in key order."""
        return [p for p in (self.path(stage, k) for k in keys) if os.path.exists(p)]

    @staticmethod
    def of_stage_file(path: str) -> tuple[Layout, str, str]:
        """``(layout, stage, key)`` of a ``<root>/<stage>/<key>.parquet`` path (checked)."""
        path = os.path.abspath(path)
        folder, name = os.path.split(path)
        root, stage = os.path.split(folder)
        key = name[: -len(".parquet")] if name.endswith(".parquet") else name
        layout = Layout(root)
        layout.path(stage, key)  # the guard
        return layout, stage, key

    # -- commit markers --------------------------------------------------------
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
        return s is not None and s.get("fingerprint") == fingerprint

    def skipped_stats(self, stage: str, key: str) -> dict[str, Any]:
        """A finished partition's marker, flagged as skipped (what a step reports for it)."""
        stats = dict(self.stats(stage, key) or {})
        stats["skipped"] = True
        return stats

    def commit_marker(
        self, stage: str, spec: Any, fp: str, rows: int, seconds: float, extra: dict[str, Any]
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
        atomic_json(self.path(stage, spec.key, ".json"), stats)
        stats["skipped"] = False
        return stats

    def drop_markers(self, key: str) -> None:
        """Remove every stage's commit marker of ``key`` (``--force``: everything rebuilds)."""
        for st in STAGES:
            try:
                os.remove(self.path(st, key, ".json"))
            except FileNotFoundError:
                pass


#: The name the runtime used before the layout had a module of its own.
Store = Layout
