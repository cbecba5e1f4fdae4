"""How the files of a dataset are laid out: formats by name, Hugging Face conventions.

Why a module of its own: image datasets ship in a handful of layouts that are
recognised by *names* before any byte is read - ``.tar.gz`` shards, ``.zip``
archives, ``save_to_disk`` folders (``state.json`` listing the ``.arrow`` files
that belong to the dataset, beside ``cache-*.arrow`` files that do not),
``imagefolder`` trees with a ``metadata.jsonl`` / ``metadata.csv``, and hub
repositories whose README declares ``configs`` / ``data_files``. Discovery asks
this module what each file is; the readers ask it which column holds the image.
"""

from __future__ import annotations

import json
import logging
import posixpath
import re
from typing import Any

import pyarrow as pa

log = logging.getLogger("charmeta.sources")

#: Extension -> shard format. Multi-part suffixes (``.tar.gz``) are checked first.
FORMAT_BY_EXT = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".arrow": "arrow",
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "txt",
    ".caption": "txt",
    ".tags": "txt",
    ".tar": "tar",
    ".tgz": "tar",
    ".zip": "zip",
}
#: ``tarfile``'s ``r|*`` reads these streamed (gzip / bzip2 / xz decompressed on the fly).
TAR_SUFFIXES = (".tar.gz", ".tar.bz2", ".tar.xz", ".tgz")
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")
#: Hugging Face ``imagefolder`` metadata files: one row per image, ``file_name`` column.
METADATA_NAMES = ("metadata.jsonl", "metadata.csv")
#: Files ``Dataset.save_to_disk`` writes beside its ``.arrow`` files; they are not records.
SAVE_TO_DISK_META = ("dataset_info.json", "state.json", "dataset_dict.json")
#: Binary columns that hold encoded images when the schema says nothing more.
IMAGE_COLUMN_NAMES = ("image", "img", "image_bytes", "jpg", "jpeg", "png", "webp", "bytes")


def format_of(name: str) -> str | None:
    """Shard format of a file name: ``tar``, ``zip``, ``parquet``, ...; ``image`` for image
    files (rows of a folder group); ``imagefolder`` for HF metadata files; None: not data."""
    low = name.lower()
    if low in METADATA_NAMES:
        return "imagefolder"
    if low.endswith(TAR_SUFFIXES):
        return "tar"
    ext = posixpath.splitext(low)[1]
    if ext in IMAGE_EXTS:
        return "image"
    return FORMAT_BY_EXT.get(ext)


# -- save_to_disk ----------------------------------------------------------------
def save_to_disk_files(state: dict[str, Any]) -> list[str] | None:
    """File names of the ``.arrow`` files a ``state.json`` declares (None: not such a file)."""
    files = state.get("_data_files") if isinstance(state, dict) else None
    if not isinstance(files, list):
        return None
    out = [f.get("filename") for f in files if isinstance(f, dict)]
    return [f for f in out if isinstance(f, str) and f]


# -- image / text columns ------------------------------------------------------
def hf_features(schema: pa.Schema) -> dict[str, Any]:
    """The ``datasets`` features stored in the schema metadata (``{}`` when absent)."""
    meta = schema.metadata or {}
    raw = meta.get(b"huggingface")
    if not raw:
        return {}
    try:
        info = json.loads(raw)
    except ValueError:
        return {}
    feats = (info.get("info") or {}).get("features") if isinstance(info, dict) else None
    return feats if isinstance(feats, dict) else {}


def _is_binary(t: pa.DataType) -> bool:
    return pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t)


def _is_image_struct(t: pa.DataType) -> bool:
    if not pa.types.is_struct(t):
        return False
    names = {t.field(i).name: t.field(i).type for i in range(t.num_fields)}
    return "bytes" in names and _is_binary(names["bytes"])


def image_column(schema: pa.Schema, configured: str | None = None) -> str | None:
    """The column holding encoded images, or None for a text-only table.

    Order: a configured name (``"none"``, or any name the table lacks: no image column); the HF ``Image`` feature named in the schema metadata;
    a struct with a binary ``bytes`` child (how ``datasets`` stores ``Image``); a binary
    column with an image-like name (``image``, ``jpg``, ...)."""
    names = schema.names
    if configured:  # "none": read the table as text only even if it holds images
        return configured if configured in names else None
    for name, feat in hf_features(schema).items():
        if isinstance(feat, dict) and feat.get("_type") == "Image" and name in names:
            return name
    for f in schema:
        if _is_image_struct(f.type):
            return f.name
    lower = {n.lower(): n for n in names}
    for cand in IMAGE_COLUMN_NAMES:
        n = lower.get(cand)
        if n is not None and _is_binary(schema.field(n).type):
            return n
    return None


# -- hub README configs ---------------------------------------------------------
_FRONT = re.compile(r"\A---\s*\n(.*?)\n---\s*(\n|\Z)", re.S)


def readme_configs(text: str) -> list[dict[str, Any]]:
    """The ``configs`` list of a dataset card's YAML header (``[]`` when there is none).

    Each config is normalised to ``{"name", "default", "data_files": [pattern, ...],
    "data_dir"}``; ``data_files`` may be a string, a list of strings or a list of
    ``{split, path}`` where ``path`` is a string or a list (the hub's three spellings)."""
    import yaml

    m = _FRONT.match(text.lstrip("\ufeff"))
    if not m:
        return []
    try:
        header = yaml.safe_load(m.group(1))
    except yaml.YAMLError as exc:
        log.warning("README YAML header is not valid YAML (%s): configs ignored", exc)
        return []
    configs = header.get("configs") if isinstance(header, dict) else None
    if not isinstance(configs, list):
        return []
    out = []
    for c in configs:
        if not isinstance(c, dict):
            continue
        patterns: list[str] = []
        df = c.get("data_files")
        items = df if isinstance(df, list) else ([df] if df else [])
        for it in items:
            if isinstance(it, str):
                patterns.append(it)
            elif isinstance(it, dict):
                p = it.get("path")
                patterns.extend([p] if isinstance(p, str) else [x for x in (p or []) if isinstance(x, str)])
        data_dir = c.get("data_dir") if isinstance(c.get("data_dir"), str) else None
        if data_dir:
            patterns = [posixpath.join(data_dir, p) for p in patterns] or [posixpath.join(data_dir, "**")]
        out.append(
            {
                "name": str(c.get("config_name") or "default"),
                "default": bool(c.get("default")),
                "data_files": patterns,
                "data_dir": data_dir,
            }
        )
    return out


def pick_config(configs: list[dict[str, Any]], name: str | None = None) -> dict[str, Any] | None:
    """The config discovery follows: the one named, else ``default: true``, else ``default``, else the first."""
    if not configs:
        return None
    if name:
        for c in configs:
            if c["name"] == name:
                return c
        from charmeta.errors import ConfigError

        raise ConfigError(f"config {name!r} is not declared in the README; declared: {[c['name'] for c in configs]}")
    return next((c for c in configs if c["default"]), None) or next(
        (c for c in configs if c["name"] == "default"), configs[0]
    )


def pattern_matcher(patterns: list[str]) -> re.Pattern[str]:
    """One regex for the hub's ``data_files`` globs (``**`` crosses folders, ``*`` does not)."""
    from fsspec.utils import glob_translate

    parts = []
    for p in patterns:
        p = p.lstrip("/")
        if p.startswith("./"):
            p = p[2:]
        parts.append(glob_translate(p))
    return re.compile("|".join(f"(?:{x})" for x in parts) or r"(?!)")
