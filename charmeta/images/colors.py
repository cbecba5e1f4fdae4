"""Hair and eye colour from pixels, offline: animeface's face boxes -> CIELAB -> contract colour names.

Why this and not a model: it needs no download (animeface's detector ships in its
wheel), so a fresh machine still gets Hair Color / Eye Color from a picture with
no caption. Why per-pixel votes for hair: animeface's own hair colour is one k-means
centre over a region that mixes bangs, shading and background; on the shipped
drawings it swung between orange (208,115,61) and magenta-brown (109,40,59) for the
same character. The band just over the face box (the top of the head and the bangs),
with skin- and background-like pixels dropped, is the character's hair in nearly
every portrait and sprite; each pixel is named after its nearest prototype
(CIEDE2000, ``skimage.color``) and the majority decides - or ``Unknown`` when no
colour holds ``min_share`` of the votes. Eyes use animeface's two iris colours, which
are stable; both must name the same colour. Prototypes and thresholds live in
``data/images/color_names.json`` and are tuned for precision on ``samples/drawings``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
from PIL import Image

from charmeta.contract import ATTRIBUTE_BY_KEY, UNKNOWN
from charmeta.images import rules
from charmeta.images.animeface_native import FaceHit


@dataclass(frozen=True)
class ColorCall:
    """One colour decision with the numbers that made it (they go into the evidence)."""

    value: str
    confidence: float
    evidence: str


def _hex(h: str) -> tuple[int, int, int]:
    h = h.lstrip("#")
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)


def to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB uint8 (..., 3) -> CIELAB (D65), via scikit-image."""
    from skimage.color import rgb2lab

    arr = np.asarray(rgb, dtype=np.float64).reshape(-1, 1, 3) / 255.0
    return rgb2lab(arr).reshape(-1, 3)


def _delta(lab_a: np.ndarray, lab_b: np.ndarray) -> np.ndarray:
    """CIEDE2000 between every row of ``lab_a`` (n, 3) and every row of ``lab_b`` (m, 3) -> (n, m)."""
    from skimage.color import deltaE_ciede2000

    n, m = len(lab_a), len(lab_b)
    return deltaE_ciede2000(np.repeat(lab_a, m, axis=0), np.tile(lab_b, (n, 1))).reshape(n, m)


@cache
def palette(kind: str) -> tuple[tuple[str, ...], np.ndarray, dict[str, Any]]:
    """(colour name per prototype, prototypes in Lab, settings) for ``hair`` or ``eyes``; checked against the contract."""
    data = rules.load("color_names")[kind]
    attr = "Hair Color" if kind == "hair" else "Eye Color"
    allowed = set(ATTRIBUTE_BY_KEY[attr].values or ())
    names: list[str] = []
    rgbs: list[tuple[int, int, int]] = []
    for name, hexes in data["prototypes"].items():
        if name not in allowed:
            raise ValueError(f"color_names.json: {kind} colour {name!r} is not a {attr} value of the contract")
        for h in hexes:
            names.append(name)
            rgbs.append(_hex(h))
    return tuple(names), to_lab(np.array(rgbs, dtype=np.uint8)), data


