"""The code location's settings: ``charmeta.settings.Settings``, read once, when it loads.

The code location is an edge like the ``charmeta`` command: the webserver and the
daemon load it once per process from their ``CHARMETA_*`` environment (which
``charmeta ui`` sets from its own settings, ``Settings.to_env``), and
``charmeta run`` loads it with the settings of its flags (``load_definitions``).
What the definitions need - the bound resources, backfill and retry policies,
sensor status and interval, check thresholds - comes from that one object.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

from charmeta.settings import Settings

_ACTIVE: list[Settings] = []


@lru_cache(maxsize=1)
def _from_environment() -> Settings:
    return Settings.load()


def code_location_settings() -> Settings:
    """The settings the code location is being (or was) loaded with."""
    return _ACTIVE[-1] if _ACTIVE else _from_environment()


@contextmanager
def loading_with(settings: Settings) -> Iterator[Settings]:
    """Load the code location with ``settings`` instead of the environment's."""
    _ACTIVE.append(settings)
    try:
        yield settings
    finally:
        _ACTIVE.pop()
