"""The stage graph, declared once: names, versions, upstreams, lineage, descriptions, schemas.

Why one module: the per-stage bodies, the one-pass chain, the fingerprints, the
Dagster asset specs (``charmeta_dagster/defs/assets``), the export's catalog views
and the layout's path guard all need the same stage names and edges. Each read
them from its own copy before (asset deps in the code location, ``UPSTREAM`` in
the runtime, view names in the export); now they read this table.

::

    raw_shards ─> normalized_records ─┬─> normalized_images ─> embeddings ─┐
                                      └──────────────> attribute_predictions ─> validated_records

``UPSTREAM`` is the chain a stage's *fingerprint* follows (its input file);
``DEPS`` is the lineage the UI draws (predictions also read the image stages).
Pure constants: importing this module costs nothing (the schemas are functions).
"""

from __future__ import annotations

import hashlib
from typing import Any

import pyarrow as pa

#: IMAGE_FORMATS: shard formats whose rows can carry an image (tables too, with an image column).
from charmeta.sources.spec import IMAGE_FORMATS, holds_images  # noqa: F401

RAW, NORMALIZED, EMBEDDINGS, PREDICTIONS, VALIDATED = (
    "raw_shards",
    "normalized_records",
    "embeddings",
    "attribute_predictions",
    "validated_records",
)
NORMALIZED_IMAGES = "normalized_images"  # image stages: charmeta/pipeline/image_stages.py (imported lazily)
STAGES = (RAW, NORMALIZED, NORMALIZED_IMAGES, EMBEDDINGS, PREDICTIONS, VALIDATED)
#: The stages a record passes through in order (the one-pass chain); the image stages hang off the side.
LINEAR = (RAW, NORMALIZED, PREDICTIONS, VALIDATED)
#: Bump a stage's version when its output for the same input changes.
STAGE_VERSIONS = {RAW: "1", NORMALIZED: "1", NORMALIZED_IMAGES: "3", EMBEDDINGS: "2", PREDICTIONS: "1", VALIDATED: "1"}
UPSTREAM: dict[str, str | None] = {
    RAW: None,
    NORMALIZED: RAW,
    NORMALIZED_IMAGES: NORMALIZED,
    EMBEDDINGS: NORMALIZED_IMAGES,
    PREDICTIONS: NORMALIZED,
    VALIDATED: PREDICTIONS,
}
#: Lineage as the UI shows it (what each stage reads).
DEPS: dict[str, list[str]] = {
    RAW: [],
    NORMALIZED: [RAW],
    NORMALIZED_IMAGES: [NORMALIZED],
    EMBEDDINGS: [NORMALIZED_IMAGES],
    PREDICTIONS: [NORMALIZED, NORMALIZED_IMAGES, EMBEDDINGS],
    VALIDATED: [PREDICTIONS],
}
DESCRIPTIONS = {
    RAW: "Rows of one source shard as read (id, text, source position, upstream reason).",
    NORMALIZED: "Texts cleaned without changing meaning (NFC, whitespace, zero-width).",
    NORMALIZED_IMAGES: "Images of the shard (tar members / .txt sidecar siblings) decoded under limits, letterboxed "
    "to the model's input, hashed, characters counted; bad images are invalid rows. Empty for "
    "text shards.",
    EMBEDDINGS: "Image embeddings per record from the ImageEmbedder resource (cache first; null for text rows).",
    PREDICTIONS: "Rich records from the extractor backend(s): value, confidence, evidence, conflict per attribute; "
    "image rows fuse caption + pixels.",
    VALIDATED: "Predictions checked against the contract in bulk; violations become invalid records with a reason.",
}
#: Storage kinds the UI shows per stage (default parquet).
KINDS = {NORMALIZED_IMAGES: {"parquet", "pillow"}}
#: Stages the export's catalog has a view of (the image side table is not a record view).
CATALOG_VIEWS = (RAW, NORMALIZED, EMBEDDINGS, PREDICTIONS, VALIDATED)
#: Unpartitioned products under the output root (not stages).
HEADS = "attribute_heads"

EMBEDDING_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("source_position", pa.int64(), nullable=False),
        pa.field("image_member", pa.string()),
        pa.field("embedding", pa.list_(pa.float32())),
        pa.field("backend", pa.string()),
        pa.field("sha256", pa.string()),
        pa.field("model", pa.string()),
        pa.field("revision", pa.string()),
        pa.field("cached", pa.bool_()),
    ]
)


def carries_images(spec: Any) -> bool:
    """Whether a shard's rows can name images for the image stages (an image container, or a
    table with an image column: ``charmeta.sources.spec.holds_images``, the one place this is
    decided); other shards keep the one-pass text path and never import the image stack."""
    return holds_images(spec)


def effective_embedder(spec: Any, embedder: str) -> str:
    """The embedder that matters for a shard: ``none`` for shards that cannot hold images."""
    return embedder if carries_images(spec) else "none"


def stage_schema(stage: str) -> pa.Schema:
    """The Arrow schema of a stage's Parquet (imports only what that stage needs)."""
    if stage in (RAW, NORMALIZED):
        from charmeta.sources import RAW_SCHEMA

        return RAW_SCHEMA
    if stage == EMBEDDINGS:
        return EMBEDDING_SCHEMA
    if stage == NORMALIZED_IMAGES:
        from charmeta.images.normalize import NORMALIZED_SCHEMA  # PIL, not torch

        return NORMALIZED_SCHEMA
    from charmeta.contract import rich_arrow_schema

    return rich_arrow_schema()


def stage_fingerprint(stage: str, shard_fp: str, backend: str = "", embedder: str = "") -> str:
    """The input fingerprint of ``stage``: the shard's identity plus every stage version on the
    way to it, the extractor backend from predictions on, the embedder for the image stages."""
    chain = [shard_fp]
    s: str | None = stage
    order = []
    while s is not None:
        order.append(s)
        s = UPSTREAM[s]
    for st in reversed(order):
        chain.append(f"{st}@{STAGE_VERSIONS[st]}")
        if st == PREDICTIONS:
            chain.append(backend)
            if embedder and embedder != "none":  # image shards only; text-only fingerprints unchanged
                chain.append(embedder)
        if st in (NORMALIZED_IMAGES, EMBEDDINGS):
            chain.append(embedder)
    return hashlib.sha1("|".join(chain).encode("utf-8")).hexdigest()[:16]
