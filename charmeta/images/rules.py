"""Data files of the image path (prompts, thresholds, fusion policy), loaded once and validated.

Why data files: tuning a threshold or adding a prompt is a reviewed data change,
not a code change, and tests check every value against the contract vocabulary.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from charmeta.contract import ATTRIBUTE_BY_KEY


@cache
def load(name: str) -> dict[str, Any]:
    text = resources.files("charmeta").joinpath(f"data/images/{name}.json").read_text("utf-8")
    return json.loads(text)


def prompts() -> dict[str, Any]:
    data = load("prompts")
    for attr, vals in data["values"].items():
        spec = ATTRIBUTE_BY_KEY.get(attr)
        if spec is None or not spec.values:
            raise ValueError(f"prompts.json: {attr!r} is not a closed-vocabulary attribute of the contract")
        bad = [v for v in vals if v not in spec.values]
        if bad:
            raise ValueError(f"prompts.json: {attr}: values not in the contract vocabulary: {bad}")
    return data


def rule(attribute: str, section: str = "zero_shot") -> dict[str, float]:
    """Decision rule for one attribute: defaults overlaid with the per-attribute entry."""
    data = load("thresholds")
    out = dict(data["default"])
    out.update(data.get(section, {}).get(attribute, {}))
    return out


def heads_settings() -> dict[str, Any]:
    return dict(load("thresholds")["heads"])


def counter_settings() -> dict[str, Any]:
    return dict(load("thresholds")["counter"])


def fusion_policy(attribute: str) -> dict[str, Any]:
    data = load("fusion")
    out = dict(data["default"])
    out.update(data.get("attributes", {}).get(attribute, {}))
    return out
