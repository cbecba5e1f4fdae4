"""Dagster code location of charmeta: assets, checks, resources, jobs and sensors, thin.

Every definition is a call into the Dagster-free runtime ``charmeta.pipeline``
plus Dagster metadata; the definitions are loaded from ``defs/`` by
``charmeta_dagster.definitions``. Kept import-light on purpose: importing this
package imports nothing (pool workers import ``charmeta.pipeline`` only).
"""
