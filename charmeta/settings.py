"""One typed settings object: CLI flags > ``CHARMETA_*`` environment > defaults.

Why: the settings reached the code through 28 environment variables read in 15
files, several at import time (a test or a launcher that set one after the import
was ignored), and the embedder's config went env -> dict -> resource -> JSON ->
dict -> env. Now every setting is declared once here (name, variable, type,
default, meaning: the README's settings table is generated from ``FIELDS``), read
once at an edge - the ``charmeta`` command after parsing its flags, the Dagster
code location when it loads - and passed down as this object. Nothing reads
them at import time.

Image model settings (``CHARMETA_IMAGE_*``) are also read by
``charmeta.images.config`` for the image library used on its own; here they
feed the pipeline's ``image_models`` resource.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from charmeta.errors import ConfigError

#: Images per WD tagger call (``charmeta.images.config.ImageConfig.tagger_batch_size``).
DEFAULT_TAGGER_BATCH = 16


def _setting(env: str, default: Any, help: str) -> Any:
    return field(default=default, metadata={"env": env, "help": help})


@dataclass(frozen=True)
class Settings:
    """Every pipeline setting (see ``FIELDS`` / the README table for each one's meaning)."""

    source: str = _setting("CHARMETA_SOURCE", "", "dataset: folder, file, glob or hf://datasets/<org>/<name>/<path>")
    output: str = _setting("CHARMETA_OUTPUT", "", "output root (stage Parquet, export/, registry, .dagster_home/)")
    shard_rows: int = _setting("CHARMETA_SHARD_ROWS", 200_000, "rows per partition")
    text_field: str = _setting("CHARMETA_TEXT_FIELD", "", "text column/field (empty: auto-detect)")
    image_field: str = _setting(
        "CHARMETA_IMAGE_FIELD", "", "image column of Parquet / Arrow tables (empty: auto-detect)"
    )
    source_config: str = _setting(
        "CHARMETA_SOURCE_CONFIG", "", "README config of a hub dataset to follow (empty: default)"
    )
    extractor: str = _setting("CHARMETA_EXTRACTOR", "text", "extractor backend: text, null or package.module:factory")
    embedder: str = _setting("CHARMETA_EMBEDDER", "none", "image embedder: none, auto, clip, siglip, open_clip")
    image_model: str = _setting("CHARMETA_IMAGE_MODEL", "", "image model: Hugging Face id or local folder")
    image_revision: str = _setting("CHARMETA_IMAGE_REVISION", "", "image model revision")
    image_device: str = _setting("CHARMETA_IMAGE_DEVICE", "", "torch device for the image model (empty: auto)")
    image_cache: str = _setting("CHARMETA_IMAGE_CACHE", "", "embedding cache folder (default ~/.cache/charmeta)")
    image_heads: str = _setting("CHARMETA_IMAGE_HEADS", "", "attribute heads folder (default <output>/attribute_heads)")
    counter: str = _setting(
        "CHARMETA_COUNTER", "", "character counter for images: auto, animeface, haar, animeface+haar, none"
    )
    tagger: str = _setting(
        "CHARMETA_TAGGER_MODEL", "", "WD tagger: folder with model.onnx + selected_tags.csv, or HF id (empty: none)"
    )
    captioner: str = _setting(
        "CHARMETA_CAPTIONER_MODEL",
        "",
        "VLM captioner: transformers image-text-to-text folder or HF id (BLIP, BLIP-2, Florence-2, Qwen2-VL); "
        "its caption is read by the prose reader (empty: none)",
    )
    captioner_prompt: str = _setting(
        "CHARMETA_CAPTIONER_PROMPT", "", "captioner text prefix (BLIP) or instruction (chat VLMs); empty: none"
    )
    llm_reader: str = _setting(
        "CHARMETA_LLM_READER",
        "none",
        "LLM reader of uncertain text entries: none, transformers (local causal LM) or openai (endpoint by URL)",
    )
    llm_model: str = _setting(
        "CHARMETA_LLM_MODEL", "", "LLM reader model: local folder / HF id (transformers) or the endpoint's model name"
    )
    llm_url: str = _setting(
        "CHARMETA_LLM_URL",
        "",
        "OpenAI-compatible server base URL, e.g. http://127.0.0.1:8000 (vLLM, llama.cpp, Ollama)",
    )
    llm_threshold: float = _setting(
        "CHARMETA_LLM_THRESHOLD", 0.6, "the LLM reads an entry when a core attribute's rule confidence is below this"
    )
    llm_scope: str = _setting(
        "CHARMETA_LLM_SCOPE", "uncertain", "entries the LLM reads: uncertain, prose (uncertain + all prose) or all"
    )
    tagger_revision: str = _setting("CHARMETA_TAGGER_REVISION", "", "WD tagger revision (hub id only; empty: main)")
    tagger_batch_size: int = _setting(
        "CHARMETA_TAGGER_BATCH", DEFAULT_TAGGER_BATCH, "images per tagger / captioner call (and per cache lookup)"
    )
    allow_download: bool = _setting(
        "CHARMETA_ALLOW_DOWNLOAD", False, "let a hub model id download (else offline only; read by charmeta.images)"
    )
    image_backend: str = _setting(
        "CHARMETA_IMAGE_BACKEND",
        "",
        "image library used alone (charmeta extract --image): clip, siglip, open_clip, auto",
    )
    home: str = _setting("CHARMETA_HOME", "", "cache folder of the image library (default ~/.cache/charmeta)")
    duckdb_memory: str = _setting(
        "CHARMETA_DUCKDB_MEMORY", "", "memory cap per DuckDB connection, e.g. 2GB (charmeta.duck)"
    )
    workers: int = _setting("CHARMETA_WORKERS", 0, "worker processes per step (0: CPU count)")
    executor: str = _setting("CHARMETA_EXECUTOR", "local", "where partition tasks run: local (process pool) or ray")
    ray_address: str = _setting(
        "CHARMETA_RAY_ADDRESS", "", "Ray head: host:port, ray://host:10001, auto (empty: a private local Ray)"
    )
    ray_cpus_per_task: float = _setting("CHARMETA_RAY_CPUS_PER_TASK", 1.0, "Ray CPUs per partition task")
    ray_gpus_per_image_task: float = _setting("CHARMETA_RAY_GPUS_PER_IMAGE_TASK", 0.0, "Ray GPUs per image task")
    ray_max_retries: int = _setting("CHARMETA_RAY_MAX_RETRIES", 3, "Ray retries of a task whose worker or node died")
    ray_object_store_mb: int = _setting("CHARMETA_RAY_OBJECT_STORE_MB", 200, "object store of a private Ray (MB)")
    publish: str = _setting("CHARMETA_PUBLISH", "", "after the export, copy partitions + export to this URL (s3://...)")
    partitions_per_run: int = _setting("CHARMETA_PARTITIONS_PER_RUN", 10, "partitions per Dagster run (backfills)")
    pool_min_rows: int = _setting("CHARMETA_POOL_MIN_ROWS", 20_000, "below this many rows a step runs in-process")
    retry_max: int = _setting("CHARMETA_RETRY_MAX", 3, "retries of a failing partition step")
    retry_delay: float = _setting("CHARMETA_RETRY_DELAY", 5.0, "seconds before the first retry (doubles, jitter)")
    sensors: bool = _setting("CHARMETA_SENSORS", True, "sensors start running (off: stopped)")
    sensor_interval: int = _setting("CHARMETA_SENSOR_INTERVAL", 30, "seconds between shard sensor ticks")
    quality_reference: str = _setting(
        "CHARMETA_QUALITY_REFERENCE",
        "pinned",
        "label_distribution reference: pinned (the dataset's first partitions) or the name of a checked-in "
        "profile in charmeta/data/quality/profiles/ (none ship yet); thresholds in charmeta/data/quality/drift.json",
    )
    max_invalid_rate: float = _setting("CHARMETA_MAX_INVALID_RATE", 0.05, "invalid_rate WARN threshold")
    ui_port: int = _setting("CHARMETA_UI_PORT", 3000, "charmeta ui port (127.0.0.1)")
    app_host: str = _setting("CHARMETA_APP_HOST", "127.0.0.1", "charmeta app bind address (0.0.0.0 in a container)")
    app_port: int = _setting("CHARMETA_APP_PORT", 7860, "charmeta app port")
    samples: str = _setting("CHARMETA_SAMPLES", "", "the app's bundled sample folder (default: samples/)")
    log_dir: str = _setting("CHARMETA_LOG_DIR", "", "where error tracebacks are written (default: temp folder)")

    @classmethod
    def load(cls, overrides: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None) -> Settings:
        """Defaults, then ``env`` (default ``os.environ``), then ``overrides`` (CLI flags; ``None``
        values and empty strings mean "not given")."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f.metadata["env"])
            if raw not in (None, ""):
                values[f.name] = _parse(f, raw)
        for name, value in (overrides or {}).items():
            if name not in _NAMES:
                raise ConfigError(f"unknown setting {name!r}")
            if value is not None and value != "":
                values[name] = value
        return cls(**values)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    def to_env(self) -> dict[str, str]:
        """The ``CHARMETA_*`` variables that make another process load these settings (the
        webserver and daemon of ``charmeta ui``); defaults are left out."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value != f.default:
                out[f.metadata["env"]] = ("on" if value else "off") if isinstance(value, bool) else str(value)
        return out

    def image_config(self) -> dict[str, object]:
        """The image spec's fields (``backend`` and the fields that are set): what the code
        location's ``image_models`` resource built from these settings contributes, field for
        field (``charmeta run`` needs the spec before Dagster is imported; a test keeps the two equal)."""
        cfg: dict[str, object] = {"backend": self.embedder}
        if self.embedder != "none":
            cfg.update(model=self.image_model, revision=self.image_revision)
        if self.tagger:
            cfg.update(tagger=self.tagger, tagger_revision=self.tagger_revision)
            if self.tagger_batch_size != DEFAULT_TAGGER_BATCH:
                cfg["tagger_batch_size"] = self.tagger_batch_size
        if self.captioner:
            cfg.update(captioner=self.captioner, captioner_prompt=self.captioner_prompt)
        if self.counter not in ("", "auto"):
            cfg["counter"] = self.counter
        cfg.update(device=self.image_device, cache_dir=self.image_cache, heads_dir=self.image_heads)
        return {k: v for k, v in cfg.items() if v not in (None, "")}

    def extractor_spec(self) -> str:
        """The extractor backend string: ``extractor``, or, with an LLM reader configured, a JSON spec of
        ``extractor`` + the reader (``charmeta.llm.reader.make_spec``) that pool workers rebuild it from."""
        if self.llm_reader in ("", "none"):
            return self.extractor
        from charmeta.llm.reader import make_spec

        return make_spec(
            self.extractor, self.llm_reader, self.llm_model, self.llm_url, self.llm_threshold, self.llm_scope
        )

    def resolved_workers(self) -> int:
        """``workers``, or the CPUs this process may use when 0."""
        if self.workers > 0:
            return self.workers
        return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


_NAMES = {f.name for f in fields(Settings)}
_TYPES = {"int": int, "float": float, "str": str, "bool": bool}


def _parse(f: dataclasses.Field, raw: str) -> Any:
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "str")
    try:
        if kind == "bool":
            return raw.strip().lower() not in ("0", "off", "false", "no")
        return _TYPES[kind](raw)
    except (KeyError, ValueError) as exc:
        raise ConfigError(f"{f.metadata['env']}={raw!r}: expected {kind} ({f.metadata['help']})") from exc


#: ``(setting, variable, default, meaning)`` for every setting: the README's table.
FIELDS = [(f.name, f.metadata["env"], f.default, f.metadata["help"]) for f in fields(Settings)]


def markdown_table() -> str:
    """The settings table of the README (``python -m charmeta.settings``)."""
    rows = ["| setting | environment | default | meaning |", "|---|---|---|---|"]
    for name, env, default, help in FIELDS:
        shown = "" if default == "" else ({True: "on", False: "off"}[default] if isinstance(default, bool) else default)
        rows.append(f"| `{name}` | `{env}` | `{shown}` | {help} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
