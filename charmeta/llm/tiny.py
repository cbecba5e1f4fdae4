"""A tiny Llama + word-level tokenizer for the LLM reader's tests and benchmarks, built locally (no hub).

Why fitted, not random: a random model picks an arbitrary value whatever the entry
says, so a test on it would pass if the reader never showed it the entry. ``teach``
fits the model, for a few AdamW steps, to answer given values for given entries *in
the reader's own prompt format* (``LocalCausalLM.encode_prompt`` /
``encode_candidate``), so its answer depends on the entry's words.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from charmeta.contract import ATTRIBUTES


def _words(text: str) -> list[str]:
    return re.findall(r"\w+|[^\w\s]", text.lower())


def build_tiny_llama(
    folder: str | Path,
    teach: list[tuple[str, str, str]] | None = None,
    steps: int = 40,
    extra_words: str = "",
    seed: int = 0,
) -> Path:
    """Save a 2-layer Llama (hidden 32) and a word-level fast tokenizer into ``folder``.

    ``teach``: (entry text, key, value) triples the model is fitted to answer. The
    vocabulary holds the contract's keys and values, the entries' words and
    ``extra_words``; the tokenizer drops every other word of the prompt.
    """
    import torch
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from charmeta.images.embedders import quiet_transformers

    quiet_transformers()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3}
    text = " ".join(
        [a.key + " " + " ".join(a.values or ()) for a in ATTRIBUTES] + ["unknown entry answer : ,", extra_words]
    )
    for t in teach or []:
        text += " " + " ".join(t)
    for w in _words(text):
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    # the tokenizer drops the words it does not know (and punctuation but ":"), so the ~2,300-word contract
    # prompt reads as the ~400 of its words that name keys and values: a 2-layer model then learns to look
    # at the entry in tens of steps instead of hundreds
    known = "|".join(sorted((re.escape(w) for w in vocab if w.isalnum()), key=len, reverse=True))
    tok.normalizer = normalizers.Sequence(
        [
            normalizers.Lowercase(),
            normalizers.Replace(Regex(r"[^\w\s:]"), " "),
            normalizers.Replace(Regex(rf"\b(?!(?:{known})\b)\w+"), " "),
        ]
    )
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace(), pre_tokenizers.Punctuation()])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>"
    )
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(cfg)
    model.save_pretrained(folder)
    fast.save_pretrained(folder)
    if teach:
        from charmeta.llm.backends import LocalCausalLM

        reader = LocalCausalLM(str(folder), device="cpu")
        seqs, labels = [], []
        keys = tuple(dict.fromkeys(k for _, k, _ in teach))
        for entry, key, value in teach:
            prompt = reader.encode_prompt(entry, keys)
            cand, n_val = reader.encode_candidate(key, value)
            ids = prompt + cand
            seqs.append(ids)
            labels.append([-100] * (len(ids) - n_val) + ids[len(ids) - n_val :])
        width = max(len(s) for s in seqs)
        x = torch.tensor([s + [0] * (width - len(s)) for s in seqs])
        y = torch.tensor([s + [-100] * (width - len(s)) for s in labels])
        att = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs])
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        model.train()
        for _ in range(steps):
            loss = model(input_ids=x, attention_mask=att, labels=y).loss
            loss.backward()
            opt.step()
            opt.zero_grad()
        model.eval().save_pretrained(folder)
    return folder


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character map (what byte-level BPE vocabularies are written in)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def build_tiny_gguf(path: str | Path, n_embd: int = 32, n_layer: int = 2, n_ff: int = 64, seed: int = 0) -> Path:
    """A random 2-layer Llama written straight to GGUF (``gguf`` package) for llama.cpp's server:
    a byte-level BPE vocabulary (the 256 bytes, one merge, ``<s>`` / ``</s>``), a chat template,
    16k context (the contract prompt is ~9,300 bytes, one token each). Random weights: it tests
    the server protocol and grammar-constrained JSON, not reading."""
    import gguf
    import numpy as np

    rng = np.random.default_rng(seed)
    b2u = _bytes_to_unicode()
    tokens = [b2u[b] for b in range(256)] + [b2u[32] + "a", "<s>", "</s>"]
    types = [gguf.TokenType.NORMAL] * 257 + [gguf.TokenType.CONTROL] * 2
    n_vocab, n_head = len(tokens), 2
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_context_length(16384)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head)
    w.add_rope_dimension_count(n_embd // n_head)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges([f"{b2u[32]} a"])
    w.add_bos_token_id(n_vocab - 2)
    w.add_eos_token_id(n_vocab - 1)
    w.add_add_bos_token(False)
    w.add_chat_template(CHAT_TEMPLATE)

    def t(*shape: int) -> Any:
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    w.add_tensor("token_embd.weight", t(n_vocab, n_embd))
    w.add_tensor("output_norm.weight", np.ones(n_embd, np.float32))
    w.add_tensor("output.weight", t(n_vocab, n_embd))
    for i in range(n_layer):
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(n_embd, np.float32))
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            w.add_tensor(f"blk.{i}.{name}.weight", t(n_embd, n_embd))
        w.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(n_embd, np.float32))
        w.add_tensor(f"blk.{i}.ffn_gate.weight", t(n_ff, n_embd))
        w.add_tensor(f"blk.{i}.ffn_up.weight", t(n_ff, n_embd))
        w.add_tensor(f"blk.{i}.ffn_down.weight", t(n_embd, n_ff))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
