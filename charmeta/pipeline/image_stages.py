"""The image stages' per-partition work, free of Dagster (and of torch until a model is needed).

Why a separate module: ``stages.py`` is the text hot path and must not pay for
the image stack. It imports this module lazily, only for shards that can hold
images (WebDataset ``.tar`` and ``.txt`` sidecar folders) whose raw rows name an
image member. Everything here reads and writes under the same ``Layout`` as the
text stages, one Parquet per partition:

* ``normalized_images``: the partition's image members (tar members / sibling
  files of the ``.txt`` sidecars) decoded under the safety limits, letterboxed
  to the model's input size, hashed, characters counted; caption = the
  normalized text of the same row; bad images are ``invalid`` rows.
* ``embeddings``: one row per raw record (same positions), the vector for
  image rows (content-addressed cache first: a re-run never calls the model).
* predictions for image rows: ``charmeta.images.batch.extract_table`` (caption +
  pixels fused with provenance) replaces the text-only row at the same source
  position, so every input row still has exactly one output row.
* ``attribute_heads``: weakly supervised heads over all partitions.

The image models are selected by a *spec* string that the code location's
``image_models`` resource builds (``charmeta_dagster.backends``: one resource
subclass per embedder / tagger / counter backend, each contributing spec fields)
and ``Settings.image_config`` builds the same way for ``charmeta run``: ``"none"``
(no model, default counter, no tagger), a backend name (``clip``/``siglip``/
``open_clip``/``auto``; the rest from ``CHARMETA_IMAGE_*``), or a JSON object of
``ImageConfig`` fields with ``backend`` (fields it leaves out take their defaults,
not the environment). It is part of the stage fingerprints.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from charmeta.pipeline.engines import make_engine
from charmeta.pipeline.graph import EMBEDDING_SCHEMA, HEADS, IMAGE_FORMATS, effective_embedder  # noqa: F401
from charmeta.pipeline.layout import Layout

log = logging.getLogger("charmeta.pipeline.images")

NONE = "none"
BACKENDS = (NONE, "auto", "clip", "siglip", "open_clip")
#: Letterbox size when no model is loaded (``none`` backend or model unavailable).
DEFAULT_SIZE = 224
HEADS_STAGE = HEADS
_CONFIG_FIELDS = (
    "model",
    "revision",
    "device",
    "cache_dir",
    "heads_dir",
    "counter",
    "batch_size",
    "allow_download",
    "image_size",
    "tagger",
    "tagger_revision",
    "captioner",
    "captioner_revision",
    "captioner_prompt",
    "captioner_max_tokens",
    "tagger_batch_size",
)
#: Spec fields that a JSON spec (what the ``image_models`` resource and ``Settings`` build) states
#: whole: absent means the default, never the environment, so a backend picked in the launchpad
#: is the one that runs whatever ``CHARMETA_COUNTER`` / ``CHARMETA_TAGGER_MODEL`` /
#: ``CHARMETA_CAPTIONER_MODEL`` the process has.
_SPEC_DEFAULTS: dict[str, Any] = {
    "counter": "auto",
    "tagger": None,
    "tagger_revision": "main",
    "captioner": None,
    "captioner_revision": "main",
    "captioner_prompt": "",
}


# ---------------------------------------------------------------------------
# embedder spec -> ImageConfig / pipeline
# ---------------------------------------------------------------------------
def parse_spec(spec: str | None) -> dict[str, Any]:
    """``"none"`` / ``"clip"`` / ``'{"backend": "clip", "model": ...}'`` -> a dict with ``backend``."""
    spec = (spec or NONE).strip()
    if spec.startswith("{"):
        d = json.loads(spec)
    else:
        d = {"backend": spec}
    backend = str(d.get("backend") or NONE)
    if backend not in BACKENDS:
        raise ValueError(f"unknown image embedder backend {backend!r}: choose from {', '.join(BACKENDS)}")
    d["backend"] = backend
    return d


def make_spec(backend: str, **fields: Any) -> str:
    """Canonical spec string. ``"none"`` stays a plain word while no model and no non-default
    counter runs (device, cache and heads mean nothing then), so those fingerprints never change."""
    if (
        backend == NONE
        and not fields.get("tagger")
        and not fields.get("captioner")
        and fields.get("counter") in (None, "", "auto")
    ):
        return NONE
    d = {"backend": backend, **{k: v for k, v in fields.items() if v not in (None, "")}}
    return json.dumps(d, sort_keys=True, separators=(",", ":"))


def uses_model(spec: str | None) -> bool:
    """Whether a spec loads a model (an embedder, a tagger, a captioner: a GPU helps); a counter
    alone does not."""
    d = parse_spec(spec)
    return d["backend"] != NONE or bool(d.get("tagger")) or bool(d.get("captioner"))


def embedder_spec_of(settings: Any) -> str:
    """The spec of a ``charmeta.settings.Settings`` (``embedder`` + ``image_*``): what the
    ``image_models`` resource configured from the same settings gives (``charmeta run`` needs
    it for the fingerprints before Dagster is imported)."""
    cfg = dict(settings.image_config())
    return make_spec(str(cfg.pop("backend")), **cfg)


def image_config(spec: str, root: str) -> Any:  # an ImageConfig, imported lazily
    """``ImageConfig`` for a spec; heads default to ``<root>/attribute_heads`` (per dataset)."""
    from charmeta.images.config import ImageConfig

    d = parse_spec(spec)
    overrides = {k: d[k] for k in _CONFIG_FIELDS if d.get(k) not in (None, "")}
    if (spec or NONE).strip().startswith("{") or d["backend"] == NONE:  # plain words other than none: env
        overrides = {**_SPEC_DEFAULTS, **overrides}
    backend = d["backend"]
    overrides["backend"] = "auto" if backend == NONE else backend
    if "heads_dir" not in overrides and not os.environ.get("CHARMETA_IMAGE_HEADS"):
        overrides["heads_dir"] = os.path.join(root, HEADS_STAGE)
    return ImageConfig.from_env(**overrides)


_PIPES: dict[tuple, Any] = {}


def pipeline(spec: str, root: str) -> Any:  # an ImagePipeline, imported lazily
    """The loaded-once image pipeline (per process). ``none``: counter only, no model, no note."""
    from charmeta.images.api import ImagePipeline, get_pipeline

    cfg = image_config(spec, root)
    if parse_spec(spec)["backend"] != NONE:
        return get_pipeline(cfg)
    key = (NONE, cfg.counter, cfg.tagger, cfg.captioner, cfg.captioner_revision, cfg.captioner_prompt)
    if key not in _PIPES:
        pipe = ImagePipeline(cfg)
        try:
            from charmeta.images.counter import get_counter

            pipe.counter = get_counter(cfg.counter)
        except Exception as exc:  # counting is optional evidence
            log.warning("character counter unavailable: %r", exc)
        pipe.load_tagger()
        pipe.load_captioner()
        _PIPES[key] = pipe
    return _PIPES[key]


def _size(pipe: Any) -> int:
    emb = getattr(pipe, "embedder", None)
    return int(emb.image_size) if emb is not None else int(pipe.config.image_size or DEFAULT_SIZE)


# ---------------------------------------------------------------------------
# normalized_images
# ---------------------------------------------------------------------------
def normalized_schema() -> pa.Schema:
    from charmeta.pipeline.graph import NORMALIZED_IMAGES, stage_schema

    return stage_schema(NORMALIZED_IMAGES)


def _local_or_open(uri: str) -> Any:
    import fsspec

    fs, path = fsspec.core.url_to_fs(uri)
    return fs.open(path, "rb")


def _image_records(spec: Any, rows: list[dict[str, Any]]) -> Iterator[Any]:  # ImageRecords
    """ImageRecords for the raw rows that name an image, read from the shard itself
    (``charmeta.sources.image_bytes``: tar / zip members, Parquet / Arrow cells, files).
    A null image cell gives no record: that row keeps its caption-only prediction."""
    from charmeta.images.ingest import MAX_MEMBER_BYTES, ImageRecord
    from charmeta.sources.image_bytes import iter_image_bytes

    for ib in iter_image_bytes(spec, rows, MAX_MEMBER_BYTES):
        if ib.data is None and ib.reason is None:
            continue
        r = ib.row
        caption = r["text"] if r["reason"] is None else None  # a broken caption must not hide a good image
        yield ImageRecord(r["id"], ib.data, caption, ib.ext, spec.relpath, r["source_position"], ib.reason)


def normalized_images_body(store: Any, key: str, spec: Any, out: Any, embedder: str = NONE) -> dict[str, Any]:
    """Write the partition's normalized images (``NORMALIZED_SCHEMA``); 0 rows for text-only shards."""
    from charmeta.images.normalize import normalize_batch

    src = pq.read_table(
        store.path("normalized_records", key), columns=["id", "text", "source_position", "reason", "image_member"]
    )
    src = src.filter(pc.is_valid(src["image_member"]))
    if src.num_rows == 0:
        return {"images": 0}
    pipe = pipeline(embedder, store.root)
    size = _size(pipe)
    batch: list[Any] = []
    images = invalid = 0
    preview = None

    def flush() -> None:
        nonlocal invalid, preview
        tbl = normalize_batch(
            batch,
            size=size,
            counter=pipe.counter,
            tagger=pipe.tagger,
            cache=pipe.cache,
            captioner=pipe.captioner,
            tagger_batch=pipe.config.tagger_batch_size,
        )
        invalid += tbl.num_rows - (pc.sum(pc.cast(pc.equal(tbl["status"], "ok"), pa.int64())).as_py() or 0)
        if preview is None:
            preview = (
                tbl.slice(0, 5)
                .select(["id", "status", "reason", "sha256", "orig_width", "orig_height", "pixel_count"])
                .to_pylist()
            )
        out.write(tbl)
        batch.clear()

    for r in _image_records(spec, src.to_pylist()):
        batch.append(r)
        images += 1
        if len(batch) >= 256:
            flush()
    if batch:
        flush()
    return {"images": images, "invalid_images": invalid, "image_size": size, "preview": preview or []}


