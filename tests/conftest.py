"""Shared fixtures: a throw-away Dagster instance and a copy of the bundled sample.

Tests never touch the project's own ``.dagster_home`` or ``out/``: each gets a
temp ``DAGSTER_HOME`` (telemetry off) and a temp output root.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _cleaning_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test runs the product's default, the dataset cleaning on (issue 14), whatever the
    calling shell set; a test of the switch itself sets ``CHARMETA_CLEANING=off`` explicitly."""
    monkeypatch.delenv("CHARMETA_CLEANING", raising=False)
    monkeypatch.delenv("CHARMETA_CLEANING_POLICY", raising=False)


@pytest.fixture
def dagster_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from charmeta_dagster.instance import ensure_home

    home = tmp_path / "dagster_home"
    ensure_home(home)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


@pytest.fixture
def sample_dir(tmp_path: Path) -> Path:
    """A private copy of ``samples/`` (tests may add or damage files)."""
    dst = tmp_path / "samples"
    shutil.copytree(REPO / "samples", dst, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    return dst
