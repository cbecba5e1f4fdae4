"""The ``charmeta`` code location (``dagster definitions validate -m charmeta_dagster.definitions``).

Dagster 1.13 project layout: every module under ``charmeta_dagster/defs/`` is
loaded by ``load_from_defs_folder`` (``[tool.dg]`` in pyproject names the root
module): ``assets/``, ``checks/``, ``jobs.py``, ``sensors.py`` and
``resources.py`` (resources + the in-process executor). The work itself is in
the Dagster-free runtime ``charmeta.pipeline``; settings come from the
environment (``charmeta.settings``) when this module is loaded.
"""

from __future__ import annotations

from charmeta_dagster.loader import load_definitions

defs = load_definitions()
