"""The LLM reader's two backends: an OpenAI-compatible endpoint by URL, and a local causal LM through transformers.

Both answer the same question - one entry, the contract as the system prompt, a value
per requested key - and both answers go through ``contract.validate_answer`` (the same
pydantic validation, built from the contract, that every record passes).

* ``OpenAIEndpoint``: ``POST <url>/v1/chat/completions`` with ``response_format``
  ``json_schema`` (strict) = ``contract.answer_schema``, temperature 0 - what OpenAI,
  vLLM, Ollama and llama.cpp's ``llama-server`` implement. llama-cpp-python's server
  (0.3.36) refuses that form (HTTP 500, "Input should be 'text' or 'json_object'") and takes ``{"type": "json_object",
  "schema": ...}`` instead (turned into a grammar): on that refusal the endpoint
  switches form once and keeps it. Servers that ignore the schema still get their
  answer validated. Standard library HTTP (``urllib``): no client dependency.
  The bearer key, when the server wants one, comes from ``CHARMETA_LLM_API_KEY`` (never
  from settings, so it is never in a fingerprint, a spec or a log).
* ``LocalCausalLM``: constrained by *scoring*, not by sampling: for each enum key, the
  log-probability of every allowed value (``<Key>: <Value>`` after the prompt) is
  computed and the best value taken, its probability share over the allowed values as
  its confidence. The answer is in the vocabulary by construction (free-text keys such
  as Dress are not asked). Cost per entry: one forward pass over the prompt (its key /
  value cache is then reused for every candidate) plus one batched pass per key over
  the candidates' few tokens. Safetensors only, ``trust_remote_code`` off, offline from
  the local Hugging Face cache unless downloads are allowed (the CLIP loader's rules).
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from charmeta.contract import ATTRIBUTE_BY_KEY, UNKNOWN
from charmeta.errors import CharmetaError, ModelLoadError
from charmeta.images.embedder_base import LoadedModels
from charmeta.llm.contract import answer_schema, enum_values, policy, system_prompt, validate_answer

log = logging.getLogger("charmeta.llm")


class LLMError(CharmetaError):
    """The LLM backend could not answer (server down, timeout, HTTP error); the rules' values are kept."""


@dataclass
class Answer:
    """Validated values per key and the confidence the reader gives each."""

    values: dict[str, str]
    confidence: dict[str, float] = field(default_factory=dict)


class LLMBackend(Protocol):
    name: str

    def answer(self, text: str, keys: tuple[str, ...]) -> Answer: ...


def user_message(text: str, keys: tuple[str, ...]) -> str:
    return (
        "Entry:\n"
        + text.strip()
        + "\n\nAnswer with a JSON object holding exactly these keys, each an allowed value "
        + "(Unknown where the entry gives no evidence): "
        + ", ".join(keys)
    )


