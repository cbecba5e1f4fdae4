"""The cleaning policy (``charmeta/data/cleaning/policy.json``) as a typed object.

Why a data file: the thresholds (consensus support / agreement, Jaccard, which traits
are stable enough to fill, the export's keep rule) are product decisions that change
without code changes; ``CHARMETA_CLEANING_POLICY`` points at another file for a run.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

from charmeta.contract import ATTRIBUTES
from charmeta.errors import CharmetaError

KEEP_KEYS = ("ok_first", "completeness", "confidence", "id")


class CleaningPolicyError(CharmetaError, ValueError):
    """The cleaning policy file is malformed: fix the named key in the policy JSON."""


@dataclass(frozen=True)
class CleaningPolicy:
    num_perm: int
    bands: int
    jaccard: float
    min_tokens: int
    keep_rule: tuple[str, ...]
    phash_bands: int
    phash_max_distance: int
    cosine: float
    min_support: int
    min_agreement: float
    min_coverage: float
    profile_statuses: tuple[str, ...]
    conflict_support: int
    conflict_agreement: float
    traits: dict[str, str]
    recheck_minor_consensus: bool
    aliases: dict[str, str]
    dedup_enabled: bool = True
    checks: dict[str, float] = field(default_factory=dict)
    digest: str = field(default="")

    @property
    def rows_per_band(self) -> int:
        return self.num_perm // self.bands

    @property
    def fill_attributes(self) -> list[str]:
        """Contract keys of the stable traits (filled + conflict-checked), in contract order."""
        return [a.key for a in ATTRIBUTES if self.traits.get(a.key) == "fill"]

    @property
    def profile_attributes(self) -> list[str]:
        return [a.key for a in ATTRIBUTES if self.traits.get(a.key) in ("fill", "profile")]


def _need(d: dict[str, Any], key: str, where: str) -> Any:
    if key not in d:
        raise CleaningPolicyError(f"cleaning policy: missing '{where}.{key}'")
    return d[key]


def parse_policy(raw: dict[str, Any]) -> CleaningPolicy:
    """Validate and type the policy JSON (raises ``CleaningPolicyError`` naming the bad key)."""
    dd, pr, cf = (_need(raw, k, "") for k in ("dedup", "profiles", "conflicts"))
    img = dd.get("image", {})
    traits = {k: v for k, v in _need(raw, "traits", "").items() if k != "doc"}
    keys = {a.key for a in ATTRIBUTES if not a.is_list}
    for k, v in traits.items():
        if k not in keys:
            raise CleaningPolicyError(f"cleaning policy: traits.{k} is not a scalar contract key")
        if v not in ("fill", "profile"):
            raise CleaningPolicyError(f"cleaning policy: traits.{k} must be 'fill' or 'profile', not {v!r}")
    keep = tuple(_need(dd, "keep_rule", "dedup"))
    if any(k not in KEEP_KEYS for k in keep):
        raise CleaningPolicyError(f"cleaning policy: dedup.keep_rule entries must be among {KEEP_KEYS}")
    num_perm, bands = int(_need(dd, "num_perm", "dedup")), int(_need(dd, "bands", "dedup"))
    if bands <= 0 or num_perm % bands:
        raise CleaningPolicyError("cleaning policy: dedup.num_perm must be a multiple of dedup.bands")
    aliases = {k: v for k, v in raw.get("character_aliases", {}).items() if k != "doc"}
    digest = hashlib.sha256(json.dumps(raw, sort_keys=True).encode()).hexdigest()[:16]
    return CleaningPolicy(
        num_perm=num_perm,
        bands=bands,
        jaccard=float(_need(dd, "jaccard", "dedup")),
        min_tokens=int(dd.get("min_tokens", 1)),
        keep_rule=keep,
        phash_bands=int(img.get("phash_bands", 4)),
        phash_max_distance=int(img.get("phash_max_distance", 8)),
        cosine=float(img.get("cosine", 0.95)),
        min_support=int(_need(pr, "min_support", "profiles")),
        min_agreement=float(_need(pr, "min_agreement", "profiles")),
        min_coverage=float(pr.get("min_coverage", 0.0)),
        profile_statuses=tuple(pr.get("statuses", ["ok", "excluded"])),
        conflict_support=int(_need(cf, "min_support", "conflicts")),
        conflict_agreement=float(_need(cf, "min_agreement", "conflicts")),
        traits=traits,
        recheck_minor_consensus=bool(raw.get("safety", {}).get("recheck_minor_consensus", True)),
        aliases=aliases,
        dedup_enabled=bool(dd.get("enabled", True)),
        checks={k: float(v) for k, v in raw.get("checks", {}).items() if k != "doc"},
        digest=digest,
    )


@lru_cache(maxsize=4)
def _load(path: str | None) -> CleaningPolicy:
    if path:
        with open(path, encoding="utf-8") as fh:
            return parse_policy(json.load(fh))
    text = resources.files("charmeta").joinpath("data/cleaning/policy.json").read_text(encoding="utf-8")
    return parse_policy(json.loads(text))


def load_policy(path: str | None = None) -> CleaningPolicy:
    """The policy at ``path``, else ``$CHARMETA_CLEANING_POLICY``, else the packaged one."""
    return _load(path or os.environ.get("CHARMETA_CLEANING_POLICY") or None)


def cleaning_enabled() -> bool:
    """``CHARMETA_CLEANING=off`` turns the dataset cleaning off for a run (export = every ok record,
    as before issue 14; the bench's baseline). Default on."""
    return os.environ.get("CHARMETA_CLEANING", "on").strip().lower() not in ("off", "0", "false", "no")
