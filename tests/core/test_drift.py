"""label_distribution's measure (charmeta.quality.drift): a partition is compared with a reference,
so a healthy dataset whose Ethnicity is always Unknown is green and a real change is named."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from charmeta.quality.drift import Profile, compare, merge, pinned_reference, thresholds, tvd

ATTRS = ["Hair Color", "Ethnicity", "Gender"]
HAIR = {"Black": 0.2, "Brown": 0.2, "Blonde": 0.15, "Blue": 0.1, "Pink": 0.1, "White": 0.1, "Unknown": 0.15}


def _sample(shares: dict[str, float], n: int, seed: int) -> dict[str, int]:
    rng = np.random.default_rng(seed)
    keys = list(shares)
    drawn = rng.multinomial(n, [shares[k] for k in keys])
    return {k: int(v) for k, v in zip(keys, drawn, strict=True) if v}


def _profile(seed: int, n: int = 20000, hair: dict[str, float] | None = None, gender_unknown: float = 0.02) -> Profile:
    g = _sample({"Female": 0.7 - gender_unknown, "Male": 0.3, "Unknown": gender_unknown}, n, seed + 1)
    return Profile(
        counts={
            "Hair Color": _sample(hair or HAIR, n, seed),
            "Ethnicity": {"Unknown": n},  # Danbooru captions almost never tag it: normal, not a warning
            "Gender": g,
        },
        partitions=(f"part-{seed}",),
        single_tag_rows=n,
        single_tag_unknown={"Gender": g.get("Unknown", 0)},
    )


def test_healthy_partitions_are_green() -> None:
    ref = merge([_profile(1), _profile(2)], "pinned: first partitions")
    for seed in range(3, 13):
        assert compare(f"part-{seed}", _profile(seed), ref, ATTRS) == []


def test_broken_hair_colors_are_named_with_partition_and_numbers() -> None:
    ref = merge([_profile(1), _profile(2)], "pinned")
    broken = _profile(7, hair={"Black": 0.85, "Unknown": 0.15})  # an ontology that maps every color to Black
    found = compare("part-0007", broken, ref, ATTRS)
    kinds = {(f.attribute, f.kind) for f in found}
    assert ("Hair Color", "drift") in kinds and ("Hair Color", "value_vanished") in kinds
    drift = next(f for f in found if f.kind == "drift")
    assert "part-0007" in drift.message and "Hair Color" in drift.message and "Black 100%" in drift.message
    assert drift.value > thresholds()["max_tvd"]
    assert {f.attribute for f in found} == {"Hair Color"}  # nothing else is blamed


def test_unknown_rate_jump_and_floor() -> None:
    ref = _profile(1)
    lost = _profile(5, hair={"Black": 0.1, "Unknown": 0.9}, gender_unknown=0.6)
    found = compare("part-5", lost, ref, ATTRS)
    jump = [f for f in found if f.kind == "unknown_jump" and f.attribute == "Hair Color"]
    assert jump and "90%" in jump[0].message and "reference 15%" in jump[0].message
    assert any(f.kind == "floor" and f.attribute == "Gender" for f in found)


def test_new_value_appears() -> None:
    ref = _profile(1)
    shifted = dict(HAIR, Green=0.12, Black=0.08)
    found = compare("part-9", _profile(9, hair=shifted), ref, ATTRS)
    assert any(f.kind == "value_appeared" and "Green" in f.message for f in found)


def test_appear_vanish_follows_the_per_attribute_setting() -> None:
    """drift.json turns value appear/vanish findings off for Dress only: the same new value (and the
    same vanished one) is a finding on Hair Color and none on Dress."""
    base = {"Dress": _sample(HAIR, 20000, 1), "Hair Color": _sample(HAIR, 20000, 1)}
    moved = dict(HAIR, Green=0.2, Black=0.0)
    here = {"Dress": _sample(moved, 20000, 2), "Hair Color": _sample(moved, 20000, 2)}
    found = compare("part-2", Profile(counts=here), Profile(counts=base), ["Dress", "Hair Color"])
    kinds = {(f.attribute, f.kind) for f in found}
    assert ("Hair Color", "value_appeared") in kinds and ("Hair Color", "value_vanished") in kinds
    assert not {k for a, k in kinds if a == "Dress"} & {"value_appeared", "value_vanished"}


def test_merge_adds_counts_and_single_tag_rows() -> None:
    a, b = _profile(1, n=1000), _profile(2, n=3000)
    m = merge([a, b], "pinned")
    assert m.partitions == ("part-1", "part-2") and m.rows == 4000
    assert m.single_tag_rows == 4000
    assert m.single_tag_unknown["Gender"] == a.single_tag_unknown["Gender"] + b.single_tag_unknown["Gender"]
    assert m.counts["Ethnicity"] == {"Unknown": 4000}


def test_small_partitions_are_not_compared() -> None:
    ref = _profile(1)
    tiny = _profile(3, n=100, hair={"Black": 1.0})
    assert compare("part-3", tiny, ref, ATTRS) == []


def test_tvd() -> None:
    assert tvd({"a": 1.0}, {"b": 1.0}) == 1.0
    assert tvd({"a": 0.5, "b": 0.5}, {"a": 0.5, "b": 0.5}) == 0.0


def test_reference_is_pinned_once(tmp_path: Path) -> None:
    first = pinned_reference(
        str(tmp_path / "quality" / "reference_profile.json"), [("p1", _profile(1)), ("p2", _profile(2))]
    )
    assert first is not None and first.partitions[0] == "p1" and first.source.startswith("pinned")
    stored = json.loads((tmp_path / "quality" / "reference_profile.json").read_text())
    assert stored["partitions"] == list(first.partitions)
    again = pinned_reference(
        str(tmp_path / "quality" / "reference_profile.json"), [("p9", _profile(9, hair={"Black": 1.0}))]
    )
    assert again == first  # later partitions never move the reference


def test_unknown_checked_in_profile_is_a_config_error() -> None:
    import pytest

    from charmeta.errors import ConfigError
    from charmeta.quality.drift import checked_in_profile

    with pytest.raises(ConfigError, match="CHARMETA_QUALITY_REFERENCE=pinned"):
        checked_in_profile("no-such-kind")


def test_drift_plot_draws_without_switching_the_process_backend(tmp_path: Path) -> None:
    """The plot is drawn on a Figure object: a notebook that runs the pipeline in its kernel keeps
    its inline backend (``matplotlib.use("Agg")`` here once blanked the walkthrough's plots)."""
    import matplotlib

    from charmeta.quality.plots import drift_plot

    matplotlib.use("svg")  # any non-Agg backend the caller chose
    try:
        ref = merge([_profile(1), _profile(2)], "pinned")
        broken = _profile(7, hair={"Black": 0.85, "Unknown": 0.15})
        found = compare("part-0007", broken, ref, ATTRS)
        png = drift_plot(str(tmp_path), found, {"part-0007": broken}, ref)
        assert png is not None and Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert matplotlib.get_backend().lower() == "svg"
    finally:
        matplotlib.use("Agg")
