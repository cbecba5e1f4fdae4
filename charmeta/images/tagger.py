"""WD-style Danbooru tagger (SmilingWolf ``model.onnx`` + ``selected_tags.csv``) -> tags -> the tag engine.

Why this backend: anime-dataset builders tag pictures with exactly these models,
and their output is the vocabulary the tag engine reads best (the contract's rules
are written in Danbooru tags). So a picture is tagged, its tags above per-category
thresholds (``data/images/tagger.json``) become a v3.0-style caption
(``rating:<r>, <character tags>, <general tags>``) and go through the same
``TextExtractor`` as any caption; each decision's evidence is rewritten to
``tagger:<tag>:<score>`` so provenance says a model, not a human, wrote the tag.
Rating and character tags are kept, so the safety rule and character names see them.

Loading: ``model`` is a local folder holding ``model.onnx`` + ``selected_tags.csv``
or a Hugging Face id (``SmilingWolf/wd-vit-tagger-v3``) resolved from the local cache;
nothing downloads unless ``allow_download`` (``CHARMETA_ALLOW_DOWNLOAD=1``). ONNX
Runtime runs it on the CUDA provider when present, else on CPU. The WD v3 input is
NHWC float32, BGR, 0-255, padded square on white; its size is read from the model.
Outputs are per-tag probabilities; the whole vector is cached by (image sha256,
model, revision) in the embedding cache, so a re-run or a threshold change never
calls the model again.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from charmeta.errors import ModelLoadError
from charmeta.images.embedder_base import LoadedModels

log = logging.getLogger("charmeta.images.tagger")

#: ``selected_tags.csv`` category ids (Danbooru): 0 general, 4 character, 9 rating.
GENERAL, CHARACTER, RATING = 0, 4, 9
FILES = ("model.onnx", "selected_tags.csv")


def settings() -> dict[str, Any]:
    from charmeta.images import rules

    return dict(rules.load("tagger"))


@dataclass(frozen=True)
class TagResult:
    """One picture's tags over threshold, best first, and its rating (None when the model has no rating tags)."""

    general: list[tuple[str, float]] = field(default_factory=list)
    characters: list[tuple[str, float]] = field(default_factory=list)
    rating: tuple[str, float] | None = None

    def caption(self) -> str:
        """A v3.0-style caption for the tag engine (underscores kept: the engine reads both forms)."""
        parts = [f"rating:{self.rating[0]}"] if self.rating else []
        parts += [t for t, _ in self.characters] + [t for t, _ in self.general]
        return ", ".join(parts)

    def scores(self) -> dict[str, float]:
        out = {t: s for t, s in self.general + self.characters}
        if self.rating:
            out[self.rating[0]] = self.rating[1]
        return out


def _hub_file(repo: str, name: str, revision: str, allow_download: bool) -> str:
    if allow_download:
        from huggingface_hub import hf_hub_download

        return hf_hub_download(repo, name, revision=revision)
    from charmeta.images.embedders import _hub_cached_file

    hit = _hub_cached_file(repo, name, revision)
    if hit is None:
        raise ModelLoadError(
            f"tagger {repo}@{revision}: {name} is not in the local Hugging Face cache and downloads are off "
            "(set CHARMETA_TAGGER_MODEL to a local folder with model.onnx + selected_tags.csv, "
            "or CHARMETA_ALLOW_DOWNLOAD=1 on a machine with network)"
        )
    return hit


def resolve_files(model: str, revision: str = "main", allow_download: bool = False) -> tuple[Path, Path, str]:
    """(model.onnx, selected_tags.csv, revision id) for a local folder or a hub id."""
    p = Path(model).expanduser()
    if p.is_dir():
        missing = [f for f in FILES if not (p / f).is_file()]
        if missing:
            raise ModelLoadError(f"tagger folder {p} lacks {', '.join(missing)} (the SmilingWolf WD layout)")
        h = hashlib.sha256()
        for f in FILES:  # content revision: replacing the weights must not serve stale cached tags
            with (p / f).open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
        return p / FILES[0], p / FILES[1], "local-" + h.hexdigest()[:16]
    if model.startswith((".", "/", "~")):
        raise ModelLoadError(f"tagger folder not found: {p}")
    onnx_path = _hub_file(model, FILES[0], revision, allow_download)
    tags_path = _hub_file(model, FILES[1], revision, allow_download)
    return Path(onnx_path), Path(tags_path), revision


def read_tags(path: Path) -> tuple[list[str], np.ndarray]:
    """Tag names and categories from ``selected_tags.csv`` (columns tag_id,name,category,count)."""
    names: list[str] = []
    cats: list[int] = []
    with path.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            names.append(row["name"])
            cats.append(int(row["category"]))
    if not names:
        raise ModelLoadError(f"{path}: no tags")
    return names, np.array(cats, dtype=np.int16)


