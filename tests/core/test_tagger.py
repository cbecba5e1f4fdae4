"""WD tagger backend on a tiny ONNX model exported from torch, with the WD v3 signature, run on real drawings.

The model is built by hand so that it *reads the pixels*: its ``red_hair`` logit
grows with the share of pixels whose red channel exceeds green by 30+ (channel 2
minus channel 1 in the BGR order WD models take), so the test fails if
preprocessing hands it the wrong channel order or nothing at all - Eileen (red
hair) must score higher than Lucy (black hair, green dress).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
from PIL import Image  # noqa: E402

from charmeta.errors import ModelLoadError  # noqa: E402
from charmeta.images.cache import EmbeddingCache  # noqa: E402
from charmeta.images.tagger import WDTagger, resolve_files, tag_images, to_extraction  # noqa: E402

DRAWINGS = Path(__file__).resolve().parents[2] / "samples" / "drawings"
TAGS = [  # tag_id,name,category (0 general, 4 character, 9 rating), count
    ("general", 9), ("sensitive", 9), ("questionable", 9), ("explicit", 9),
    ("1girl", 0), ("solo", 0), ("red_hair", 0), ("black_hair", 0), ("long_hair", 0),
    ("hatsune_miku", 4),
]  # fmt: skip


class _Tiny(torch.nn.Module):
    """NHWC float32 BGR 0-255 -> per-tag probabilities (the WD v3 contract)."""

    def __init__(self) -> None:
        super().__init__()
        self.head = torch.nn.Linear(3, len(TAGS))
        w = torch.zeros(len(TAGS), 3)
        b = torch.full((len(TAGS),), -6.0)
        b[0] = 2.0  # rating: general
        b[4], b[5] = 3.0, 3.0  # 1girl, solo
        b[6] = -3.0  # red_hair: plus the red-pixel feature below
        w[7] = torch.tensor([-0.02, -0.02, -0.02])  # black_hair: darker picture -> higher
        b[7] = 3.0
        with torch.no_grad():
            self.head.weight.copy_(w)
            self.head.bias.copy_(b)
        self.register_buffer("red_slot", torch.nn.functional.one_hot(torch.tensor(6), len(TAGS)).float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        red = torch.relu(x[..., 2] - x[..., 1] - 30.0).mean(dim=(1, 2))  # channels are B, G, R
        return torch.sigmoid(self.head(x.mean(dim=(1, 2))) + red[:, None] * self.red_slot)


@pytest.fixture(scope="module")
def tagger_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("wd-tiny")
    torch.onnx.export(
        _Tiny().eval(),
        torch.zeros(1, 64, 64, 3),
        str(d / "model.onnx"),
        input_names=["input_1"],
        output_names=["predictions_sigmoid"],
        dynamic_axes={"input_1": {0: "batch"}},
        dynamo=False,
    )  # fmt: skip  (the TorchScript exporter: the dynamo one needs onnxscript, not installed)
    lines = ["tag_id,name,category,count"] + [f"{i},{n},{c},100" for i, (n, c) in enumerate(TAGS)]
    (d / "selected_tags.csv").write_text("\n".join(lines) + "\n")
    return d


def test_tagger_reads_pixels_in_bgr_and_its_tags_become_attributes(tagger_dir: Path) -> None:
    from charmeta.engine import Engine

    tg = WDTagger(str(tagger_dir))
    assert tg.image_size == 64 and tg.providers[-1] == "CPUExecutionProvider"
    eileen = Image.open(DRAWINGS / "eileen-happy.jpg")
    lucy = Image.open(DRAWINGS / "lucy-happy.jpg")
    p = tg.probabilities([eileen, lucy])
    red = TAGS.index(("red_hair", 0))
    assert p[0, red] > p[1, red] + 0.05  # Eileen's red hair moves the model; Lucy's black hair does not
    res = tg.decode(p[0], {"general": float(p[0, red]) - 1e-4, "character": 0.85})
    assert res.rating == ("general", pytest.approx(float(p[0, 0]), abs=1e-4))
    assert ("red_hair", pytest.approx(float(p[0, red]), abs=1e-4)) in res.general
    assert res.caption().startswith("rating:general, ")
    ex = to_extraction(res, Engine.default().extract_text)
    hair = ex.attributes["Hair Color"]
    assert hair.value == "Red" and hair.evidence == [f"tagger:red_hair:{p[0, red]:.2f}"]
    assert ex.character_count == 1 and ex.rating == "general"


def test_cache_by_content_hash_model_and_revision(tagger_dir: Path) -> None:
    tg = WDTagger(str(tagger_dir))
    cache = EmbeddingCache()
    img = Image.open(DRAWINGS / "lucy-happy.jpg")
    first = tag_images(tg, {"sha-a": img}, cache)["sha-a"]
    assert cache.misses == 1 and tg.revision.startswith("local-")
    again = tag_images(tg, {"sha-a": img}, cache)["sha-a"]
    assert cache.hits == 1 and np.array_equal(first, again)


def test_offline_and_bad_folders_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="downloads are off"):
        resolve_files("SmilingWolf/wd-no-such-tagger-v9", "main", allow_download=False)
    (tmp_path / "model.onnx").write_bytes(b"")
    with pytest.raises(ModelLoadError, match="selected_tags.csv"):
        resolve_files(str(tmp_path))
