"""CPU images/s per image backend, on the real drawings shipped in ``samples/drawings``.

Why real pictures: animeface's cost depends on the picture (its detector scans
windows over the whole frame), so synthetic gradients would flatter it. Stages:
decode (guarded decode of the JPEG bytes), animeface (face count on the decode),
colours (hair / eye naming per face), haar (OpenCV's cascade), and a WD-signature tagger
at batch 1 (one call per picture, as ``normalized_images`` ran it before it batched) and at
the configured batch (``CHARMETA_TAGGER_BATCH``, default 16) - a tiny model
exported from torch (its speed says what ONNX Runtime's per-call overhead and the
448-px preprocessing cost, not what a ViT costs; ``bench/gpu.sh`` times real-size
taggers on a GPU) or ``--tagger DIR`` for a real one. ``charmeta bench --image-backends``
alone, and a part of ``charmeta bench`` / ``make bench`` (stage ``image-backends``).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

DRAWINGS = Path(__file__).resolve().parents[2] / "samples" / "drawings"


def _pictures(folder: Path) -> list[bytes]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp"))
    return [p.read_bytes() for p in files]


def tiny_tagger_dir(out: Path, size: int = 448, n_tags: int = 64) -> Path:
    """A random WD-signature tagger (NHWC float32 -> sigmoid over ``n_tags``) with its tag file."""
    import torch

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 16, 8, stride=8)
            self.head = torch.nn.Linear(16, n_tags)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            f = torch.relu(self.conv(x.permute(0, 3, 1, 2) / 255.0)).mean(dim=(2, 3))
            return torch.sigmoid(self.head(f))

    out.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        Tiny().eval(),
        torch.zeros(1, size, size, 3),
        str(out / "model.onnx"),
        input_names=["input"],
        output_names=["output"],
        dynamic_axes={"input": {0: "batch"}},
        dynamo=False,
    )
    cats = [9, 9, 9, 9] + [0] * (n_tags - 5) + [4]
    rows = ["tag_id,name,category,count"] + [f"{i},tag_{i},{c},1" for i, c in enumerate(cats)]
    (out / "selected_tags.csv").write_text("\n".join(rows) + "\n")
    return out


def run(folder: Path = DRAWINGS, repeats: int = 2, tagger: str | None = None, batch: int = 16) -> list[dict[str, Any]]:
    """One row per stage: images, wall seconds, images/s and images per CPU-second (best of ``repeats``).

    Images per CPU-second is the figure to compare on a shared machine: wall time
    stretches with other load, this process's CPU time much less.
    """
    from charmeta.images.decode import decode_image

    data = _pictures(folder)
    rows: list[dict[str, Any]] = []

    def timed(name: str, fn: Any, n: int, note: str = "") -> None:
        best, cpu = float("inf"), float("inf")
        for _ in range(repeats):
            t, c = time.perf_counter(), time.process_time()
            fn()
            best, cpu = min(best, time.perf_counter() - t), min(cpu, time.process_time() - c)
        rows.append(
            {"stage": name, "images": n, "seconds": round(best, 3), "images_per_s": round(n / best, 1),
             "cpu_seconds": round(cpu, 3), "images_per_cpu_s": round(n / cpu, 1) if cpu > 0 else None, "note": note}
        )  # fmt: skip

    decoded = [decode_image(b, ext="jpg").image for b in data]
    timed("decode", lambda: [decode_image(b, ext="jpg") for b in data], len(data), "guarded decode of JPEG bytes")
    try:
        from charmeta.images.counter import CharacterCounter

        counter = CharacterCounter("animeface")
        counter.settings["colors"] = False
        timed("animeface", lambda: [counter.count(im) for im in decoded], len(decoded), "face count, <= 1024 px side")
        from charmeta.images import animeface_native
        from charmeta.images.colors import face_colors

        faces = [(im, f) for im in decoded for f in animeface_native.detect(im)]
        timed("colours", lambda: [face_colors(im, f) for im, f in faces], len(faces), "per face (hair + eyes)")
    except Exception as exc:  # animeface / scikit-image missing
        rows.append(
            {"stage": "animeface", "images": 0, "seconds": None, "images_per_s": None, "note": f"not available: {exc}"}
        )
    try:
        from charmeta.images.counter import CharacterCounter

        haar = CharacterCounter("haar")
        haar.settings["colors"] = False
        timed("haar", lambda: [haar.count(im) for im in decoded], len(decoded), "OpenCV Haar face count (photos)")
    except Exception as exc:  # opencv missing
        rows.append(
            {"stage": "haar", "images": 0, "seconds": None, "images_per_s": None, "note": f"not available: {exc}"}
        )
    try:
        from charmeta.images.tagger import WDTagger

        with tempfile.TemporaryDirectory() as tmp:
            model = tagger or str(tiny_tagger_dir(Path(tmp) / "tiny-wd"))
            tg = WDTagger(model)
            what = "tiny random WD-signature model" if tagger is None else model
            # batch 1 is how normalized_images called the tagger before it batched (one call per picture)
            for b in dict.fromkeys((1, batch)):

                def tag_all(b: int = b) -> None:
                    for i in range(0, len(decoded), b):
                        tg.probabilities(decoded[i : i + b])

                timed(f"tagger b{b}", tag_all, len(decoded), f"{what}, batch {b}, {tg.providers[0]}")
    except Exception as exc:
        rows.append(
            {"stage": "tagger", "images": 0, "seconds": None, "images_per_s": None, "note": f"not available: {exc}"}
        )
    return rows


def format_rows(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'stage':<11} {'images':>6} {'seconds':>8} {'images/s':>9} {'img/cpu-s':>9}  note"]
    for r in rows:
        s = "-" if r["seconds"] is None else f"{r['seconds']:.3f}"
        ips = "-" if r["images_per_s"] is None else f"{r['images_per_s']:.1f}"
        cps = "-" if r.get("images_per_cpu_s") is None else f"{r['images_per_cpu_s']:.1f}"
        lines.append(f"{r['stage']:<11} {r['images']:>6} {s:>8} {ips:>9} {cps:>9}  {r['note']}")
    return "\n".join(lines)