# ---------------------------------------------------------------------------
# embeddings
# ---------------------------------------------------------------------------
def _has_images(store: Any, key: str) -> bool:
    return bool((store.stats("normalized_images", key) or {}).get("images"))


def embeddings_body(store: Any, key: str, spec: Any, out: Any, embedder: str = NONE) -> dict[str, Any]:
    """One row per record; image rows get their vector (cache first), the rest null."""
    base = pq.read_table(store.path("normalized_records", key), columns=["id", "source_position", "image_member"])
    n = base.num_rows
    vec_by_pos: dict[int, tuple[str, list[float], bool]] = {}
    stats_out: dict[str, Any] = {"with_image": n - base["image_member"].null_count, "embedded": 0}
    model = revision = None
    backend = parse_spec(embedder)["backend"]
    if backend != NONE and _has_images(store, key):
        pipe = pipeline(embedder, store.root)
        if pipe.embedder is None:
            stats_out["note"] = pipe.unavailable or "image model unavailable"
            backend = "unavailable"
        else:
            from charmeta.images.embed import EmbedStats, embed_table, embedding_matrix

            norm = pq.read_table(store.path("normalized_images", key))
            ok = norm.filter(pc.equal(norm["status"], "ok"))
            st = EmbedStats()
            emb = embed_table(ok, pipe.embedder, pipe.cache, pipe.config.batch_size, pipe.config.workers, st)
            mat: Any = embedding_matrix(emb) if emb.num_rows else []
            for pos, sha, v, cached in zip(
                ok["source_position"].to_pylist(), emb["sha256"].to_pylist(), mat, emb["cached"].to_pylist()
            ):
                vec_by_pos[pos] = (sha, v.tolist(), cached)
            model, revision, backend = pipe.embedder.model_id, pipe.embedder.revision, pipe.embedder.backend
            stats_out.update(
                embedded=len(vec_by_pos),
                cache_hits=st.cached,
                computed=st.computed,
                model_seconds=round(st.model_s, 3),
                data_wait_share=round(st.data_wait_share, 3),
                model=model,
                revision=revision,
            )
    positions = base["source_position"].to_pylist()
    got = [vec_by_pos.get(p) for p in positions]
    out.write(
        pa.table(
            {
                "id": base["id"],
                "source_position": base["source_position"],
                "image_member": base["image_member"],
                "embedding": pa.array([g[1] if g else None for g in got], pa.list_(pa.float32())),
                "backend": pa.array([backend] * n, pa.string()),
                "sha256": pa.array([g[0] if g else None for g in got], pa.string()),
                "model": pa.array([model if g else None for g in got], pa.string()),
                "revision": pa.array([revision if g else None for g in got], pa.string()),
                "cached": pa.array([g[2] if g else None for g in got], pa.bool_()),
            },
            schema=EMBEDDING_SCHEMA,
        )
    )
    stats_out["embedder"] = backend
    return stats_out


