"""The app's calls into the core: one caption, one image, the configured backends.

Why a class: the engine (compiled ontology, ~2 s) and the image pipeline (face
detectors, model) load once per app process, like in a pipeline worker.
Everything returns ``views.RecordView``; bad input becomes a view with a clear
message, never an exception out of a Gradio handler.
"""

from __future__ import annotations

import io
import json
import logging
import os
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

from charmeta.app.views import RecordView, error_view, record_view
from charmeta.engine import Engine
from charmeta.records import Extraction

log = logging.getLogger("charmeta.app")

#: Face-detector choices of ``charmeta.images.counter``; ``AppCore.counters`` offers those that load here.
COUNTER_CHOICES = ("auto", "animeface", "haar", "animeface+haar", "none")
#: Pixel model choice meaning "faces + caption only" (the pipeline's ``CHARMETA_EMBEDDER=none``).
NO_MODEL = "none"
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif")
BOX_COLOR = (230, 30, 60)


def samples_dir() -> Path | None:
    """The bundled sample folder: ``$CHARMETA_SAMPLES``, else ``samples/`` of the checkout or the cwd."""
    env = os.environ.get("CHARMETA_SAMPLES")
    cands = [Path(env)] if env else []
    cands += [Path(__file__).resolve().parents[2] / "samples", Path.cwd() / "samples"]
    return next((c for c in cands if c.is_dir()), None)


def text_examples() -> list[dict[str, Any]]:
    """The Text tab's examples (``charmeta/data/app/examples.json``)."""
    data = resources.files("charmeta").joinpath("data/app/examples.json").read_text("utf-8")
    return list(json.loads(data)["examples"])


def image_examples(limit: int = 12) -> list[tuple[str, str]]:
    """``(image path, sidecar caption)`` pairs from the bundled sample, when it holds images."""
    root = samples_dir()
    if root is None:
        return []
    out: list[tuple[str, str]] = []
    for p in sorted(root.rglob("*")):
        if p.suffix.lower() in IMAGE_EXTS and p.is_file() and not any(s.startswith(".") for s in p.parts):
            side = p.with_suffix(".txt")
            caption = side.read_text("utf-8", errors="replace").strip() if side.is_file() else ""
            out.append((str(p), caption))
            if len(out) >= limit:
                break
    return out


@dataclass
class ImageAnalysis:
    """One image's record views plus the picture with the detected faces boxed."""

    view: RecordView
    boxed: Any = None  # PIL.Image or None
    faces: list[tuple[int, int, int, int]] = field(default_factory=list)


