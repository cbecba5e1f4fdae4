"""The steps every launcher runs the same way: discover + register, plan, export + stamp.

``charmeta run``, the shard sensor and the assets launched from the UI or the
daemon call these functions, so a dataset built either way ends with the same
files and the same manifest: the export is stamped with the fingerprint of the
input it describes (every partition's validated fingerprint) whoever ran it,
and ``charmeta run`` skips an export whose stamp matches.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from charmeta.pipeline import planner
from charmeta.pipeline.engines import backend_identity
from charmeta.pipeline.layout import MANIFEST, Layout
from charmeta.sources import Source, read_registry, write_registry


def discover(root: str, source: Source) -> list[Any]:
    """The source's shard specs, written to the registry under ``root`` (atomic per file)."""
    specs = source.discover()
    write_registry(root, specs)
    return specs


def registered_plan(root: str, keys: Sequence[str], backend: str, embedder: str) -> planner.Plan:
    """The plan of the registered partitions ``keys`` (specs read from the registry)."""
    specs = [read_registry(root, k) for k in keys]
    return planner.plan(root, specs, backend_identity(backend), embedder)


def export(root: str, keys: list[str], source_uri: str, shard_rows: int, backend: str, embedder: str) -> dict[str, Any]:
    """Build the export of ``keys`` and stamp its manifest with ``inputs_fingerprint`` (None
    while some partition is unfinished, so a later ``charmeta run`` rebuilds it)."""
    from charmeta.pipeline.export import export_dataset
    from charmeta.pipeline.image_stages import parse_spec

    manifest = export_dataset(
        root,
        keys,
        extra_manifest={
            "source": source_uri,
            "shard_rows": shard_rows,
            "extractor_backend": backend_identity(backend),
            "embedder": parse_spec(embedder)["backend"],
        },
    )
    plan = registered_plan(root, keys, backend, embedder)
    stamp_manifest(root, plan.inputs_fingerprint() if not plan.todo else None)
    return manifest


def stamp_manifest(root: str, inputs_fingerprint: str | None) -> None:
    path = Layout(root).export_file(MANIFEST)
    with open(path, encoding="utf-8") as fh:
        m = json.load(fh)
    m["inputs_fingerprint"] = inputs_fingerprint
    with open(path + ".tmp", "w", encoding="utf-8") as fh:
        json.dump(m, fh, indent=2)
    os.replace(path + ".tmp", path)


def export_is_current(root: str, plan: planner.Plan) -> bool:
    """Whether the export on disk was built from exactly the plan's (finished) input."""
    if plan.todo:
        return False
    try:
        with open(Layout(root).export_file(MANIFEST), encoding="utf-8") as fh:
            prev = json.load(fh)
    except (FileNotFoundError, ValueError):
        return False
    return prev.get("inputs_fingerprint") == plan.inputs_fingerprint()


def embedded_images(root: str, keys: Sequence[str]) -> bool:
    """Whether any of ``keys`` embedded images (its ``embeddings`` marker says so): then the
    image attribute heads are retrained before the export, whoever launched the shards."""
    from charmeta.pipeline.graph import EMBEDDINGS

    layout = Layout(root)
    return any((layout.stats(EMBEDDINGS, k) or {}).get("embedded") for k in keys)
