"""One-image entry point for ``charmeta extract --image PATH`` and the app.

Why a separate pipeline object: the model, heads, prompt vectors and face
detector load once per process and are shared; ``extract_image`` is a thin
call. Offline rule: when the image model cannot be loaded the caption's
attributes are still returned, with ``image model unavailable: ...`` in
``reason`` - never a crash, never a network wait.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from charmeta.errors import CharmetaError
from charmeta.fusion import fuse_image
from charmeta.images.cache import EmbeddingCache
from charmeta.images.config import ImageConfig
from charmeta.images.pixel_evidence import pixel_extraction
from charmeta.records import Extraction

log = logging.getLogger("charmeta.images.api")

TextExtract = Callable[[str], Extraction]


def default_text_extract() -> TextExtract | None:
    """The project's caption extractor, or None when it is not importable (reported as a note)."""
    try:
        from charmeta.engine import Engine

        return Engine.default().extract_text
    except Exception as exc:  # the text backend is optional for the image path
        log.warning("caption extractor unavailable: %r", exc)
        return None


@dataclass
class ImagePipeline:
    """Loaded-once state for pixel extraction under one ``ImageConfig``."""

    config: ImageConfig
    predictor: Any = None  # ImagePredictor, or None when the model is unavailable
    embedder: Any = None
    cache: Any = None
    counter: Any = None
    tagger: Any = None  # tagger.WDTagger, or None (not configured / unavailable)
    tagger_note: str | None = None
    captioner: Any = None  # captioner.Captioner, or None (not configured / unavailable)
    captioner_note: str | None = None
    unavailable: str | None = None

    @classmethod
    def load(cls, config: ImageConfig) -> ImagePipeline:
        from charmeta.images.counter import get_counter

        pipe = cls(config)
        try:
            pipe.counter = get_counter(config.counter)
        except Exception as exc:
            log.warning("character counter unavailable: %r", exc)
        pipe.load_tagger()
        pipe.load_captioner()
        try:
            from charmeta.images.embedders import load_embedder
            from charmeta.images.heads import load_heads
            from charmeta.images.predict import ImagePredictor

            pipe.embedder = load_embedder(config)
            pipe.cache = EmbeddingCache.in_dir(config.cache_dir)
            heads, version = load_heads(config.heads_dir, pipe.embedder.model_id, pipe.embedder.revision)
            pipe.predictor = ImagePredictor(pipe.embedder, heads, version, pipe.cache)
        except (CharmetaError, ImportError, OSError) as exc:
            pipe.unavailable = f"image model unavailable: {exc}"
            log.warning(pipe.unavailable)
        return pipe

    def load_tagger(self) -> None:
        """The configured WD tagger, or a note saying why not (a caption's attributes are kept either way)."""
        if not self.config.tagger:
            return
        try:
            from charmeta.images.tagger import get_tagger

            self.tagger = get_tagger(
                self.config.tagger, self.config.tagger_revision, self.config.allow_download, self.config.device
            )
            if self.cache is None:
                self.cache = EmbeddingCache.in_dir(self.config.cache_dir)
        except (CharmetaError, ImportError, OSError) as exc:
            self.tagger_note = f"tagger unavailable: {exc}"
            log.warning(self.tagger_note)

    def load_captioner(self) -> None:
        """The configured VLM captioner, or a note saying why not (a caption's attributes are kept either way)."""
        if not self.config.captioner:
            return
        try:
            from charmeta.images.captioner import get_captioner

            self.captioner = get_captioner(
                self.config.captioner,
                self.config.captioner_revision,
                self.config.allow_download,
                self.config.device,
                self.config.captioner_prompt,
                self.config.captioner_max_tokens,
            )
            if self.cache is None:
                self.cache = EmbeddingCache.in_dir(self.config.cache_dir)
        except (CharmetaError, ImportError, OSError) as exc:
            self.captioner_note = f"captioner unavailable: {exc}"
            log.warning(self.captioner_note)

    def tag(self, sha: str, image: Any, text_extract: TextExtract | None) -> tuple[Extraction | None, Any]:
        """(tag-engine reading of the tagger's tags, the TagResult) for one decoded picture."""
        from charmeta.images.tagger import tag_images, to_extraction

        probs = tag_images(self.tagger, {sha: image}, self.cache)[sha]
        result = self.tagger.decode(probs)
        extract = text_extract or default_text_extract()
        return (to_extraction(result, extract) if extract else None), result


_PIPELINES: dict[ImageConfig, ImagePipeline] = {}


def get_pipeline(config: ImageConfig) -> ImagePipeline:
    if config not in _PIPELINES:
        _PIPELINES[config] = ImagePipeline.load(config)
    return _PIPELINES[config]


