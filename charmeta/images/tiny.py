"""Tiny randomly initialised CLIP / SigLIP models + tokenizers, built locally (no hub).

Why in the package (not only in tests): the benchmark and ``bench/gpu.sh``
need the same offline models; speed does not depend on the weights, and tests
need a real transformers model folder to exercise the loading guards.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

from charmeta.images.embedders import quiet_transformers

_CHARS = string.ascii_lowercase + string.digits + "-'"


def _clip_vocab() -> dict[str, int]:
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in _CHARS:
        vocab[c] = len(vocab)
    for c in _CHARS:
        vocab[c + "</w>"] = len(vocab)
    return vocab


def _tower_configs(
    vocab_size: int, hidden: int, layers: int, image_size: int, patch: int, max_positions: int, **text_extra: int
) -> tuple[dict[str, int], dict[str, int]]:
    """``(text_config, vision_config)`` of a tiny two-tower model (CLIP, SigLIP and BLIP alike): both
    towers ``layers`` deep, ``hidden`` wide, 2 attention heads; ``text_extra``: the text tower's own
    entries (special token ids, BLIP's ``encoder_hidden_size``)."""
    shared = dict(hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers, num_attention_heads=2)
    text = dict(vocab_size=vocab_size, **shared, max_position_embeddings=max_positions, **text_extra)
    vision = dict(**shared, image_size=image_size, patch_size=patch)
    return text, vision


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

    quiet_transformers()
    folder = Path(folder)
    vocab = _clip_vocab()
    torch.manual_seed(seed)
    text, vision = _tower_configs(
        len(vocab), hidden, layers, image_size, patch, max_positions=64, bos_token_id=0, eos_token_id=1, pad_token_id=1
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

    quiet_transformers()
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
    text, vision = _tower_configs(
        len(vocab), hidden, layers, image_size, patch, max_positions=16, pad_token_id=0, eos_token_id=1
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


def build_tiny_blip(
    folder: str | Path,
    teach: list[tuple[Any, str]] | None = None,
    steps: int = 60,
    image_size: int = 32,
    seed: int = 0,
) -> Path:
    """A small BLIP captioner (``BlipForConditionalGeneration`` + ``BlipProcessor`` over a word-level
    BERT vocabulary) saved into ``folder``, loadable by ``AutoModelForImageTextToText``.

    ``teach``: (PIL image, caption) pairs the model is fitted to for ``steps`` AdamW steps
    (about 10 s on one loaded CPU core for two pairs), so that it *reads the pixels*: the text
    side is the same for every picture (BLIP starts generation from one [DEC] token), so two
    different captions from two pictures can only come from their pixels. A random BLIP emits
    the same tokens whatever it is shown; a test on that would pass if the pipeline never
    handed it the picture. The caption words must be in the vocabulary below.
    """
    import torch
    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipProcessor

    try:
        from transformers import BlipImageProcessorPil as ImageProcessor  # no torchvision needed
    except ImportError:  # older transformers
        from transformers import BlipImageProcessor as ImageProcessor  # type: ignore[assignment]

    quiet_transformers()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]"] + (
        "a an the of with and girl boy woman man two three people picture drawing "
        "red black blue green brown blonde white pink purple silver orange grey "
        "hair eyes long short dress shirt smiling crying angry sad happy"
    ).split()
    (folder / "vocab.txt").write_text("\n".join(words) + "\n", encoding="utf-8")
    tok = BertTokenizer(str(folder / "vocab.txt"), do_lower_case=True, bos_token="[DEC]")
    proc = BlipProcessor(
        image_processor=ImageProcessor(size={"height": image_size, "width": image_size}), tokenizer=tok
    )
    hidden = 32
    text, vision = _tower_configs(
        len(words),
        hidden,
        2,
        image_size,
        8,
        max_positions=48,
        bos_token_id=words.index("[DEC]"),
        eos_token_id=words.index("[SEP]"),
        sep_token_id=words.index("[SEP]"),
        pad_token_id=0,
        encoder_hidden_size=hidden,
    )
    cfg = BlipConfig(text_config=text, vision_config=vision, projection_dim=16)
    torch.manual_seed(seed)
    model = BlipForConditionalGeneration(cfg)
    if teach:
        enc = proc(
            images=[im.convert("RGB") for im, _ in teach],
            text=[c for _, c in teach],
            return_tensors="pt",
            padding=True,
        )
        labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        model.train()
        for _ in range(steps):
            out = model(
                pixel_values=enc["pixel_values"],
                input_ids=enc["input_ids"],
                attention_mask=enc["attention_mask"],
                labels=labels,
            )
            out.loss.backward()
            opt.step()
            opt.zero_grad()
    model.eval().save_pretrained(folder)
    proc.save_pretrained(folder)
    return folder
