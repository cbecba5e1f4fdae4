"""Loading the cleaning's compiled loops (numba) without ever failing the run over them.

Why this module: numba keeps compiled machine code next to the source (``__pycache__``) or,
when that folder is not writable, under the user's cache folder. With neither - a read-only
install run by a user without a writable home, as in the container (``USER 1000``,
site-packages owned by root) - ``cache=True`` raises at import. Measured here with the
package folder read-only and ``HOME=/nonexistent``: ``RuntimeError: cannot cache function
'jaccard_at_least': no locator available``, which would have failed the clusters step. So:
when the package folder is not writable and ``NUMBA_CACHE_DIR`` is unset, the cache goes to
``$CHARMETA_HOME/numba`` (default ``~/.cache/charmeta/numba``, else the temp folder); and a
loop that still cannot load is skipped for the numpy path with one warning saying why.
"""

from __future__ import annotations

import importlib
import logging
import os
import tempfile
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("charmeta.cleaning")

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def cache_dir() -> str | None:
    """Set ``NUMBA_CACHE_DIR`` when numba's own default would have nowhere to write; the folder set."""
    if os.environ.get("NUMBA_CACHE_DIR") or os.access(os.path.join(_PACKAGE_DIR, "__pycache__"), os.W_OK):
        return None
    if not os.path.isdir(os.path.join(_PACKAGE_DIR, "__pycache__")) and os.access(_PACKAGE_DIR, os.W_OK):
        return None  # numba creates __pycache__ itself
    home = os.environ.get("CHARMETA_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "charmeta")
    for path in (os.path.join(home, "numba"), os.path.join(tempfile.gettempdir(), f"charmeta-numba-{os.getuid()}")):
        try:
            os.makedirs(path, exist_ok=True)
        except OSError:
            continue
        if os.access(path, os.W_OK):
            os.environ["NUMBA_CACHE_DIR"] = path
            return path
    return None


#: ``(module, name)`` -> the loaded loop or None: each is tried once per process (one warning).
_LOADED: dict[tuple[str, str], Callable[..., Any] | None] = {}
_LOCK = threading.Lock()


def loaded(module: str, name: str) -> bool:
    """Whether ``load(module, name, ...)`` was already tried in this process."""
    return (module, name) in _LOADED


def load(module: str, name: str, why_numpy: str) -> Callable[..., Any] | None:
    """``module.name`` compiled, or None when numba is missing or cannot load it (the caller then
    takes its numpy path; ``why_numpy`` says what that costs, for the warning). Tried once per
    process, whichever thread asks first (the clusters step warms its loop in a thread)."""
    with _LOCK:
        if (module, name) not in _LOADED:
            _LOADED[(module, name)] = _import(module, name, why_numpy)
        return _LOADED[(module, name)]


def _import(module: str, name: str, why_numpy: str) -> Callable[..., Any] | None:
    cache_dir()
    try:
        return getattr(importlib.import_module(module), name)
    except ImportError:
        log.warning("numba is not installed (extra 'cleaning'): %s", why_numpy)
    except RuntimeError as exc:  # numba present but unusable here (no cache location, LLVM refused)
        log.warning("numba cannot load %s.%s (%s; set NUMBA_CACHE_DIR to a writable folder): %s",
                    module, name, exc, why_numpy)  # fmt: skip
    return None