class AppCore:
    """Loaded-once engine + image settings; the Gradio handlers call these methods."""

    def __init__(self, engine: Engine | None = None, image_model: str | None = None) -> None:
        self._engine = engine
        self._image_model = image_model

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = Engine.default()
        return self._engine

    # -- backends --------------------------------------------------------
    @cached_property
    def counters(self) -> list[str]:
        """Face detectors that load here (``auto`` and ``none`` always)."""
        out = ["auto"]
        try:
            from charmeta.images.counter import CharacterCounter
        except ImportError:
            return ["none"]
        for name in ("animeface", "haar", "animeface+haar"):
            try:
                CharacterCounter(name)
                out.append(name)
            except Exception as exc:  # not installed / broken here: not offered
                log.info("face detector %s unavailable: %r", name, exc)
        return out + ["none"]

    @cached_property
    def image_models(self) -> list[str]:
        """``none`` plus the configured image model (``CHARMETA_IMAGE_MODEL`` or the default id)."""
        try:
            from charmeta.images.config import ImageConfig
        except ImportError:
            return [NO_MODEL]
        model = self._image_model or ImageConfig.from_env().model
        return [NO_MODEL, model]

    @property
    def default_image_model(self) -> str:
        """The pipeline's default: no pixel model unless ``CHARMETA_EMBEDDER`` names one."""
        want = os.environ.get("CHARMETA_EMBEDDER", NO_MODEL)
        return self.image_models[-1] if want != NO_MODEL else NO_MODEL

    def text_backend(self) -> str:
        return f"text extractor: {self.engine.text_extractor.name}"

    # -- text ------------------------------------------------------------
    def analyze_text(self, text: Any, record_id: str = "input") -> RecordView:
        if text is None or (isinstance(text, str) and not text.strip()):
            return error_view("nothing to extract: paste tags, a prompt or a description first")
        ex = self.engine.extract_text(text)
        return record_view(ex, record_id, [self.text_backend()])

    # -- images ----------------------------------------------------------
    def image_config(self, model: str = NO_MODEL, counter: str = "auto") -> Any:
        from charmeta.images.config import ImageConfig

        over: dict[str, Any] = {"counter": counter}
        if model != NO_MODEL:
            over["model"] = model
        return ImageConfig.from_env(**over)

    def analyze_image(
        self,
        image: str | Path | bytes | None,
        caption: str | None = None,
        model: str = NO_MODEL,
        counter: str = "auto",
        record_id: str | None = None,
    ) -> ImageAnalysis:
        """Faces boxed + the fused record, exactly as ``charmeta extract --image`` computes it."""
        if image is None:
            return ImageAnalysis(error_view("no image: upload one or pick an example"))
        rid = record_id or (Path(image).name if isinstance(image, (str, Path)) else "image")
        try:
            ex, shown, boxes, backends = self.extract_image(image, caption, model, counter)
        except ValueError as exc:  # a bad choice or a missing extra: a message, not a record
            return ImageAnalysis(error_view(str(exc)))
        boxed = _draw(shown, boxes) if shown is not None else None
        return ImageAnalysis(record_view(ex, rid, backends), boxed, boxes)

    def extract_image(
        self, image: str | Path | bytes, caption: str | None, model: str = NO_MODEL, counter: str = "auto"
    ) -> tuple[Extraction, Any, list[tuple[int, int, int, int]], list[str]]:
        """(record, picture at the detector's working size or None, face boxes on it, backends that ran).

        Bad bytes give an ``invalid`` record with the decoder's reason; an unknown
        choice or a missing ``images`` extra raises ``ValueError`` with what to do.
        """
        if counter not in COUNTER_CHOICES:
            raise ValueError(f"unknown face detector {counter!r}: choose from {', '.join(COUNTER_CHOICES)}")
        try:
            from charmeta.images.counter import get_counter
            from charmeta.images.decode import decode_image
        except ImportError as exc:
            raise ValueError(
                f"image support needs the 'images' extra ({exc.name} missing): run `make install`"
            ) from exc
        cfg = self.image_config(model, counter)
        data, reason = _read_bytes(image, cfg.max_bytes)
        if reason:
            return Extraction.invalid(reason, "image"), None, [], []
        dec = decode_image(data, max_bytes=cfg.max_bytes, max_side=cfg.max_side, max_pixels=cfg.max_pixels)
        if not dec.ok:
            return Extraction.invalid(dec.reason or "undecodable image", "image"), None, [], []
        caption = (caption or "").strip() or None
        det = get_counter(counter)
        shown = _fit(dec.image, int(det.settings["max_side"]))  # the detector's own working size: boxes fit it
        found = det.count(shown)
        backends = [f"face detector: {found.backend}"]
        if caption:
            backends.append(self.text_backend())
        if model == NO_MODEL:
            ex = self._fuse_without_model(caption, found, dec.notes)
            backends.append("image model: none (faces + caption only, like CHARMETA_EMBEDDER=none)")
        else:
            from charmeta.images.api import extract_image

            ex = extract_image(data, caption, cfg, text_extract=self.engine.extract_text)
            failed = any(n.startswith("image model") for n in (ex.reason or "").split("; "))
            backends.append(f"image model: {model}" + (" (did not run: see reason)" if failed else ""))
        return ex, shown, list(found.boxes), backends

    def _fuse_without_model(self, caption: str | None, found: Any, notes: list[str]) -> Extraction:
        """Caption + faces + offline pixel colours, no pixel model: what the image stage does with embedder ``none``."""
        from charmeta.fusion import fuse
        from charmeta.images.colors import to_json
        from charmeta.images.pixel_evidence import pixel_extraction

        text_ex = self.engine.extract_text(caption) if caption else None
        pixels = pixel_extraction(None, found.count, to_json(getattr(found, "colors", [])))
        return fuse(text_ex, pixels, pixel_count=found.count, pixel_backend=found.backend, notes=list(notes))


def _read_bytes(image: str | Path | bytes, max_bytes: int) -> tuple[bytes, str | None]:
    if isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
    else:
        p = Path(image)
        if not p.is_file():
            return b"", f"image file not found: {p.name}"
        size = p.stat().st_size
        if size > max_bytes:
            return b"", f"image file too large ({size} bytes > limit {max_bytes})"
        data = p.read_bytes()
    if len(data) > max_bytes:
        return b"", f"image too large ({len(data)} bytes > limit {max_bytes})"
    return data, None


def _fit(img: Any, max_side: int) -> Any:
    s = min(1.0, max_side / max(img.size))
    return img if s >= 1 else img.resize((max(1, int(img.width * s)), max(1, int(img.height * s))))


def _draw(img: Any, boxes: list[tuple[int, int, int, int]]) -> Any:
    """The image with each detected face outlined and numbered."""
    from PIL import ImageDraw

    out = img.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    width = max(2, round(max(out.size) / 200))
    for i, (x, y, w, h) in enumerate(boxes, start=1):
        draw.rectangle((x, y, x + w, y + h), outline=BOX_COLOR, width=width)
        draw.text((x + width + 2, y + width + 1), f"face {i}", fill=BOX_COLOR)
    return out


def png_bytes(img: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()
