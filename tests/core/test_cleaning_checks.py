"""The cleaning checks' verdicts (Dagster-free): each can fail."""

from __future__ import annotations

from pathlib import Path

from charmeta.cleaning.checks import agreement_verdict, conflict_verdict, duplicate_rate_verdict


def test_duplicate_rate_warns_above_the_limit() -> None:
    assert duplicate_rate_verdict({"duplicate_rate": 0.01, "entries": 100, "duplicates": 1})[0]
    passed, meta = duplicate_rate_verdict({"duplicate_rate": 0.5, "entries": 100, "duplicates": 50})
    assert not passed and meta["duplicates"] == 50


def test_agreement_warns_when_it_drops_against_the_previous_build(tmp_path: Path) -> None:
    root = str(tmp_path)
    assert agreement_verdict(root, {"mean_agreement": 0.95, "agreement_deciles": [0.9]})[0]
    assert agreement_verdict(root, {"mean_agreement": 0.93})[0]  # small drop
    passed, meta = agreement_verdict(root, {"mean_agreement": 0.80})
    assert not passed and meta["previous_mean_agreement"] == 0.93 and meta["drop"] > 0.1


def test_conflicts_warn_above_the_rate() -> None:
    assert conflict_verdict({"identity_conflicts": 1}, 100)[0]
    passed, meta = conflict_verdict({"identity_conflicts": 30}, 100)
    assert not passed and meta["conflict_rate"] == 0.3
