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
