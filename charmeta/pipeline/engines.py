"""Extractor backends by name: what the ``extractor`` setting / resource selects.

``text`` is ``Engine.default()`` (the tag/prose extractor), ``null`` extracts
nothing (measures platform overhead), ``package.module:factory`` is any object
that builds an ``Engine`` or an extractor, and a JSON object
(``{"extractor": ..., "llm": {...}}``, ``charmeta.llm.reader.make_spec``) is that
base extractor followed by the LLM reader. Built once per process and cached,
because a pool worker keeps its compiled engine between partitions.
"""

from __future__ import annotations

import importlib
from typing import Any

import pyarrow as pa


class NullExtractor:
    """Extracts nothing (every core attribute ``Unknown``): measures platform overhead
    and lets the platform run before a real backend exists."""

    name = "null"
    version = "1"

    def extract(self, text: str) -> Any:
        from charmeta.records import Extraction

        return Extraction(input_kind="tags", status="ok", character_count=None)

    def extract_batch(self, items: Any) -> list[Any]:
        return [self.extract(t) for t in items]


_ENGINES: dict[str, Any] = {}


def make_engine(backend: str) -> Any:
    """``text`` -> ``Engine.default()``; ``null`` -> NullExtractor; ``pkg.mod:attr`` ->
    ``attr()`` returning an ``Engine`` or an extractor. Cached per process."""
    if backend in _ENGINES:
        return _ENGINES[backend]
    from charmeta.engine import Engine

    if backend.lstrip().startswith("{"):  # base extractor + the LLM reader (charmeta.llm.reader.make_spec)
        import os

        from charmeta.llm.reader import parse_spec, wrap

        base = make_engine(parse_spec(backend)["extractor"]).text_extractor
        allow = os.environ.get("CHARMETA_ALLOW_DOWNLOAD", "") in ("1", "true", "yes", "on")
        engine = Engine(text_extractor=wrap(base, backend, allow_download=allow))
    elif backend in ("text", "default"):
        engine = Engine.default()
    elif backend == "null":
        engine = Engine(text_extractor=NullExtractor())
    elif ":" in backend:
        mod, _, attr = backend.partition(":")
        obj = getattr(importlib.import_module(mod), attr)
        obj = obj() if callable(obj) and not hasattr(obj, "extract") else obj
        engine = obj if isinstance(obj, Engine) else Engine(text_extractor=obj)
    else:
        raise ValueError(f"unknown extractor backend {backend!r}: use text, null or package.module:factory")
    _ENGINES[backend] = engine
    return engine


def backend_identity(backend: str) -> str:
    """Name + version of the backend, part of the predictions fingerprint.

    The default text extractor's is known without building it (compiling the ontology costs
    ~0.3 s, and ``charmeta run`` needs the fingerprints before it starts any work)."""
    if backend in ("text", "default"):
        from charmeta.extractors.text import TextExtractor

        return f"{backend}/{TextExtractor.name}/{TextExtractor.code_version()}"
    if backend.lstrip().startswith("{"):  # the spec names every setting of the reader; the base's identity too
        from charmeta.llm.reader import CODE_VERSION, parse_spec

        return f"{backend}/llm{CODE_VERSION}/{backend_identity(parse_spec(backend)['extractor'])}"
    try:
        ex = make_engine(backend).text_extractor
        return f"{backend}/{getattr(ex, 'name', '?')}/{getattr(ex, 'version', '0')}"
    except Exception as exc:  # surfaced again (and loudly) when the stage runs
        return f"{backend}/unavailable:{type(exc).__name__}"


def extract_batch(engine: Any, batch: pa.RecordBatch, source_shard: str) -> pa.Table:
    """The engine on one normalized batch: the four columns it reads, as Arrow arrays (its
    columnar tag path reads them without converting every value to Python)."""
    return engine.process_batch(
        batch.column("id"),
        batch.column("text"),
        source_shard=source_shard,
        positions=batch.column("source_position"),
        preset_invalid=batch.column("reason"),
    )


def warm(backend: str) -> None:
    """Build ``backend``'s engine in this process (a pool worker at start-up); errors are
    left to the step that uses the backend, which reports them."""
    try:
        make_engine(backend)
    except Exception:  # noqa: BLE001
        pass
