"""``CharacterCounter``: how many characters are in the picture, from pixels alone.

Why: a picture captioned "1girl" that shows two people yields mixed attributes;
with no caption at all, the pixels are the only way to flag ``multi_character``.
Backends that work offline with weights shipped inside an installable package:
``animeface`` (anime faces, its model is in the wheel) and OpenCV's bundled Haar
cascade (photographic frontal faces). ``auto`` runs what is installed and merges
overlapping boxes, so one face found by both detectors counts once.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from charmeta.images import rules

log = logging.getLogger("charmeta.images.counter")

Box = tuple[int, int, int, int]  # x, y, w, h


@dataclass
class CountResult:
    count: int | None  # None: no detector available
    backend: str
    boxes: list[Box] = field(default_factory=list)


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
        want = ("animeface", "haar") if backend == "auto" else (() if backend == "none" else (backend,))
        for name in want:
            if name == "animeface":
                try:
                    import animeface  # noqa: F401

                    self.detectors.append("animeface")
                except Exception as exc:
                    if backend != "auto":
                        raise
                    log.info("animeface unavailable: %s", exc)
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
                raise ValueError(f"unknown counter backend {name!r}: use auto, animeface, haar or none")
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
        if "animeface" in self.detectors:
            try:
                import animeface

                with warnings.catch_warnings():  # animeface uses a Pillow API deprecated in 12.x
                    warnings.simplefilter("ignore", DeprecationWarning)
                    faces = animeface.detect(small)
                for f in faces:
                    p = f.face.pos
                    if f.likelihood >= self.settings["anime_min_likelihood"] and min(p.width, p.height) >= min_side:
                        boxes.append((p.x, p.y, p.width, p.height))
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
        return CountResult(len(kept), self.name, kept)


_COUNTERS: dict[str, CharacterCounter] = {}


def get_counter(backend: str = "auto") -> CharacterCounter:
    """Process-wide counter per backend (cascade loading is not free)."""
    if backend not in _COUNTERS:
        _COUNTERS[backend] = CharacterCounter(backend)
    return _COUNTERS[backend]
