"""Flat ``(tag, attribute, value)`` tables for the DuckDB floor query.

The floor needs a join of the size the engine really does, not its resolution
rules. ``engine_floor_ontology`` is the engine's compiled tag index (every tag the
extractor looks up: attribute tags, colour x garment expansions, character names,
count/rating/safety tags; ~25k rows). It is the floor's table since 2026-11-27.

``load_floor_ontology`` is the table the floor used before: it reads
``charmeta/data/ontology/*.json`` tolerantly (whatever shape a file has, any
``tag -> value`` map or ``{"tags": [...], "display": v}`` list under an attribute
file counts, ~600 rows) and falls back to rules over the WD vocabulary (``* hair``
-> Hair Color...) when no ontology is there. The bench still runs it as a second,
lighter floor, so figures stay comparable with earlier reports.
"""

from __future__ import annotations

import csv
import json
import logging
import re
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

log = logging.getLogger("charmeta.bench")

#: Keys whose maps are words for prose or rule parameters, not exact tags.
_SKIP_KEYS = {"doc", "resolver", "order", "prose", "suffixes", "expand_heads", "pattern", "colors", "weak"}


def normalise(tag: str) -> str:
    """Same normalisation as the floor SQL: lower, ``_`` -> space, unescape parentheses."""
    return tag.strip().lower().replace("_", " ").replace("\\(", "(").replace("\\)", ")")


def _pairs(node: Any, key: str = "", depth: int = 0) -> Iterator[tuple[str, str]]:
    """``(tag, value)`` from any nesting: ``{tag: value}`` maps and ``{value: [tags]}``
    maps below the top level, ``[{"tags": [...], "display": value}]`` lists."""
    if key in _SKIP_KEYS:
        return
    if isinstance(node, dict):
        for k, v in node.items():
            if isinstance(v, str):
                if depth > 0:
                    yield k, v
            elif isinstance(v, list) and v and all(isinstance(t, str) for t in v):
                if depth > 0:  # top-level string lists are rule parameters (order, nude_tags...)
                    yield from ((t, k) for t in v)
            else:
                yield from _pairs(v, k, depth + 1)
    elif isinstance(node, list):
        for item in node:
            if isinstance(item, dict) and isinstance(item.get("tags"), list):
                value = item.get("display") or item.get("value") or item.get("name")
                if isinstance(value, str):
                    yield from ((t, value) for t in item["tags"] if isinstance(t, str))
            elif isinstance(item, (dict, list)):
                yield from _pairs(item, key, depth + 1)


def from_ontology_dir(folder: Path) -> list[tuple[str, str, str]]:
    """Pairs from every attribute file in ``folder``; unreadable files are skipped with a warning."""
    rows: set[tuple[str, str, str]] = set()
    for path in sorted(folder.glob("*.json")):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            log.warning("bench: skipping ontology file %s: %s", path.name, exc)
            continue
        if not isinstance(doc, dict) or not isinstance(doc.get("attribute"), str):
            continue  # aliases, colors, meta...: not tag -> attribute maps
        for tag, value in _pairs(doc):
            if 0 < len(tag) <= 80:
                rows.add((normalise(tag), doc["attribute"], value))
    return sorted(rows)


_COLOURS = "black|brown|blonde|red|orange|yellow|green|blue|purple|pink|white|grey|silver|aqua|multicolored"
_FLOOR_RULES = (
    (re.compile(r"^(long|short|medium|very long) hair$"), "Hair Length"),
    (re.compile(rf"^({_COLOURS}) hair$"), "Hair Color"),
    (re.compile(rf"^({_COLOURS}) eyes$"), "Eye Color"),
    (re.compile(r"\b(dress|shirt|skirt|uniform|suit|jacket|kimono|coat|swimsuit|armor)$"), "Dress"),
)


def from_wd_vocab() -> list[tuple[str, str, str]]:
    """Rule-built pairs over WD general tags: the fallback when no ontology exists."""
    text = resources.files("charmeta.data.reference").joinpath("wd_selected_tags.csv").read_text(encoding="utf-8")
    rows = set()
    for row in csv.DictReader(text.splitlines()):
        if row["category"] != "0":
            continue
        tag = normalise(row["name"])
        for rx, attribute in _FLOOR_RULES:
            m = rx.search(tag)
            if m:
                rows.add((tag, attribute, m.group(1).title()))
                break
    return sorted(rows)


def load_floor_ontology(folder: Path | None = None) -> tuple[list[tuple[str, str, str]], str]:
    """``(rows, source)``: the ontology files if they yield anything, else the WD fallback."""
    if folder is None:
        folder = Path(str(resources.files("charmeta.data").joinpath("ontology")))
    rows = from_ontology_dir(folder) if folder.is_dir() else []
    if rows:
        # Colour attributes are patterns (``{color} hair``) in the ontology: add their WD expansion.
        colours = [r for r in from_wd_vocab() if r[1] in ("Hair Color", "Eye Color")]
        rows = sorted(set(rows) | set(colours))
        return rows, f"ontology/*.json + WD colour tags ({len(rows)} tag rows)"
    rows = from_wd_vocab()
    return rows, f"WD-vocabulary fallback ({len(rows)} tag rows)"


def engine_floor_ontology() -> tuple[list[tuple[str, str, str]], str]:
    """``(rows, source)``: one row per (tag, hit) of the engine's compiled index
    (``charmeta.ontology.Ontology.frozen``): the attribute (or the hit's kind where it has
    none) and the value (a weighted value's name; empty where the hit carries none)."""
    from charmeta.ontology import get_ontology

    rows: set[tuple[str, str, str]] = set()
    for tag, hits in get_ontology().frozen.items():
        for hit in hits:
            attribute = hit.key if isinstance(hit.key, str) else hit.kind
            value = hit.value[0] if isinstance(hit.value, tuple) else hit.value
            rows.add((tag, str(attribute), "" if value is None else str(value)))
    out = sorted(rows)
    return out, f"engine's compiled tag index ({len(out):,} tag rows)"
