"""The LLM reader as a field of the ``extractor`` resource, one subclass per backend, picked in run config.

The promises, as for the image models: the extractor spec the Dagster-free core receives
is the one ``Settings`` gives ``charmeta run`` (same predictions fingerprint however a run
is launched), a reader picked in run config reaches the spec, and a bad pick names the
choices.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from dagster import validate_run_config

from charmeta.errors import ConfigError
from charmeta.settings import Settings
from charmeta_dagster.backends import LLMReaderResource, backends_of
from charmeta_dagster.backends.llm_readers import OpenAIEndpointReader
from charmeta_dagster.defs.resources import TextExtractor, resources_for


def test_backends_and_kinds() -> None:
    assert set(backends_of(LLMReaderResource)) == {"none", "openai", "transformers"}


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"CHARMETA_LLM_READER": "openai", "CHARMETA_LLM_URL": "http://127.0.0.1:8000", "CHARMETA_LLM_MODEL": "qwen"},
        {"CHARMETA_LLM_READER": "transformers", "CHARMETA_LLM_MODEL": "/m", "CHARMETA_LLM_SCOPE": "prose"},
        {"CHARMETA_LLM_READER": "transformers", "CHARMETA_LLM_MODEL": "/m", "CHARMETA_LLM_URL": "http://x"},
        {"CHARMETA_EXTRACTOR": "null", "CHARMETA_LLM_READER": "openai", "CHARMETA_LLM_URL": "http://h:1"},
    ],
)
def test_the_resource_gives_charmeta_runs_spec(env: dict[str, str]) -> None:
    settings = Settings.load(env=env)
    assert resources_for(settings)["extractor"].spec() == settings.extractor_spec()  # type: ignore[attr-defined]


def test_run_config_picks_the_reader(tmp_path: Path) -> None:
    from charmeta_dagster.loader import load_definitions

    defs = load_definitions(Settings.load({"output": str(tmp_path / "o")}, env={}))
    job = defs.resolve_job_def("shards_job")
    cfg: dict[str, Any] = {"llm_reader": {"openai": {"url": "http://127.0.0.1:8000", "scope": "prose"}}}
    assert validate_run_config(job, {"resources": {"extractor": {"config": cfg}}})
    picked = TextExtractor(**cfg)
    assert isinstance(picked.llm_reader, OpenAIEndpointReader)
    llm = json.loads(picked.spec())["llm"]
    assert llm == {"backend": "openai", "url": "http://127.0.0.1:8000", "model": "", "threshold": 0.6, "scope": "prose"}
    assert TextExtractor().spec() == "text"  # no reader: the plain name, text-only fingerprints unchanged
    with pytest.raises(Exception, match="gpt"):
        validate_run_config(job, {"resources": {"extractor": {"config": {"llm_reader": {"gpt": {}}}}}})


def test_an_unknown_reader_names_the_choices() -> None:
    with pytest.raises(ConfigError, match="openai"):
        resources_for(Settings.load(env={"CHARMETA_LLM_READER": "claude"}))