class WDTagger:
    """A loaded tagger; thread-safe ``probabilities`` / ``tag`` (ONNX Runtime sessions are)."""

    def __init__(self, model: str, revision: str = "main", allow_download: bool = False, device: str = "auto") -> None:
        import onnxruntime as ort

        onnx_path, tags_path, self.revision = resolve_files(model, revision, allow_download)
        self.model_id = model
        self.names, self.categories = read_tags(tags_path)
        providers = ["CPUExecutionProvider"]
        if device in ("auto", "cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(os.environ.get("CHARMETA_TAGGER_THREADS", "0"))
        try:
            self.session = ort.InferenceSession(str(onnx_path), opts, providers=providers)
        except Exception as exc:
            raise ModelLoadError(f"tagger {model}: cannot load {onnx_path.name}: {exc}") from exc
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        shape = inp.shape  # [batch, H, W, 3]
        if len(shape) != 4 or shape[3] != 3 or not isinstance(shape[1], int):
            raise ModelLoadError(f"tagger {model}: input {inp.name} {shape} is not NHWC x 3 with a fixed size")
        self.image_size = int(shape[1])
        n_out = self.session.get_outputs()[0].shape[-1]
        if isinstance(n_out, int) and n_out != len(self.names):
            raise ModelLoadError(f"tagger {model}: {n_out} outputs but {len(self.names)} tags in selected_tags.csv")
        self.providers = self.session.get_providers()

    def preprocess(self, img: Image.Image) -> np.ndarray:
        """WD v3 input: flatten alpha on white, pad square on white, resize, RGB -> BGR, float32 0-255."""
        img = img.convert("RGBA")
        bg = Image.new("RGBA", img.size, (255, 255, 255, 255))
        bg.alpha_composite(img)
        rgb = bg.convert("RGB")
        side = max(rgb.size)
        square = Image.new("RGB", (side, side), (255, 255, 255))
        square.paste(rgb, ((side - rgb.width) // 2, (side - rgb.height) // 2))
        if side != self.image_size:
            square = square.resize((self.image_size, self.image_size), Image.Resampling.BICUBIC)
        return np.asarray(square, dtype=np.float32)[:, :, ::-1]

    def probabilities(self, images: list[Image.Image]) -> np.ndarray:
        """(N, n_tags) float32 probabilities."""
        if not images:
            return np.zeros((0, len(self.names)), np.float32)
        batch = np.ascontiguousarray(np.stack([self.preprocess(im) for im in images]))
        out = self.session.run(None, {self.input_name: batch})[0]
        return np.asarray(out, dtype=np.float32)

    def decode(self, probs: np.ndarray, thresholds: dict[str, Any] | None = None) -> TagResult:
        """Tags over the per-category thresholds, best first; the rating is the most probable rating tag."""
        th = thresholds or settings()["thresholds"]
        cats = self.categories

        def over(cat: int, t: float) -> list[tuple[str, float]]:
            idx = np.where((cats == cat) & (probs >= t))[0]
            idx = idx[np.argsort(-probs[idx])]
            return [(self.names[i], round(float(probs[i]), 4)) for i in idx]

        rating = None
        r_idx = np.where(cats == RATING)[0]
        if len(r_idx):
            best = r_idx[int(np.argmax(probs[r_idx]))]
            rating = (self.names[best], round(float(probs[best]), 4))
        return TagResult(over(GENERAL, float(th["general"])), over(CHARACTER, float(th["character"])), rating)


_TAGGERS: LoadedModels[WDTagger] = LoadedModels()


def get_tagger(model: str, revision: str = "main", allow_download: bool = False, device: str = "auto") -> WDTagger:
    return _TAGGERS.get(
        (model, revision, allow_download, device), lambda: WDTagger(model, revision, allow_download, device)
    )


def tag_images(tagger: WDTagger, images: dict[str, Image.Image], cache: Any = None) -> dict[str, np.ndarray]:
    """Probabilities per content hash, cache first (``EmbeddingCache``: same key scheme as the embeddings)."""
    got: dict[str, np.ndarray] = {}
    if cache is not None:
        got = cache.get_many(list(images), tagger.model_id, tagger.revision)
    todo = [k for k in images if k not in got]
    if todo:
        probs = tagger.probabilities([images[k] for k in todo])
        fresh = dict(zip(todo, probs))
        if cache is not None:
            cache.put_many(fresh, tagger.model_id, tagger.revision)
        got.update(fresh)
    return got


def to_extraction(result: TagResult, text_extract: Any) -> Any:
    """Tags -> the tag engine -> an ``Extraction`` whose evidence reads ``tagger:<tag>:<score>``."""
    from charmeta.records import Decision

    ex = text_extract(result.caption()) if (result.general or result.characters or result.rating) else None
    if ex is None or ex.status == "invalid":
        return None
    scores = {k.replace("_", " ").lower(): (k, v) for k, v in result.scores().items()}

    def rewrite(ev: list[str]) -> list[str]:
        out = []
        for e in ev:
            hit = scores.get(str(e).replace("_", " ").lower())
            out.append(f"tagger:{hit[0]}:{hit[1]:.2f}" if hit else f"tagger:{e}")
        return out

    ex.attributes = {
        k: Decision(d.value, d.confidence, rewrite(list(d.evidence)), d.conflict) for k, d in ex.attributes.items()
    }
    return ex


def result_to_json(result: TagResult) -> str:
    import json

    return json.dumps({"general": result.general, "characters": result.characters, "rating": result.rating})


def result_from_json(text: str | None) -> TagResult | None:
    import json

    if not text:
        return None
    d = json.loads(text)
    rating = tuple(d["rating"]) if d.get("rating") else None
    return TagResult(
        [tuple(x) for x in d["general"]],
        [tuple(x) for x in d["characters"]],
        rating,  # type: ignore[arg-type, misc]
    )