# ---------------------------------------------------------------------------
# attribute predictions for image rows
# ---------------------------------------------------------------------------
def image_predictions(store: Any, key: str, embedder: str, engine: Any) -> dict[int, dict[str, Any]] | None:
    """source_position -> fused rich row for the partition's image rows (None: no images)."""
    if not _has_images(store, key):
        return None
    from charmeta.images.batch import extract_table

    norm = pq.read_table(store.path("normalized_images", key))
    pipe = pipeline(embedder, store.root)
    fused = extract_table(
        norm, pipe, text_extract=engine.extract_text, batch_size=pipe.config.batch_size, workers=pipe.config.workers
    )
    return {r["source_position"]: r for r in fused.to_pylist()}


def overlay(table: pa.Table, rows_by_pos: dict[int, dict[str, Any]]) -> pa.Table:
    """Replace the rows of ``table`` whose source position has an image row (same order, same count)."""
    positions = table["source_position"].to_pylist()
    if not any(p in rows_by_pos for p in positions):
        return table
    rows = table.to_pylist()
    merged = [rows_by_pos.get(p, r) for p, r in zip(positions, rows)]
    return pa.Table.from_pylist(merged, schema=table.schema)


# ---------------------------------------------------------------------------
# attribute_heads (unpartitioned)
# ---------------------------------------------------------------------------
def train_heads(root: str, keys: list[str], embedder: str, backend: str = "text") -> dict[str, Any]:
    """Train + version heads from every partition's embeddings and caption labels.

    Returns ``{"status", "version", "folder", "report", "n_images", ...}``; never
    imports torch when no partition holds an embedded image.
    """
    store = Layout(root)
    parts_norm, parts_emb = [], []
    for k in keys:
        if not _has_images(store, k):
            continue
        epath = store.path("embeddings", k)
        if not os.path.exists(epath):
            continue
        emb = pq.read_table(epath, columns=["id", "source_position", "sha256", "embedding"])
        emb = emb.filter(pc.is_valid(emb["embedding"]))
        if emb.num_rows == 0:
            continue
        norm = pq.read_table(store.path("normalized_images", k), columns=["id", "source_position", "caption"])
        # ids can repeat across shards: make them unique per partition for the label join
        uid = lambda t, k=k: pc.binary_join_element_wise(pa.scalar(k), t["source_position"].cast(pa.string()), "#")  # noqa: E731
        parts_emb.append(pa.table({"id": uid(emb), "sha256": emb["sha256"], "embedding": emb["embedding"]}))
        parts_norm.append(pa.table({"id": uid(norm), "caption": norm["caption"]}))
    result: dict[str, Any] = {
        "status": "no embedded images",
        "version": None,
        "folder": None,
        "report": [],
        "n_images": sum(t.num_rows for t in parts_emb),
        "n_labelled_images": 0,
    }
    if not parts_emb:
        return result
    from charmeta.images.heads import attribute_heads_step

    emb_all = pa.concat_tables(parts_emb)
    dim = len(emb_all["embedding"][0].as_py())
    emb_all = emb_all.set_column(2, "embedding", emb_all["embedding"].cast(pa.list_(pa.float32(), dim)))
    pipe = pipeline(embedder, root)
    if pipe.embedder is None:
        result["status"] = pipe.unavailable or "image model unavailable"
        return result
    step = attribute_heads_step(
        pa.concat_tables(parts_norm),
        emb_all,
        make_engine(backend).extract_text,
        pipe.config.heads_dir,
        pipe.embedder.model_id,
        pipe.embedder.revision,
    )
    result.update(step, status="trained" if step["version"] else "no attribute had enough labels")
    if step["version"]:  # the next prediction step reloads the pipeline and so picks up the new heads
        from charmeta.images import api

        api._PIPELINES.pop(pipe.config, None)
    os.makedirs(os.path.join(root, HEADS_STAGE), exist_ok=True)
    tmp = os.path.join(root, HEADS_STAGE, f"report.json.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(result, fh, indent=1, default=str)
    os.replace(tmp, os.path.join(root, HEADS_STAGE, "report.json"))
    return result
