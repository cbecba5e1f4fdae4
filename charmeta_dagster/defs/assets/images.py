"""Image asset ``attribute_heads`` (unpartitioned); ``normalized_images`` and ``embeddings``
are stages of ``shard_stages`` (``charmeta_dagster/defs/assets/__init__.py``).

Thin wrapper: the work is in ``charmeta.pipeline.image_stages`` (Dagster-free,
torch imported only when a model is actually used). Text-only shards pass
through ``normalized_images`` as empty partitions without touching the image stack.

::

    normalized_records ─> normalized_images ─> embeddings ─┬─> attribute_predictions (image rows: caption + pixels)
                                                           └─> attribute_heads (all shards; versioned heads)
"""

import time
from typing import Any

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from charmeta.pipeline import graph as G
from charmeta.pipeline.checks import md_table
from charmeta.sources import registered_keys
from charmeta_dagster.defs.resources import ExtractorResource, ImageModelsResource, OutputStore, embedder_spec

GROUP = "charmeta"


@asset(
    group_name=GROUP,
    deps=[G.EMBEDDINGS, G.NORMALIZED_IMAGES],
    kinds={"pytorch", "safetensors"},
    pool="gpu",  # one training at a time across runs (docker/dagster.yaml: concurrency.pools)
    description="Linear heads per attribute on the image embeddings, weakly labelled by the captions; a new "
    "version folder per training, held-out accuracy per attribute as metadata.",
)
def attribute_heads(
    context: AssetExecutionContext,
    store: OutputStore,
    extractor: ExtractorResource,
    image_models: ImageModelsResource,
) -> MaterializeResult:
    from charmeta.pipeline.image_stages import train_heads

    root = store.store().root
    t0 = time.perf_counter()
    res = train_heads(root, registered_keys(root), embedder_spec(image_models), extractor.spec())
    metadata: dict[str, Any] = {
        "status": MetadataValue.text(str(res["status"])),
        "version": MetadataValue.text(str(res.get("version") or "")),
        "images": MetadataValue.int(int(res.get("n_images") or 0)),
        "labelled_images": MetadataValue.int(int(res.get("n_labelled_images") or 0)),
        "seconds": MetadataValue.float(round(time.perf_counter() - t0, 3)),
    }
    if res.get("folder"):
        metadata["folder"] = MetadataValue.path(str(res["folder"]))
    report = res.get("report") or []
    for e in report:
        if e.get("status") == "trained":
            metadata[f"accuracy/{e['attribute']}"] = MetadataValue.float(round(float(e["accuracy"]), 4))
    if report:
        metadata["report"] = MetadataValue.md(
            md_table(
                [
                    {
                        "attribute": e["attribute"],
                        "status": e.get("status"),
                        "labelled": e.get("n_labelled"),
                        "test": e.get("n_test"),
                        "accuracy": e.get("accuracy"),
                        "majority": e.get("majority_baseline"),
                    }
                    for e in report
                ]
            )
        )
    context.log.info(f"attribute_heads: {res['status']} ({metadata['images'].value} images)")
    return MaterializeResult(metadata=metadata)
