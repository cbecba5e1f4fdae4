"""Loading the code location: ``load_from_defs_folder`` over ``charmeta_dagster/defs``, with settings.

``definitions.py`` loads it once from the environment (what the webserver and the
daemon import); ``charmeta run`` loads it with the settings of its flags, so the
runs it launches bind the same resources a UI-launched run binds from its own.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from charmeta.settings import Settings
from charmeta_dagster.settings import loading_with

_PACKAGE = Path(__file__).resolve().parent


def load_definitions(settings: Settings | None = None) -> dg.Definitions:
    """The code location, its resources bound from ``settings`` (default: the environment's)."""
    if settings is None:
        return dg.load_from_defs_folder(path_within_project=_PACKAGE)
    with loading_with(settings):
        return dg.load_from_defs_folder(path_within_project=_PACKAGE)
