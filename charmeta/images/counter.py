"""``CharacterCounter``: how many characters are in the picture, from pixels alone.

Why: a picture captioned "1girl" that shows two people yields mixed attributes;
with no caption at all, the pixels are the only way to flag ``multi_character``.
Backends that work offline with weights shipped inside an installable package:
``animeface`` (anime faces, its model is in the wheel; called through
``animeface_native`` so it works under any Pillow) and OpenCV's bundled Haar
cascade (photographic frontal faces). ``auto`` is animeface alone when it is
installed (Haar only when it is not). Measured on the 15 shipped drawings
(``samples/drawings``, 20 faces): animeface finds all 20 plus one false face;
Haar finds 2 of them and nothing animeface misses. On scikit-image's astronaut
photo animeface finds nothing and Haar the one face - so Haar helps photos only,
and ``animeface+haar`` (both, overlapping boxes merged so one face found by both
counts once) is the setting for photo-heavy sources.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from charmeta.images import animeface_native, rules

log = logging.getLogger("charmeta.images.counter")

Box = tuple[int, int, int, int]  # x, y, w, h


@dataclass
class CountResult:
    count: int | None  # None: no detector available
    backend: str
    boxes: list[Box] = field(default_factory=list)
    faces: list[animeface_native.FaceHit] = field(default_factory=list)  # animeface hits kept
    colors: list[dict[str, Any]] = field(default_factory=list)  # per kept face: attribute -> colors.ColorCall


def _iou(a: Box, b: Box) -> float:
    ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0, min(ax2, bx2) - max(a[0], b[0]))
    ih = max(0, min(ay2, by2) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union else 0.0


def merge_boxes(boxes: list[Box], iou: float = 0.3) -> list[Box]:
    """Greedy de-duplication, largest first; also drops a box mostly inside a kept one."""
    kept: list[Box] = []
    for b in sorted(boxes, key=lambda b: -b[2] * b[3]):
        if all(_iou(b, k) < iou for k in kept):
            kept.append(b)
    return kept


class CharacterCounter:
    """Counts faces with the configured backend(s); never raises on an image."""

    def __init__(self, backend: str = "auto") -> None:
        self.settings = rules.counter_settings()
        self.detectors: list[str] = []
        self._haar = None
        if backend == "auto":
            want: tuple[str, ...] = ("animeface",) if animeface_native.available() else ("haar",)
        elif backend == "none":
            want = ()
        else:
            want = tuple(backend.split("+"))
        for name in want:
            if name == "animeface":
                animeface_native._modules()  # raises ImportError with the reason when it cannot run
                self.detectors.append("animeface")
            elif name == "haar":
                try:
                    import cv2

                    self._haar = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
                    if self._haar.empty():
                        raise RuntimeError("bundled Haar cascade did not load")
                    self.detectors.append("haar")
                except Exception as exc:
                    if backend != "auto":
                        raise
                    log.info("opencv Haar cascade unavailable: %s", exc)
            else:
                raise ValueError(f"unknown counter backend {name!r}: use auto, animeface, haar, animeface+haar or none")
        self.name = "+".join(self.detectors) or "none"

    def _prep(self, img: Image.Image) -> tuple[Image.Image, float]:
        m = int(self.settings["max_side"])
        s = min(1.0, m / max(img.size))
        return (img.resize((max(1, int(img.width * s)), max(1, int(img.height * s)))) if s < 1 else img), s

    def count(self, img: Image.Image) -> CountResult:
        if not self.detectors:
            return CountResult(None, "none")
        small, _ = self._prep(img.convert("RGB"))
        min_side = max(12, int(self.settings["min_face_frac"] * min(small.size)))
        boxes: list[Box] = []
        hits: list[animeface_native.FaceHit] = []
        if "animeface" in self.detectors:
            try:
                for f in animeface_native.detect(small):
                    if f.likelihood >= self.settings["anime_min_likelihood"] and min(f.box[2:]) >= min_side:
                        boxes.append(f.box)
                        hits.append(f)
            except Exception as exc:
                log.warning("animeface failed on one image: %r", exc)
        if self._haar is not None:
            try:
                import cv2

                gray = cv2.equalizeHist(np.asarray(small.convert("L")))
                found = self._haar.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=6, minSize=(min_side, min_side))
                boxes += [tuple(int(v) for v in b) for b in (found if len(found) else [])]  # type: ignore[misc]
            except Exception as exc:
                log.warning("haar failed on one image: %r", exc)
        kept = merge_boxes(boxes)
        faces = [h for h in hits if h.box in kept]
        calls: list[dict[str, Any]] = []
        if faces and self.settings.get("colors", True):
            try:
                from charmeta.images.colors import face_colors

                calls = [face_colors(small, f) for f in faces]  # boxes are in `small`'s coordinates
            except Exception as exc:  # colours are optional evidence; the count stands without them
                log.warning("pixel colours failed on one image: %r", exc)
        return CountResult(len(kept), self.name, kept, faces, calls)


_COUNTERS: dict[str, CharacterCounter] = {}


def get_counter(backend: str = "auto") -> CharacterCounter:
    """Process-wide counter per backend (cascade loading is not free)."""
    if backend not in _COUNTERS:
        _COUNTERS[backend] = CharacterCounter(backend)
    return _COUNTERS[backend]
