"""Tiny randomly initialised CLIP / SigLIP models + tokenizers, built locally (no hub).

Why in the package (not only in tests): the benchmark and ``bench/gpu.sh``
need the same offline models; speed does not depend on the weights, and tests
need a real transformers model folder to exercise the loading guards.
"""

from __future__ import annotations

import string
from pathlib import Path

_CHARS = string.ascii_lowercase + string.digits + "-'"


def _clip_vocab() -> dict[str, int]:
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in _CHARS:
        vocab[c] = len(vocab)
    for c in _CHARS:
        vocab[c + "</w>"] = len(vocab)
    return vocab


def build_tiny_clip(
    folder: str | Path,
    image_size: int = 32,
    patch: int = 8,
    hidden: int = 32,
    layers: int = 2,
    proj: int = 16,
    seed: int = 0,
) -> Path:
    """Save a small CLIP (safetensors) and a character-level CLIPTokenizer into ``folder``."""
    import torch
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()

    folder = Path(folder)
    vocab = _clip_vocab()
    torch.manual_seed(seed)
    text = dict(
        vocab_size=len(vocab),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=2,
        max_position_embeddings=64,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )
    vision = dict(
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=2,
        image_size=image_size,
        patch_size=patch,
    )
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=proj)).eval().save_pretrained(folder)
    CLIPTokenizer(vocab=vocab, merges=[]).save_pretrained(folder)
    return folder


def build_tiny_siglip(
    folder: str | Path, image_size: int = 32, patch: int = 8, hidden: int = 32, layers: int = 2, seed: int = 0
) -> Path:
    """Save a small SigLIP and a hand-built word-level fast tokenizer into ``folder``.

    SigLIP's own tokenizer is SentencePiece (needs a trained .model file); a
    word-level ``tokenizers`` model over lowercase words exercises the same
    text tower path and is enough to test zero-shot plumbing.
    """
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, SiglipConfig, SiglipModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()

    folder = Path(folder)
    words = sorted(
        {
            w
            for w in (
                "a an the of with in who is character person picture photo illustration drawing portrait close-up "
                "hair eyes skin face girl boy woman man anime wearing full-body"
            ).split()
        }
    )
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    for w in words + list(_CHARS):
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", model_max_length=16
    )
    torch.manual_seed(seed)
    text = dict(
        vocab_size=len(vocab),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=2,
        max_position_embeddings=16,
        pad_token_id=0,
        eos_token_id=1,
    )
    vision = dict(
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=2,
        image_size=image_size,
        patch_size=patch,
    )
    SiglipModel(SiglipConfig(text_config=text, vision_config=vision)).eval().save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


#: The tag file of ``build_tiny_wd_tagger``: (name, Danbooru category: 0 general, 4 character, 9 rating).
TINY_WD_TAGS = [
    ("general", 9), ("sensitive", 9), ("questionable", 9), ("explicit", 9),
    ("1girl", 0), ("solo", 0), ("red_hair", 0), ("black_hair", 0), ("long_hair", 0),
    ("hatsune_miku", 4),
]  # fmt: skip


def build_tiny_wd_tagger(folder: str | Path, image_size: int = 64) -> Path:
    """A WD-v3-signature tagger (``model.onnx`` NHWC float32 BGR 0-255 -> sigmoid, ``selected_tags.csv``)
    exported from torch, whose weights are set by hand so that it *reads the pixels*: ``red_hair``
    grows with the share of pixels whose red channel beats green by 30+ (channel 2 minus channel 1
    in BGR order), ``1girl``/``solo``/``general`` are always on. A test on it fails if the picture,
    or its channel order, never reaches the model. Uses the TorchScript exporter (the dynamo one
    needs ``onnxscript``)."""
    import torch

    n = len(TINY_WD_TAGS)
    red_slot = [t for t, _ in TINY_WD_TAGS].index("red_hair")

    class TinyWD(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.head = torch.nn.Linear(3, n)
            bias = torch.full((n,), -6.0)
            bias[0], bias[4], bias[5], bias[red_slot] = 2.0, 3.0, 3.0, -3.0
            with torch.no_grad():
                self.head.weight.zero_()
                self.head.bias.copy_(bias)
            self.register_buffer("red_slot", torch.nn.functional.one_hot(torch.tensor(red_slot), n).float())

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            red = torch.relu(x[..., 2] - x[..., 1] - 30.0).mean(dim=(1, 2))  # channels are B, G, R
            return torch.sigmoid(self.head(x.mean(dim=(1, 2))) + red[:, None] * self.red_slot)

    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        TinyWD().eval(),
        torch.zeros(1, image_size, image_size, 3),
        str(d / "model.onnx"),
        input_names=["input_1"],
        output_names=["predictions_sigmoid"],
        dynamic_axes={"input_1": {0: "batch"}},
        dynamo=False,
    )
    lines = ["tag_id,name,category,count"] + [f"{i},{t},{c},100" for i, (t, c) in enumerate(TINY_WD_TAGS)]
    (d / "selected_tags.csv").write_text("\n".join(lines) + "\n")
    return d