def _read(path_or_bytes: str | Path | bytes, max_bytes: int) -> tuple[bytes | None, str | None, str | None]:
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        return bytes(path_or_bytes), None, None
    p = Path(path_or_bytes)
    if not p.is_file():
        return None, None, f"image file not found: {p}"
    size = p.stat().st_size
    if size > max_bytes:
        return None, None, f"image file too large ({size} bytes > limit {max_bytes})"
    return p.read_bytes(), p.suffix.lstrip(".").lower() or None, None


def extract_image(
    path_or_bytes: str | Path | bytes,
    caption: str | None = None,
    config: ImageConfig | None = None,
    *,
    text_extract: TextExtract | None = None,
) -> Extraction:
    """Attributes of one image (plus its caption, when given), fused with provenance.

    Bad image bytes give an ``invalid`` Extraction with a specific reason.
    """
    from charmeta.images.decode import decode_image
    from charmeta.images.normalize import encode_png, letterbox

    config = config or ImageConfig.from_env()
    data, ext, reason = _read(path_or_bytes, config.max_bytes)
    if reason:
        return Extraction.invalid(reason, "image")
    dec = decode_image(
        data, ext=ext, max_bytes=config.max_bytes, max_side=config.max_side, max_pixels=config.max_pixels
    )
    if not dec.ok:
        return Extraction.invalid(dec.reason or "undecodable image", "image")
    notes: list[str] = []
    text_ex = None
    if caption:
        extract = text_extract or default_text_extract()
        if extract is None:
            notes.append("caption extractor unavailable: caption not used")
        else:
            text_ex = extract(caption)
    pipe = get_pipeline(config)
    count, backend, colors_json = None, "none", None
    if pipe.counter is not None:
        from charmeta.images.colors import to_json

        res = pipe.counter.count(dec.image)
        count, backend, colors_json = res.count, res.backend, to_json(res.colors)
    pixel_ex = None
    if pipe.predictor is None:
        notes.append(pipe.unavailable or "image model unavailable")
    else:
        try:
            from charmeta.images.embed import embed_pngs
            from charmeta.images.hashing import sha256_bytes

            sha = sha256_bytes(data)  # type: ignore[arg-type]
            emb = pipe.cache.get_many([sha], pipe.embedder.model_id, pipe.embedder.revision).get(sha)
            if emb is None:
                png = encode_png(letterbox(dec.image, pipe.embedder.image_size))  # type: ignore[arg-type]
                emb = embed_pngs([png], pipe.embedder)[0]
                pipe.cache.put_many({sha: emb}, pipe.embedder.model_id, pipe.embedder.revision)
            attrs = pipe.predictor.predict(emb[None, :])[0]
            pixel_ex = Extraction(input_kind="image", attributes=attrs)
        except Exception as exc:  # one bad forward pass must not lose the caption's attributes
            notes.append(f"image model failed: {type(exc).__name__}: {exc}")
    tag_ex, safety = None, None
    if pipe.tagger is not None:
        try:
            from charmeta.images.hashing import sha256_bytes

            tag_ex, tags = pipe.tag(sha256_bytes(data), dec.image, text_extract)  # type: ignore[arg-type]
            if caption and tag_ex is not None:
                safety = (text_extract or default_text_extract() or (lambda _c: None))(caption + ", " + tags.caption())
        except Exception as exc:  # the caption's attributes are kept
            notes.append(f"tagger failed: {type(exc).__name__}: {exc}")
    elif pipe.tagger_note:
        notes.append(pipe.tagger_note)
    cap_ex = None
    if pipe.captioner is not None:
        try:
            from charmeta.images.captioner import caption_images
            from charmeta.images.captioner import to_extraction as caption_extraction
            from charmeta.images.hashing import sha256_bytes

            sha = sha256_bytes(data)  # type: ignore[arg-type]
            generated = caption_images(pipe.captioner, {sha: dec.image}, pipe.cache)[sha]
            extract = text_extract or default_text_extract()
            cap_ex = caption_extraction(generated, extract) if extract else None
        except Exception as exc:  # the caption's attributes are kept
            notes.append(f"captioner failed: {type(exc).__name__}: {exc}")
    elif pipe.captioner_note:
        notes.append(pipe.captioner_note)
    notes = dec.notes + notes
    pixel_ex = pixel_extraction(pixel_ex.attributes if pixel_ex else None, count, colors_json)
    return fuse_image(
        text_ex,
        tag_ex,
        pixel_ex,
        pixel_count=count,
        pixel_backend=backend,
        notes=notes,
        safety_check=safety,
        captioner=cap_ex,
    )