def nearest(rgbs: np.ndarray, kind: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """For each RGB row: (nearest colour name, its distance, distance to the nearest *other* colour)."""
    names, protos, _ = palette(kind)
    d = _delta(to_lab(rgbs), protos)
    order = np.argsort(d, axis=1)
    best = order[:, 0]
    best_names = [names[i] for i in best]
    # nearest prototype of a different colour name
    name_arr = np.array(names)
    other = np.where(name_arr[None, :] != name_arr[best][:, None], d, np.inf).min(axis=1)
    return best_names, d[np.arange(len(d)), best], other


def hair_color(img: Image.Image, face: FaceHit) -> ColorCall:
    """Majority colour of the band over the face box (see module docstring)."""
    _, _, cfg = palette("hair")
    band = cfg["band"]
    arr = np.asarray(img.convert("RGB"))
    x, y, w, h = face.box
    y0, y1 = max(0, int(y - band["above"] * h)), max(0, int(y + band["below"] * h))
    x0, x1 = max(0, int(x + band["inset"] * w)), max(0, int(x + (1 - band["inset"]) * w))
    px = arr[y0:y1, x0:x1].reshape(-1, 3)
    if len(px) == 0:
        return ColorCall(UNKNOWN, 0.0, "pixel:colors:hair:no band over the face")
    # 5 bits per channel (a step of 8 is ~1-3 CIELAB units): a few hundred distinct colours with counts
    # instead of thousands of pixels, so CIEDE2000 costs milliseconds, not seconds
    uniq, counts = np.unique((px // 8) * 8 + 4, axis=0, return_counts=True)
    lab = to_lab(uniq.astype(np.uint8))
    corners = np.array([arr[0, 0], arr[0, -1], arr[-1, 0], arr[-1, -1]])
    drop = _delta(lab, to_lab(np.array([face.skin]))).ravel() < cfg["skin_distance"]
    drop |= _delta(lab, to_lab(corners)).min(axis=1) < cfg["background_distance"]
    uniq, counts = uniq[~drop], counts[~drop]
    total = int(counts.sum())
    if total < cfg["min_pixels"]:
        return ColorCall(UNKNOWN, 0.0, f"pixel:colors:hair:{total} hair-like pixels < {cfg['min_pixels']}")
    names, dist, _ = nearest(uniq.astype(np.uint8), "hair")
    votes: dict[str, int] = {}
    for n, d, c in zip(names, dist, counts):
        if d <= cfg["max_distance"]:
            votes[n] = votes.get(n, 0) + int(c)
    if not votes:
        return ColorCall(UNKNOWN, 0.0, "pixel:colors:hair:no pixel near a named colour")
    top = max(votes, key=lambda k: votes[k])
    share = votes[top] / total
    ev = f"pixel:colors:hair:{top}:{share:.2f} of {total} px"
    if share < cfg["min_share"]:
        return ColorCall(UNKNOWN, 0.0, ev + f" < {cfg['min_share']}")
    return ColorCall(top, round(share * cfg["confidence_scale"], 4), ev)


def eye_color(face: FaceHit) -> ColorCall:
    """Both of animeface's iris colours must name the same colour, clearly (see module docstring)."""
    _, _, cfg = palette("eyes")
    names, dist, other = nearest(np.array([face.left_eye, face.right_eye], dtype=np.uint8), "eyes")
    ev = f"pixel:colors:eyes:{names[0]}:{dist[0]:.1f}/{names[1]}:{dist[1]:.1f}"
    if names[0] != names[1]:
        return ColorCall(UNKNOWN, 0.0, ev + " disagree")
    worst = float(max(dist))
    if worst > cfg["max_distance"] or float(min(other - dist)) < cfg["min_margin"]:
        return ColorCall(UNKNOWN, 0.0, ev + " unsure")
    conf = (1.0 - worst / cfg["max_distance"]) * cfg["confidence_scale"]
    return ColorCall(names[0], round(max(conf, 0.05), 4), ev)


def face_colors(img: Image.Image, face: FaceHit) -> dict[str, ColorCall]:
    """``{"Hair Color": ..., "Eye Color": ...}`` for one face (values may be ``Unknown``)."""
    return {"Hair Color": hair_color(img, face), "Eye Color": eye_color(face)}


def decisions(count: int | None, calls: list[dict[str, ColorCall]]) -> dict[str, Any]:
    """Contract decisions from one picture's colour calls: only for exactly one face (whose hair is it else?)."""
    from charmeta.records import Decision

    if count != 1 or len(calls) != 1:
        return {}
    return {attr: Decision(c.value, c.confidence, [c.evidence]) for attr, c in calls[0].items()}


def to_json(calls: list[dict[str, ColorCall]]) -> str | None:
    """Compact column value for ``normalized_images.pixel_colors``."""
    import json

    if not calls:
        return None
    return json.dumps([{a: [c.value, c.confidence, c.evidence] for a, c in face.items()} for face in calls])


def from_json(text: str | None) -> list[dict[str, ColorCall]]:
    import json

    if not text:
        return []
    return [{a: ColorCall(v[0], float(v[1]), v[2]) for a, v in face.items()} for face in json.loads(text)]
