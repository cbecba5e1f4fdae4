"""Image evaluation: per-attribute precision / coverage and character-count figures on labeled pictures.

Why precision and coverage, not accuracy: the contract prefers ``Unknown`` to a
wrong value, so a backend is judged on how often a value it *does* give is right
(precision) and how many labeled values it gives at all (coverage). Counts are
judged as a detector: multi-character precision / recall (a picture with 2+
characters is what must leave the clean export) and exact-count accuracy.

Labels: a TOML file (``samples/drawings/labels.toml``: one table per image stem with
``characters`` and contract keys) or JSON Lines (``{"id": stem, "characters": n,
"Hair Color": ...}``). A key left out is not labeled and not scored. Any backend
runs through the same ``extract_image`` (choose it with the ``CHARMETA_*`` settings
or an ``ImageConfig``), with or without the ``.txt`` caption beside each picture.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from charmeta.contract import ATTRIBUTE_BY_KEY, UNKNOWN
from charmeta.errors import ConfigError
from charmeta.records import Extraction

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")


def load_labels(path: str | Path) -> dict[str, dict[str, Any]]:
    """``{stem: {"characters": n, "<Contract Key>": value, ...}}``; values are checked against the contract."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"labels file {p} not found; pass --labels PATH (TOML or JSON Lines)")
    if p.suffix == ".toml":
        raw = tomllib.loads(p.read_text("utf-8"))
    else:
        raw = {}
        for n, line in enumerate(p.read_text("utf-8").splitlines(), 1):
            if line.strip():
                obj = json.loads(line)
                if "id" not in obj:
                    raise ConfigError(f'{p}:{n}: a label line needs an "id" (the image file\'s stem)')
                raw[str(obj.pop("id"))] = obj
    for stem, lab in raw.items():
        for key, value in lab.items():
            if key == "characters":
                continue
            spec = ATTRIBUTE_BY_KEY.get(key)
            if spec is None:
                raise ConfigError(f"{p}: {stem}: {key!r} is not a contract key")
            if spec.values and value not in spec.values:
                raise ConfigError(f"{p}: {stem}: {key} = {value!r} is not in the contract vocabulary")
    return raw


@dataclass
class AttrScore:
    labeled: int = 0
    predicted: int = 0  # a value other than Unknown on a labeled picture
    correct: int = 0

    @property
    def precision(self) -> float | None:
        return self.correct / self.predicted if self.predicted else None

    @property
    def coverage(self) -> float | None:
        return self.predicted / self.labeled if self.labeled else None


@dataclass
class ImageReport:
    images: int = 0
    attributes: dict[str, AttrScore] = field(default_factory=dict)
    count_exact: int = 0
    count_known: int = 0
    multi_tp: int = 0
    multi_fp: int = 0
    multi_fn: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def multi_precision(self) -> float | None:
        d = self.multi_tp + self.multi_fp
        return self.multi_tp / d if d else None

    @property
    def multi_recall(self) -> float | None:
        d = self.multi_tp + self.multi_fn
        return self.multi_tp / d if d else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "images": self.images,
            "count_exact": self.count_exact,
            "count_known": self.count_known,
            "multi_character": {"precision": self.multi_precision, "recall": self.multi_recall},
            "attributes": {
                k: {"labeled": s.labeled, "predicted": s.predicted, "correct": s.correct,
                    "precision": s.precision, "coverage": s.coverage}
                for k, s in sorted(self.attributes.items())
            },
        }  # fmt: skip


def find_images(folder: str | Path, stems: set[str]) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for p in sorted(Path(folder).iterdir()):
        if p.suffix.lower() in IMAGE_SUFFIXES and p.stem in stems:
            out[p.stem] = p
    return out


def score(labels: dict[str, dict[str, Any]], results: dict[str, Extraction]) -> ImageReport:
    """Compare extractions with labels (pure: the tests feed it hand-made extractions too)."""
    rep = ImageReport()
    for stem, lab in labels.items():
        ex = results.get(stem)
        if ex is None:
            continue
        rep.images += 1
        truth_n = lab.get("characters")
        got_n = ex.character_count
        row: dict[str, Any] = {"id": stem, "characters": truth_n, "predicted_count": got_n, "status": ex.status}
        if truth_n is not None:
            if got_n is not None:
                rep.count_known += 1
                rep.count_exact += int(got_n == truth_n)
            is_multi, said_multi = truth_n >= 2, bool(ex.multi_character)
            rep.multi_tp += int(is_multi and said_multi)
            rep.multi_fp += int(said_multi and not is_multi)
            rep.multi_fn += int(is_multi and not said_multi)
        for key, truth in lab.items():
            if key == "characters":
                continue
            s = rep.attributes.setdefault(key, AttrScore())
            s.labeled += 1
            d = ex.attributes.get(key)
            value = d.value if d is not None else UNKNOWN
            if value not in (UNKNOWN, None, ""):
                s.predicted += 1
                s.correct += int(value == truth)
            row[key] = {"label": truth, "got": value, "evidence": list(d.evidence) if d is not None else []}
        rep.rows.append(row)
    return rep


def evaluate_folder(
    folder: str | Path,
    labels_path: str | Path,
    *,
    use_captions: bool = False,
    extract: Callable[..., Extraction] | None = None,
    config: Any = None,
) -> ImageReport:
    """Run ``extract_image`` on every labeled picture of ``folder`` and score it."""
    from charmeta.images.api import extract_image

    labels = load_labels(labels_path)
    images = find_images(folder, set(labels))
    missing = sorted(set(labels) - set(images))
    if missing:
        raise ConfigError(f"no image in {folder} for labels {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    run = extract or extract_image
    results: dict[str, Extraction] = {}
    for stem, path in images.items():
        caption = None
        side = path.with_suffix(".txt")
        if use_captions and side.is_file():
            caption = side.read_text("utf-8").strip() or None
        results[stem] = run(path, caption, config) if config is not None else run(path, caption)
    return score(labels, results)


def format_report(rep: ImageReport, title: str) -> str:
    def pct(v: float | None) -> str:
        return "  -  " if v is None else f"{v:5.2f}"

    lines = [
        title,
        f"images: {rep.images}   exact character count: {rep.count_exact}/{rep.count_known} known counts   "
        f"multi-character precision {pct(rep.multi_precision)} recall {pct(rep.multi_recall)} "
        f"(tp {rep.multi_tp}, fp {rep.multi_fp}, fn {rep.multi_fn})",
        f"{'attribute':<14} {'labeled':>7} {'given':>6} {'right':>6} {'precision':>9} {'coverage':>9}",
    ]
    for key, s in sorted(rep.attributes.items()):
        lines.append(
            f"{key:<14} {s.labeled:>7} {s.predicted:>6} {s.correct:>6} {pct(s.precision):>9} {pct(s.coverage):>9}"
        )
    return "\n".join(lines)
