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
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
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