class OpenAIEndpoint:
    """An OpenAI-compatible ``/v1/chat/completions`` server (vLLM, llama.cpp server, Ollama)."""

    def __init__(self, url: str, model: str = "", timeout_s: float | None = None, max_tokens: int | None = None):
        if not url.startswith(("http://", "https://")):
            raise LLMError(f"CHARMETA_LLM_URL={url!r} is not an http(s) URL (e.g. http://127.0.0.1:8000)")
        base = url.rstrip("/")
        self.endpoint = base + ("/chat/completions" if base.endswith("/v1") else "/v1/chat/completions")
        self.model = model or "default"
        pol = policy()
        self.timeout_s = float(timeout_s if timeout_s is not None else pol["timeout_s"])
        self.max_tokens = int(max_tokens if max_tokens is not None else pol["max_tokens"])
        self.confidence = float(pol["endpoint_confidence"])
        self.name = f"openai:{self.model}"
        #: ``json_schema`` (OpenAI, vLLM, Ollama, llama.cpp's llama-server); switched to ``json_object`` +
        #: ``schema`` when the server refuses the first form (llama-cpp-python's server: HTTP 500)
        self.format = "json_schema"

    def request_body(self, text: str, keys: tuple[str, ...]) -> dict[str, Any]:
        return {
            "model": self.model,
            "messages": [
                {"role": "system", "content": system_prompt()},
                {"role": "user", "content": user_message(text, keys)},
            ],
            "temperature": 0,
            "max_tokens": self.max_tokens,
            "response_format": self.response_format(answer_schema(keys)),
        }

    def response_format(self, schema: dict[str, Any]) -> dict[str, Any]:
        if self.format == "json_object":  # llama-cpp-python's server: its own form of a schema constraint
            return {"type": "json_object", "schema": schema}
        return {
            "type": "json_schema",
            "json_schema": {"name": "character_attributes", "strict": True, "schema": schema},
        }

    def answer(self, text: str, keys: tuple[str, ...]) -> Answer:
        try:
            payload = self._post(self.request_body(text, keys))
        except _Refused as exc:
            if self.format != "json_schema" or not ("response_format" in exc.detail or "json_object" in exc.detail):
                raise LLMError(f"{self.endpoint}: HTTP {exc.code} {exc.detail[:200]}") from None
            log.info("%s refuses response_format json_schema; using json_object + schema", self.endpoint)
            self.format = "json_object"
            try:
                payload = self._post(self.request_body(text, keys))
            except _Refused as again:
                raise LLMError(f"{self.endpoint}: HTTP {again.code} {again.detail[:200]}") from None
        try:
            content = payload["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError) as exc:
            raise LLMError(f"{self.endpoint}: no choices[0].message.content in the response") from exc
        values = validate_answer(content, keys)
        return Answer(values, {k: self.confidence for k in values})

    def _post(self, body: dict[str, Any]) -> Any:
        headers = {"Content-Type": "application/json"}
        key = os.environ.get("CHARMETA_LLM_API_KEY")
        if key:
            headers["Authorization"] = f"Bearer {key}"
        req = urllib.request.Request(self.endpoint, json.dumps(body).encode("utf-8"), headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:  # noqa: S310 (http(s) checked above)
                return json.loads(resp.read().decode("utf-8"))
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:2000].decode("utf-8", "replace")
            if exc.code in (400, 422, 500):  # llama-cpp-python reports a refused field as HTTP 500
                raise _Refused(exc.code, detail) from None
            raise LLMError(f"{self.endpoint}: HTTP {exc.code} {detail[:200]}") from exc
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise LLMError(f"{self.endpoint}: {getattr(exc, 'reason', exc)} (is the server running?)") from exc
        except json.JSONDecodeError as exc:
            raise LLMError(f"{self.endpoint}: the response is not JSON") from exc


class _Refused(Exception):
    """HTTP 400 / 422 / 500: the server refused the request (its ``response_format`` form, say)."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(code, detail)
        self.code, self.detail = code, detail


class LocalCausalLM:
    """A causal LM through transformers, answering by scoring every allowed value of each enum key."""

    def __init__(self, model: str, revision: str = "main", allow_download: bool = False, device: str = "auto"):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from charmeta.images.embedder_base import resolve_device
        from charmeta.images.embedders import local_revision, pretrained_source

        src, kw = pretrained_source(model, revision, allow_download, "LLM reader", "CHARMETA_LLM_MODEL")
        self.device = resolve_device(device)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(src.path, **kw)
            self.model = AutoModelForCausalLM.from_pretrained(src.path, use_safetensors=True, **kw)
        except Exception as exc:
            raise ModelLoadError(
                f"LLM reader {model}: cannot load a causal LM + tokenizer: {type(exc).__name__}: {exc}"
            ) from exc
        self.dtype = torch.float16 if self.device == "cuda" else torch.float32
        self.model = self.model.to(self.device, dtype=self.dtype).eval()
        self.revision = src.revision or local_revision(Path(src.path))
        self.name = f"transformers:{model}"
        pol = policy()
        self.max_confidence = float(pol["max_confidence"])
        self._lock = threading.Lock()
        # transformers 5.x renamed forward's ``past_key_values`` to ``cache`` (the old name warns)
        params = inspect.signature(self.model.forward).parameters
        self._cache_arg = "cache" if "cache" in params else "past_key_values"

    # -- the texts scored: prompt, then "<Key>:" and " <Value>" per candidate ---------------------
    def prompt_text(self, text: str, keys: tuple[str, ...]) -> str:
        if getattr(self.tokenizer, "chat_template", None):
            return str(
                self.tokenizer.apply_chat_template(
                    [
                        {"role": "system", "content": system_prompt()},
                        {"role": "user", "content": user_message(text, keys)},
                    ],
                    tokenize=False,
                    add_generation_prompt=True,
                )
            )
        return f"{system_prompt()}\n\n{user_message(text, keys)}\n\nAnswer:\n"

    def encode_prompt(self, text: str, keys: tuple[str, ...]) -> list[int]:
        return list(self.tokenizer(self.prompt_text(text, keys), add_special_tokens=True)["input_ids"])

    def encode_candidate(self, key: str, value: str) -> tuple[list[int], int]:
        """(ids of ``<Key>: <Value>`` + newline, how many of them are the value's); the key part is
        encoded alone so every candidate of a key shares it."""
        k = list(self.tokenizer(f"{key}:", add_special_tokens=False)["input_ids"])
        v = list(self.tokenizer(f" {value}\n", add_special_tokens=False)["input_ids"])
        return k + v, len(v)

    def scores(self, text: str, keys: tuple[str, ...]) -> dict[str, dict[str, float]]:
        """Per enum key, each allowed value's probability share (softmax of the summed value log-probs)."""
        import copy

        import torch

        out: dict[str, dict[str, float]] = {}
        with self._lock, torch.inference_mode():
            prefix = torch.tensor([self.encode_prompt(text, keys)], device=self.device)
            first = self.model(prefix, use_cache=True)
            cache = getattr(first, "cache", None) or first.past_key_values
            last = first.logits[:, -1:, :].float()
            for key in keys:
                values = enum_values(key)
                if not values:
                    continue  # free text (Dress): not scored
                enc = [self.encode_candidate(key, v) for v in values]
                width = max(len(ids) for ids, _ in enc)
                pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
                ids = torch.tensor([x + [pad] * (width - len(x)) for x, _ in enc], device=self.device)
                n = len(values)
                kv = copy.deepcopy(cache)
                kv.batch_repeat_interleave(n)
                mask = torch.ones((n, prefix.shape[1] + width), dtype=torch.long, device=self.device)
                logits = self.model(ids, attention_mask=mask, use_cache=True, **{self._cache_arg: kv}).logits.float()
                # token j of a candidate is predicted by the prompt's last position (j = 0) or by j - 1
                pred = torch.cat([last.expand(n, 1, -1), logits[:, :-1, :]], dim=1).log_softmax(-1)
                tok_lp = pred.gather(-1, ids[..., None])[..., 0]
                total = []
                for i, (x, n_val) in enumerate(enc):
                    total.append(tok_lp[i, len(x) - n_val : len(x)].sum())
                probs = torch.stack(total).softmax(0).tolist()
                out[key] = dict(zip(values, probs))
        return out

    def answer(self, text: str, keys: tuple[str, ...]) -> Answer:
        values: dict[str, str] = {}
        conf: dict[str, float] = {}
        for key, dist in self.scores(text, keys).items():
            best = max(dist, key=dist.__getitem__)
            if best == UNKNOWN and not ATTRIBUTE_BY_KEY[key].is_core:
                continue  # an optional key without evidence is absent, not "Unknown"
            values[key], conf[key] = best, round(min(dist[best], self.max_confidence), 4)
        values = validate_answer(values, tuple(values))  # the same validation as an endpoint's answer
        return Answer(values, conf)


_LOCAL: LoadedModels[LocalCausalLM] = LoadedModels()


def get_local(model: str, revision: str = "main", allow_download: bool = False, device: str = "auto") -> LocalCausalLM:
    return _LOCAL.get(
        (model, revision, allow_download, device), lambda: LocalCausalLM(model, revision, allow_download, device)
    )
