"""Dagster code location of charmeta: assets, resources, checks and sensors.

Kept import-light on purpose: ``charmeta.pipeline.stages`` (the per-partition
work) is imported by worker processes that do not need Dagster. The
definitions live in ``charmeta_dagster.definitions``.
"""
