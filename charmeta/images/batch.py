"""Partition-level end to end: normalized images -> fused rich records, as Arrow.

Why here and not in the Dagster assets: assets should be thin wrappers; this
function is what an ``image_records`` asset (and the benchmark) calls per
partition. Invalid images stay in the output as ``invalid`` rows so counts
reconcile with the input.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import pyarrow as pa

from charmeta.fusion import fuse_image
from charmeta.images.captioner import to_extraction as caption_extraction
from charmeta.images.embed import EmbedStats, embed_table, embedding_matrix
from charmeta.images.pixel_evidence import pixel_extraction
from charmeta.images.tagger import result_from_json, to_extraction
from charmeta.records import Extraction, extractions_to_table

log = logging.getLogger("charmeta.images")


def extract_table(
    normalized: pa.Table,
    pipeline: object,
    text_extract: Callable[[str], Extraction] | None = None,
    batch_size: int = 32,
    workers: int = 0,
    stats: EmbedStats | None = None,
) -> pa.Table:
    """Fuse caption and pixel evidence for every row of a ``normalized_images`` partition.

    ``pipeline`` is an ``api.ImagePipeline``; when its model is unavailable the
    caption's attributes are kept and ``reason`` says ``image model unavailable``.
    """
    rows_in = normalized.select([c for c in normalized.column_names if c != "pixels"]).to_pylist()
    pixel_attrs: dict[str, dict] = {}
    failed: dict[str, str] = {}
    note = getattr(pipeline, "unavailable", None)
    tagger_note = getattr(pipeline, "tagger_note", None)
    captioner_note = getattr(pipeline, "captioner_note", None)
    predictor = getattr(pipeline, "predictor", None)

    def predict(table: pa.Table) -> None:
        emb = embed_table(table, pipeline.embedder, pipeline.cache, batch_size, workers, stats)  # type: ignore[attr-defined]
        pixel_attrs.update(zip(emb["id"].to_pylist(), predictor.predict(embedding_matrix(emb))))  # type: ignore[union-attr]

    if predictor is not None:
        try:
            predict(normalized)
        except Exception as exc:  # one poison image must not fail the shard: retry record by record
            log.warning("image model failed on a batch of %d (%r); retrying per record", normalized.num_rows, exc)
            ids = normalized.column("id").to_pylist()
            for i, rid in enumerate(ids):
                try:
                    predict(normalized.slice(i, 1))
                except Exception as one_exc:
                    failed[rid] = f"image model failed: {type(one_exc).__name__}: {one_exc}"
    out: list[Extraction] = []
    for r in rows_in:
        if r["status"] != "ok":
            ex = Extraction.invalid(r["reason"] or "invalid image", "image")
        elif r["id"] in failed:
            ex = Extraction.invalid(failed[r["id"]], "image")
        else:
            text_ex = text_extract(r["caption"]) if (text_extract and r["caption"]) else None
            pix = pixel_extraction(pixel_attrs.get(r["id"]), r["pixel_count"], r.get("pixel_colors"))
            notes = list(r["notes"] or []) + [n for n in (note, tagger_note, captioner_note) if n]
            tag_ex, safety = None, None
            tags = result_from_json(r.get("tagger_tags"))
            if tags is not None and text_extract is not None:
                tag_ex = to_extraction(tags, text_extract)
                if r["caption"] and tag_ex is not None:
                    safety = text_extract(r["caption"] + ", " + tags.caption())
            cap_ex = caption_extraction(r.get("vlm_caption"), text_extract) if text_extract is not None else None
            ex = fuse_image(
                text_ex,
                tag_ex,
                pix,
                pixel_count=r["pixel_count"],
                pixel_backend=r["counter"] or "pixels",
                notes=notes,
                safety_check=safety,
                captioner=cap_ex,
            )
        out.append(ex)
    return extractions_to_table(
        out, [r["id"] for r in rows_in], [r["source_shard"] for r in rows_in], [r["source_position"] for r in rows_in]
    )
