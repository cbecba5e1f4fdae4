"""LLM reader backends: a language model reads again the text entries the rules leave uncertain
(``charmeta.llm.reader``; evidence ``llm:<value>``). A field of the ``extractor`` resource, so the
launchpad picks it per run: ``extractor: {config: {llm_reader: {openai: {url: ...}}}}``."""

from __future__ import annotations

from typing import Any, Literal

from charmeta.settings import Settings
from charmeta_dagster.backends.base import ImageBackend, LLMReaderResource


class NoLLMReader(LLMReaderResource):
    """No LLM reader (the default: ``Settings.llm_reader`` is ``none``)."""

    kind: Literal["none"] = "none"

    def spec_fields(self) -> dict[str, Any]:
        return {}


class _Reading(LLMReaderResource):
    """What every reader backend shares: which entries it reads."""

    threshold: float = 0.6  # read an entry when a core attribute's rule confidence is below this
    scope: str = "uncertain"  # uncertain | prose | all

    def spec_fields(self) -> dict[str, Any]:
        return {"backend": self.kind_name(), "threshold": self.threshold, "scope": self.scope, **self._model()}

    def _model(self) -> dict[str, Any]:
        raise NotImplementedError


class OpenAIEndpointReader(_Reading):
    """An OpenAI-compatible ``/v1/chat/completions`` server (vLLM, llama.cpp, Ollama) by ``url``;
    ``model`` = the server's model name. A bearer key, when needed, comes from the process
    environment (``CHARMETA_LLM_API_KEY``), never from run config."""

    kind: Literal["openai"] = "openai"
    url: str
    model: str = ""

    @classmethod
    def from_settings(cls, settings: Settings) -> ImageBackend:
        return cls(
            url=settings.llm_url, model=settings.llm_model, threshold=settings.llm_threshold, scope=settings.llm_scope
        )

    def _model(self) -> dict[str, Any]:
        return {"url": self.url, "model": self.model}


class TransformersLLMReader(_Reading):
    """A causal LM through transformers (a folder or a Hugging Face id, offline cache unless
    downloads are allowed), answering by scoring every allowed value."""

    kind: Literal["transformers"] = "transformers"
    model: str

    @classmethod
    def from_settings(cls, settings: Settings) -> ImageBackend:
        return cls(model=settings.llm_model, threshold=settings.llm_threshold, scope=settings.llm_scope)

    def _model(self) -> dict[str, Any]:
        return {"url": "", "model": self.model}
