"""VLM caption backend: a transformers image-to-text model -> a caption -> the prose reader.

Why this backend: a captioning model (BLIP, BLIP-2, Florence-2, a small Qwen-VL)
describes a picture in words, and the project already reads descriptions: the
caption goes through the same text extractor as any prose entry (``Engine``'s
``extract_text``), so its hair / eye colours, dress, expression and count become
attributes by the contract's own rules. Each decision's evidence is rewritten to
``captioner:<phrase>`` (the phrase the prose reader attached the value to), so
provenance says a model, not a person, wrote it; fusion
(``data/images/fusion.json``) ranks it below the record's own caption and the WD
tagger and above the pixel colours (a caption model names colours in context -
"red hair" - where the colour namer only sees a face region).

Loading follows the CLIP loader's rules (``images.embedders``): ``model`` is a
local folder or a Hugging Face id resolved offline from the local cache unless
``allow_download``; safetensors only, ``trust_remote_code`` off. The model class
is ``AutoModelForImageTextToText`` (BLIP, BLIP-2, Florence-2, Qwen2-VL, ...);
a processor with a chat template (Qwen-VL style) gets the prompt as a user turn
with the image, others get ``prompt`` as a text prefix (BLIP's conditional
captioning: "a picture of") or none. Decoding is greedy (deterministic: the same
picture always gives the same caption, which the cache relies on).

Captions are cached by (image sha256, model, revision, prompt + decoding) in the
embedding cache's ``image_caption`` table, so a re-run, or a threshold change in
the text reader, never calls the model again.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from pathlib import Path
from typing import Any

from PIL import Image

from charmeta.errors import CharmetaError, ModelLoadError
from charmeta.images.embedder_base import LoadedModels

log = logging.getLogger("charmeta.images.captioner")

#: Evidence prefix of the captioner's decisions (fusion keeps it as the source's name).
PREFIX = "captioner:"
DEFAULT_MAX_NEW_TOKENS = 40


class Captioner:
    """A loaded image-to-text model; ``caption`` is greedy, batched and thread-safe (one lock)."""

    def __init__(
        self,
        model: str,
        revision: str = "main",
        allow_download: bool = False,
        device: str = "auto",
        prompt: str = "",
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    ) -> None:
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        from charmeta.images.embedders import local_revision, pretrained_source, resolve_device

        src, kw = pretrained_source(model, revision, allow_download, "captioner", "CHARMETA_CAPTIONER_MODEL")
        self.device = resolve_device(device)
        try:
            self.processor = AutoProcessor.from_pretrained(src.path, **kw)
            self.model = AutoModelForImageTextToText.from_pretrained(src.path, use_safetensors=True, **kw)
        except Exception as exc:
            raise ModelLoadError(
                f"captioner {model}: cannot load an image-to-text model + processor: {type(exc).__name__}: {exc} "
                "(CHARMETA_CAPTIONER_MODEL must be a transformers image-text-to-text folder or hub id: "
                "BLIP, BLIP-2, Florence-2, Qwen2-VL, ...)"
            ) from exc
        self.dtype = torch.float16 if self.device == "cuda" else torch.float32
        self.model = self.model.to(self.device, dtype=self.dtype).eval()
        self.model_id = model
        self.revision = src.revision or local_revision(Path(src.path))
        self.prompt = prompt
        self.max_new_tokens = int(max_new_tokens)
        self.chat = bool(getattr(self.processor, "chat_template", None))
        #: cache key of the decoding: another prompt or length is another caption
        self.cache_model = f"{model}|{hashlib.sha256(f'{prompt}|{max_new_tokens}'.encode()).hexdigest()[:12]}"
        self._lock = threading.Lock()

    def _inputs(self, images: list[Image.Image]) -> Any:
        if self.chat:
            text = self.processor.apply_chat_template(
                [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image"},
                            {"type": "text", "text": self.prompt or "Describe the picture."},
                        ],
                    }
                ],
                add_generation_prompt=True,
            )
            return self.processor(images=images, text=[text] * len(images), return_tensors="pt", padding=True)
        if self.prompt:
            return self.processor(images=images, text=[self.prompt] * len(images), return_tensors="pt", padding=True)
        return self.processor(images=images, return_tensors="pt")

    def caption(self, images: list[Image.Image]) -> list[str]:
        """One caption per picture (RGB), greedy; the prompt / chat prefix is cut off."""
        import torch

        if not images:
            return []
        rgb = [im.convert("RGB") for im in images]
        with self._lock, torch.inference_mode():
            enc = self._inputs(rgb)
            enc = {k: (v.to(self.device) if hasattr(v, "to") else v) for k, v in enc.items()}
            if "pixel_values" in enc:
                enc["pixel_values"] = enc["pixel_values"].to(self.dtype)
            ids = self.model.generate(**enc, max_new_tokens=self.max_new_tokens, do_sample=False, num_beams=1)
            if self.chat and "input_ids" in enc:  # decoder-only chat models echo the prompt
                ids = ids[:, enc["input_ids"].shape[1] :]
            texts = self.processor.batch_decode(ids, skip_special_tokens=True)
        out = []
        for t in texts:
            t = " ".join(str(t).split())
            if self.prompt and not self.chat and t.lower().startswith(self.prompt.lower()):
                t = t[len(self.prompt) :].strip()
            out.append(t)
        return out


_CAPTIONERS: LoadedModels[Captioner] = LoadedModels()


def get_captioner(
    model: str,
    revision: str = "main",
    allow_download: bool = False,
    device: str = "auto",
    prompt: str = "",
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
) -> Captioner:
    """The process-wide captioner for these settings (loaded on first use, then shared)."""
    return _CAPTIONERS.get(
        (model, revision, allow_download, device, prompt, max_new_tokens),
        lambda: Captioner(model, revision, allow_download, device, prompt, max_new_tokens),
    )


def caption_images(captioner: Any, images: dict[str, Image.Image], cache: Any = None) -> dict[str, str]:
    """Caption per content hash, cache first (same key scheme as the embeddings and the tagger).

    ``captioner`` is anything with ``model_id``, ``revision``, ``cache_model`` and
    ``caption(list[Image]) -> list[str]`` (tests plug a fake one in to test the wiring)."""
    got: dict[str, str] = {}
    model_key = getattr(captioner, "cache_model", captioner.model_id)
    if cache is not None:
        got = cache.get_texts(list(images), model_key, captioner.revision)
    todo = [k for k in images if k not in got]
    if todo:
        fresh = dict(zip(todo, captioner.caption([images[k] for k in todo])))
        if cache is not None:
            cache.put_texts(fresh, model_key, captioner.revision)
        got.update(fresh)
    return got


def to_extraction(caption: str | None, text_extract: Any) -> Any:
    """A generated caption -> the prose reader -> an ``Extraction`` whose evidence reads ``captioner:<phrase>``.

    None for an empty caption or one the reader calls invalid (nothing to add)."""
    from charmeta.records import Decision

    if not caption or not caption.strip():
        return None
    try:
        ex = text_extract(caption)
    except CharmetaError as exc:
        log.warning("caption not read: %s", exc)
        return None
    if ex is None or ex.status == "invalid":
        return None
    ex.attributes = {
        k: Decision(d.value, d.confidence, [f"{PREFIX}{e}" for e in d.evidence], d.conflict)
        for k, d in ex.attributes.items()
    }
    return ex
