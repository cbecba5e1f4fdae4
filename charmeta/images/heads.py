"""``attribute_heads``: linear probes on image embeddings, weakly supervised by captions.

Why: zero-shot prompts are weak on stylised art; captions that travel with many
images already say "blonde_hair", "twintails" etc. The caption extractor turns
those into labels, a multinomial logistic regression per attribute learns them
from the embedding, and a held-out split (by sha256, so duplicates never leak
across the split) reports accuracy against the majority-class baseline. A
temperature fitted on the held-out split calibrates the confidence. Heads are
versioned folders (safetensors + report.json) with a ``LATEST`` pointer.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from charmeta.contract import ATTRIBUTE_BY_KEY, UNKNOWN
from charmeta.images import rules
from charmeta.images.zeroshot import softmax


#: Attributes a head can learn: closed vocabularies (Dress is free text).
def head_attributes() -> list[str]:
    return [k for k, s in ATTRIBUTE_BY_KEY.items() if s.values and not s.is_list]


@dataclass
class Head:
    attribute: str
    classes: list[str]
    weight: np.ndarray  # (V, dim)
    bias: np.ndarray  # (V,)
    temperature: float = 1.0

    def probs(self, emb: np.ndarray) -> np.ndarray:
        return softmax((emb @ self.weight.T + self.bias) / self.temperature)


def weak_labels(
    ids: Iterable[str], captions: Iterable[str | None], extract: Callable[[str], Any]
) -> dict[str, dict[str, str]]:
    """Caption -> {attribute: value} per id, using the caption extractor; Unknown and invalid are dropped."""
    out: dict[str, dict[str, str]] = {}
    for rid, cap in zip(ids, captions):
        if not cap:
            continue
        ex = extract(cap)
        if ex.status == "invalid" or ex.multi_character:
            continue  # a multi-character caption's attributes do not describe one figure
        labels = {
            k: d.value
            for k, d in ex.attributes.items()
            if isinstance(d.value, str) and d.value != UNKNOWN and k in ATTRIBUTE_BY_KEY
        }
        if labels:
            out[rid] = labels
    return out


def _is_holdout(sha: str, fraction: float) -> bool:
    return int(sha[:8], 16) / 0xFFFFFFFF < fraction


def _fit_softmax(
    x: np.ndarray, y: np.ndarray, n_cls: int, epochs: int, lr: float, wd: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    import torch

    g = torch.Generator().manual_seed(seed)
    X, Y = torch.from_numpy(x), torch.from_numpy(y).long()
    lin = torch.nn.Linear(x.shape[1], n_cls)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(lin.weight.shape, generator=g) * 0.01)
        lin.bias.zero_()
    counts = torch.bincount(Y, minlength=n_cls).float()
    cw = counts.sum() / (counts.clamp(min=1) * n_cls)  # balanced: rare colours are not drowned
    opt = torch.optim.Adam(lin.parameters(), lr=lr, weight_decay=wd)
    loss_fn = torch.nn.CrossEntropyLoss(weight=cw)
    for _ in range(epochs):
        opt.zero_grad()
        loss = loss_fn(lin(X), Y)
        loss.backward()
        opt.step()
    return lin.weight.detach().numpy().astype(np.float32), lin.bias.detach().numpy().astype(np.float32)


def _fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """Grid search of the temperature minimising held-out NLL (monotone: accuracy unchanged)."""
    best, best_t = np.inf, 1.0
    for t in np.exp(np.linspace(np.log(0.05), np.log(20), 60)):
        p = softmax(logits / t)
        nll = -np.mean(np.log(p[np.arange(len(y)), y] + 1e-12))
        if nll < best:
            best, best_t = nll, float(t)
    return best_t


def _ece(p: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    conf, pred = p.max(1), p.argmax(1)
    ece = 0.0
    for lo in np.linspace(0, 1, bins, endpoint=False):
        m = (conf > lo) & (conf <= lo + 1 / bins)
        if m.any():
            ece += m.mean() * abs((pred[m] == y[m]).mean() - conf[m].mean())
    return float(ece)


def train_heads(
    embeddings: pa.Table, labels: dict[str, dict[str, str]], settings: dict | None = None
) -> tuple[dict[str, Head], list[dict[str, Any]]]:
    """Train one head per attribute with enough labelled images; returns heads and a report per attribute.

    ``embeddings``: an ``embed_table`` output; ``labels``: ``weak_labels`` output.
    The report says why an attribute got no head (too few examples / one class).
    """
    from charmeta.images.embed import embedding_matrix

    s = {**rules.heads_settings(), **(settings or {})}
    ids, shas = embeddings["id"].to_pylist(), embeddings["sha256"].to_pylist()
    X = embedding_matrix(embeddings)
    heads: dict[str, Head] = {}
    report: list[dict[str, Any]] = []
    for attr in head_attributes():
        rows = [(i, labels[r][attr]) for i, r in enumerate(ids) if attr in labels.get(r, {})]
        counts: dict[str, int] = {}
        for _, v in rows:
            counts[v] = counts.get(v, 0) + 1
        classes = sorted(v for v, c in counts.items() if c >= s["min_per_class"])
        rows = [(i, v) for i, v in rows if v in classes]
        entry: dict[str, Any] = {"attribute": attr, "n_labelled": len(rows), "classes": classes}
        if len(rows) < s["min_examples"] or len(classes) < 2:
            entry["status"] = (
                f"skipped: {len(rows)} usable labels, {len(classes)} classes "
                f"(need >= {s['min_examples']} and >= 2 with >= {s['min_per_class']} each)"
            )
            report.append(entry)
            continue
        cidx = {c: k for k, c in enumerate(classes)}
        hold = np.array([_is_holdout(shas[i], s["holdout_fraction"]) for i, _ in rows])
        if hold.all() or not hold.any():  # tiny sets: fall back to a deterministic 1-in-5 split
            hold = np.array([k % 5 == 4 for k in range(len(rows))])
        idx = np.array([i for i, _ in rows])
        y = np.array([cidx[v] for _, v in rows])
        w, b = _fit_softmax(
            X[idx[~hold]], y[~hold], len(classes), int(s["epochs"]), float(s["lr"]), float(s["weight_decay"])
        )
        logits = X[idx[hold]] @ w.T + b
        t = _fit_temperature(logits, y[hold])
        p = softmax(logits / t)
        majority = max(np.mean(y[hold] == k) for k in range(len(classes)))
        heads[attr] = Head(attr, classes, w, b, t)
        entry.update(
            status="trained",
            n_train=int((~hold).sum()),
            n_test=int(hold.sum()),
            accuracy=float((p.argmax(1) == y[hold]).mean()),
            majority_baseline=float(majority),
            temperature=t,
            ece=_ece(p, y[hold]),
        )
        report.append(entry)
    return heads, report


def _slug(model: str, revision: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", f"{model}@{revision}").strip("_")[-120:]


def save_heads(heads: dict[str, Head], report: list[dict], root: str | Path, model: str, revision: str) -> Path:
    """Write a new version folder and point ``LATEST`` at it; returns the folder."""
    from safetensors.numpy import save_file

    base = Path(root) / _slug(model, revision)
    tensors, meta = {}, {}
    for a, h in heads.items():
        tensors[f"{a}.weight"], tensors[f"{a}.bias"] = h.weight, h.bias
        meta[a] = {"classes": h.classes, "temperature": h.temperature}
    digest = hashlib.sha256(b"".join(t.tobytes() for t in tensors.values())).hexdigest()[:10]
    version = time.strftime("v%Y%m%dT%H%M%S") + "-" + digest
    folder = base / version
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "heads.safetensors"))
    (folder / "report.json").write_text(
        json.dumps(
            {"version": version, "model": model, "revision": revision, "heads": meta, "report": report}, indent=1
        )
    )
    tmp = base / "LATEST.tmp"
    tmp.write_text(version)
    tmp.replace(base / "LATEST")
    return folder


def load_heads(
    root: str | Path | None, model: str, revision: str, version: str | None = None
) -> tuple[dict[str, Head], str | None]:
    """The heads for this model/revision (``LATEST`` unless ``version``); empty when none exist."""
    if not root:
        return {}, None
    base = Path(root) / _slug(model, revision)
    if version is None:
        latest = base / "LATEST"
        if not latest.is_file():
            return {}, None
        version = latest.read_text().strip()
    folder = base / version
    if not (folder / "heads.safetensors").is_file():
        return {}, None
    from safetensors.numpy import load_file

    t = load_file(str(folder / "heads.safetensors"))
    meta = json.loads((folder / "report.json").read_text())["heads"]
    return {
        a: Head(a, m["classes"], t[f"{a}.weight"], t[f"{a}.bias"], float(m["temperature"])) for a, m in meta.items()
    }, version


def attribute_heads_step(
    normalized: pa.Table,
    embeddings: pa.Table,
    extract: Callable[[str], Any],
    root: str | Path,
    model: str,
    revision: str,
    settings: dict | None = None,
) -> dict[str, Any]:
    """The whole ``attribute_heads`` step: weak labels -> train -> save a version -> report.

    Returns ``{"version", "folder", "report", "n_labelled_images"}``; when no
    attribute had enough labels nothing is saved and ``version`` is None (the
    predictor then stays on zero-shot).
    """
    labels = weak_labels(normalized["id"].to_pylist(), normalized["caption"].to_pylist(), extract)
    heads, report = train_heads(embeddings, labels, settings)
    out: dict[str, Any] = {"version": None, "folder": None, "report": report, "n_labelled_images": len(labels)}
    if heads:
        folder = save_heads(heads, report, root, model, revision)
        out.update(version=folder.name, folder=str(folder))
    return out
