"""The compiled cleaning loops load or step aside: numba missing, or present but unable to cache
(a read-only install run by a user without a writable home raised ``RuntimeError: cannot cache
function ... no locator available`` at import), must leave the numpy path, never a failed step."""

from __future__ import annotations

import importlib
import logging
import os

import numpy as np
import pytest

from charmeta.cleaning import compiled, dedup


def _raising(exc: BaseException):
    real = importlib.import_module

    def fake(name: str, *a, **k):
        if name.startswith("charmeta.cleaning.jit"):
            raise exc
        return real(name, *a, **k)

    return fake


@pytest.mark.parametrize(
    ("exc", "said"),
    [
        (RuntimeError("cannot cache function 'jaccard_at_least': no locator available"), "NUMBA_CACHE_DIR"),
        (ImportError("No module named 'numba'"), "numba is not installed"),
    ],
)
def test_unloadable_kernel_is_none_with_one_warning(monkeypatch, caplog, exc, said) -> None:
    monkeypatch.setattr(compiled, "_LOADED", {})
    monkeypatch.setattr(compiled.importlib, "import_module", _raising(exc))
    with caplog.at_level(logging.WARNING, logger="charmeta.cleaning"):
        assert compiled.load("charmeta.cleaning.jit", "jaccard_at_least", "numpy merge") is None
        assert compiled.loaded("charmeta.cleaning.jit", "jaccard_at_least")
        assert compiled.load("charmeta.cleaning.jit", "jaccard_at_least", "numpy merge") is None  # not tried again
    assert said in caplog.text and "numpy merge" in caplog.text
    assert len([r for r in caplog.records if "numpy merge" in r.getMessage()]) == 1


def test_clusters_check_falls_back_to_numpy_when_numba_cannot_load(monkeypatch) -> None:
    """The exact-Jaccard check gives the same answers through the numpy merge."""
    lens = np.array([3, 3, 2], np.int64)
    starts = np.array([0, 3, 6], np.int64)
    values = np.array([1, 2, 3, 1, 2, 4, 1, 2], np.uint32)
    iu, iv = np.array([0, 0], np.int64), np.array([1, 2], np.int64)
    expected = dedup._jaccard_at_least(lens, starts, values, iu, iv, 0.5)  # J = 2/4, 2/3
    assert expected.tolist() == [True, True]
    assert dedup._jaccard_at_least(lens, starts, values, iu, iv, 0.6).tolist() == [False, True]
    monkeypatch.setattr(compiled.importlib, "import_module", _raising(RuntimeError("no locator available")))
    monkeypatch.setattr(compiled, "_LOADED", {})
    assert dedup._jaccard_kernel() is None


def test_cache_goes_to_charmeta_home_when_the_package_folder_is_read_only(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setenv("CHARMETA_HOME", str(tmp_path / "home"))
    real_access = os.access
    monkeypatch.setattr(
        compiled.os, "access", lambda p, m: False if str(p).startswith(compiled._PACKAGE_DIR) else real_access(p, m)
    )
    assert compiled.cache_dir() == str(tmp_path / "home" / "numba")
    assert os.environ["NUMBA_CACHE_DIR"] == str(tmp_path / "home" / "numba")
    assert (tmp_path / "home" / "numba").is_dir()


def test_a_set_cache_dir_or_a_writable_package_is_left_alone(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "mine"))
    assert compiled.cache_dir() is None and os.environ["NUMBA_CACHE_DIR"] == str(tmp_path / "mine")
    monkeypatch.delenv("NUMBA_CACHE_DIR")
    monkeypatch.setattr(compiled.os, "access", lambda p, m: True)
    assert compiled.cache_dir() is None and "NUMBA_CACHE_DIR" not in os.environ
