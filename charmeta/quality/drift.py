"""Label distributions compared with a reference profile, not with absolute limits.

Why: an absolute "Unknown above 98%" warning was red on every healthy Danbooru dataset
(Ethnicity is almost never tagged: 100% Unknown at 5M synthetic entries), so operators learned
to ignore the check. What signals a broken run is *change*: a partition whose values moved away
from what this dataset (or this kind of source) normally gives. So each partition is compared
with a reference profile:

* by default the dataset's own first materialized partitions, pinned once to
  ``<output>/quality/reference_profile.json`` (visible as check metadata; delete it to re-pin);
* or a checked-in profile per source kind (``charmeta/data/quality/profiles/<kind>.json``:
  ``danbooru``, ``prompts``, ``prose``, ``images``), chosen by the ``reference`` setting.

Per core attribute, a partition warns when (thresholds in ``charmeta/data/quality/drift.json``):

* its distribution over *known* values drifts: total variation distance
  ``TVD = 1/2 * sum |p_i - q_i|`` above ``max_tvd`` (0 = same shares, 1 = disjoint), measured
  only when both sides have ``min_known_rows`` known values (TVD between small samples is noise:
  two 200-row samples of one distribution differ by ~0.05-0.1);
* its Unknown rate moves by more than ``max_unknown_jump`` (absolute) from the reference;
* a value with at least ``min_value_share`` of the known values appears that the reference never
  had, or one the reference had at that share vanishes;
* an absolute floor the contract implies is broken (Gender Unknown on single-character tag
  captions, where ``1girl`` / ``1boy`` decide it).

A partition with fewer than ``min_rows`` non-invalid rows is not compared (reported as such).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

UNKNOWN_VALUES = frozenset({"Unknown", "None", ""})
#: the pinned reference, under the output root's quality folder
REFERENCE_FILE = "reference_profile.json"


@lru_cache(maxsize=1)
def thresholds() -> dict[str, Any]:
    """The drift thresholds (``charmeta/data/quality/drift.json``)."""
    return json.loads(resources.files("charmeta.data").joinpath("quality/drift.json").read_text(encoding="utf-8"))


def _setting(name: str, attribute: str | None = None) -> Any:
    t = thresholds()
    per = t.get("attributes", {}).get(attribute or "", {})
    return per.get(name, t[name])


@dataclass(frozen=True)
class Profile:
    """Value counts per core attribute over some partitions: the reference, or one partition."""

    counts: dict[str, dict[str, int]]  # attribute key -> value -> non-invalid rows
    partitions: tuple[str, ...] = ()
    source: str = "partitions"  # "pinned: first partitions" | "checked-in: <kind>" | "partition"
    input_kinds: dict[str, int] = field(default_factory=dict)
    single_tag_unknown: dict[str, int] = field(default_factory=dict)  # attribute -> Unknown rows (1-char tag rows)
    single_tag_rows: int = 0

    @property
    def rows(self) -> int:
        return max((sum(v.values()) for v in self.counts.values()), default=0)

    def shares(self, attribute: str, known_only: bool) -> tuple[dict[str, float], int]:
        """Share of each value (of the known values when ``known_only``) and the rows it is over."""
        c = self.counts.get(attribute, {})
        if known_only:
            c = {k: v for k, v in c.items() if k not in UNKNOWN_VALUES}
        n = sum(c.values())
        return ({k: v / n for k, v in c.items()} if n else {}), n

    def unknown_rate(self, attribute: str) -> float:
        c = self.counts.get(attribute, {})
        n = sum(c.values())
        return sum(v for k, v in c.items() if k in UNKNOWN_VALUES) / n if n else 0.0

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["partitions"] = list(self.partitions)
        d["rows"] = self.rows
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Profile:
        return cls(
            counts={a: {str(k): int(v) for k, v in c.items()} for a, c in d["counts"].items()},
            partitions=tuple(d.get("partitions", ())),
            source=str(d.get("source", "partitions")),
            input_kinds={str(k): int(v) for k, v in d.get("input_kinds", {}).items()},
            single_tag_unknown={str(k): int(v) for k, v in d.get("single_tag_unknown", {}).items()},
            single_tag_rows=int(d.get("single_tag_rows", 0)),
        )


def merge(profiles: Iterable[Profile], source: str) -> Profile:
    """One profile holding the summed counts of ``profiles``."""
    counts: dict[str, dict[str, int]] = {}
    kinds: dict[str, int] = {}
    single_tag_unknown: dict[str, int] = {}
    parts: list[str] = []
    single_tag_rows = 0
    for p in profiles:
        parts.extend(p.partitions)
        for a, c in p.counts.items():
            dst = counts.setdefault(a, {})
            for k, v in c.items():
                dst[k] = dst.get(k, 0) + v
        for k, v in p.input_kinds.items():
            kinds[k] = kinds.get(k, 0) + v
        for k, v in p.single_tag_unknown.items():
            single_tag_unknown[k] = single_tag_unknown.get(k, 0) + v
        single_tag_rows += p.single_tag_rows
    return Profile(counts, tuple(parts), source, kinds, single_tag_unknown, single_tag_rows)


def tvd(a: Mapping[str, float], b: Mapping[str, float]) -> float:
    """Total variation distance between two share maps (0 = same, 1 = disjoint)."""
    return 0.5 * sum(abs(a.get(k, 0.0) - b.get(k, 0.0)) for k in set(a) | set(b))


@dataclass(frozen=True)
class Finding:
    """One warning: which partition, which attribute, what moved, and the numbers."""

    partition: str
    attribute: str
    kind: str  # drift | unknown_jump | value_appeared | value_vanished | floor
    message: str
    value: float
    reference: float
    threshold: float


def _top_moves(here: Mapping[str, float], ref: Mapping[str, float], n: int = 3) -> str:
    moves = sorted(set(here) | set(ref), key=lambda k: -abs(here.get(k, 0.0) - ref.get(k, 0.0)))[:n]
    return ", ".join(f"{k} {here.get(k, 0.0):.0%} (reference {ref.get(k, 0.0):.0%})" for k in moves)


def compare(partition: str, here: Profile, reference: Profile, attributes: Iterable[str]) -> list[Finding]:
    """Every warning for one partition against the reference (empty: nothing changed)."""
    out: list[Finding] = []
    if here.rows < thresholds()["min_rows"]:
        return out
    for a in attributes:
        u_here, u_ref = here.unknown_rate(a), reference.unknown_rate(a)
        jump = _setting("max_unknown_jump", a)
        if reference.rows and abs(u_here - u_ref) > jump:
            out.append(
                Finding(
                    partition,
                    a,
                    "unknown_jump",
                    f"{partition}: {a} is Unknown for {u_here:.0%} of rows (reference {u_ref:.0%}, "
                    f"allowed change {jump:.0%})",
                    u_here,
                    u_ref,
                    jump,
                )
            )
        s_here, n_here = here.shares(a, known_only=True)
        s_ref, n_ref = reference.shares(a, known_only=True)
        min_known = _setting("min_known_rows", a)
        if n_here >= min_known and n_ref >= min_known:
            d, limit = tvd(s_here, s_ref), _setting("max_tvd", a)
            if d > limit:
                out.append(
                    Finding(
                        partition,
                        a,
                        "drift",
                        f"{partition}: {a} values drifted from the reference (TVD {d:.2f} > {limit:.2f}): "
                        + _top_moves(s_here, s_ref),
                        d,
                        0.0,
                        limit,
                    )
                )
            if _appear_vanish(a):
                out.extend(_appeared_vanished(partition, a, s_here, s_ref))
    out.extend(_floors(partition, here))
    return out


def _appear_vanish(attribute: str) -> bool:
    """Whether values appearing / vanishing are findings for ``attribute`` (``appear_vanish`` in
    ``drift.json``: the attribute's entry over the default, like every other threshold)."""
    return bool(_setting("appear_vanish", attribute))


def _appeared_vanished(partition: str, a: str, here: Mapping[str, float], ref: Mapping[str, float]) -> list[Finding]:
    share = _setting("min_value_share", a)
    out = []
    for v, s in here.items():
        if s >= share and ref.get(v, 0.0) == 0.0:
            out.append(
                Finding(
                    partition,
                    a,
                    "value_appeared",
                    f"{partition}: {a} = {v} appears in {s:.0%} of known values, never in the reference",
                    s,
                    0.0,
                    share,
                )
            )
    for v, s in ref.items():
        if s >= share and here.get(v, 0.0) == 0.0:
            out.append(
                Finding(
                    partition,
                    a,
                    "value_vanished",
                    f"{partition}: {a} = {v} vanished (reference {s:.0%} of known values)",
                    0.0,
                    s,
                    share,
                )
            )
    return out


def _floors(partition: str, here: Profile) -> list[Finding]:
    out = []
    rows = here.single_tag_rows
    if rows < thresholds()["min_rows"]:
        return out
    for a, rule in thresholds().get("floors", {}).items():
        if a.startswith("_"):
            continue
        rate = here.single_tag_unknown.get(a, 0) / rows
        if rate > rule["max_unknown"]:
            out.append(
                Finding(
                    partition,
                    a,
                    "floor",
                    f"{partition}: {a} is Unknown for {rate:.0%} of single-character tag captions "
                    f"(at most {rule['max_unknown']:.0%}: count tags such as 1girl / 1boy decide it)",
                    rate,
                    0.0,
                    rule["max_unknown"],
                )
            )
    return out


def checked_in_profile(kind: str) -> Profile:
    """The shipped reference for a source kind (``danbooru``, ``prompts``, ``prose``, ``images``)."""
    path = resources.files("charmeta.data").joinpath(f"quality/profiles/{kind}.json")
    if not path.is_file():
        from charmeta.errors import ConfigError

        folder = resources.files("charmeta.data").joinpath("quality/profiles")
        known = sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".json")) if folder.is_dir() else []
        raise ConfigError(
            f"no reference profile {kind!r} in charmeta/data/quality/profiles/ (shipped: {known or 'none'}): "
            "set CHARMETA_QUALITY_REFERENCE=pinned, or add <kind>.json there"
        )
    return Profile.from_json({**json.loads(path.read_text(encoding="utf-8")), "source": f"checked-in: {kind}"})


def pinned_reference(path: str, candidates: Iterable[tuple[str, Profile]]) -> Profile | None:
    """The dataset's reference: read from ``path`` (``<root>/quality/reference_profile.json``), else pinned now
    from the first ``candidates`` (registry order) until ``reference_min_rows`` rows or
    ``reference_max_partitions`` partitions, and written there so later runs compare against the
    same partitions. ``None`` while no partition has been materialized."""
    try:
        with open(path, encoding="utf-8") as fh:
            return Profile.from_json(json.load(fh))
    except FileNotFoundError:
        pass
    t = thresholds()
    chosen: list[Profile] = []
    for key, prof in candidates:
        chosen.append(
            Profile(prof.counts, (key,), "partition", prof.input_kinds, prof.single_tag_unknown, prof.single_tag_rows)
        )
        if sum(p.rows for p in chosen) >= t["reference_min_rows"] or len(chosen) >= t["reference_max_partitions"]:
            break
    if not chosen:
        return None
    ref = merge(chosen, "pinned: first partitions")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(ref.to_json(), fh, indent=1, sort_keys=True)
    os.replace(tmp, path)
    return ref
