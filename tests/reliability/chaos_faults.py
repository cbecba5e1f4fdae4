"""Fault-injecting extractor backends for the chaos suite (``--extractor chaos_faults:NAME``).

Importable from worker processes and ``charmeta run`` subprocesses (tests put
this folder on ``PYTHONPATH``). Each is a factory, as ``make_engine`` expects.
"""

from __future__ import annotations

import os
import time

from charmeta.engine import Engine
from charmeta.records import Extraction

POISON = "POISON"


class PoisonExtractor:
    """Raises on every batch, and on single records containing ``POISON``."""

    name = "chaos-poison"
    version = "1"

    def extract(self, text: str) -> Extraction:
        if POISON in text:
            raise RuntimeError("poison record")
        return Extraction(input_kind="tags", status="ok", character_count=None)

    def extract_batch(self, items):  # noqa: ANN001, ANN201
        raise RuntimeError("batch inference failed")


def poison() -> Engine:
    return Engine(text_extractor=PoisonExtractor())


class _SlowExtractor(PoisonExtractor):
    name = "chaos-slow"

    def extract(self, text: str) -> Extraction:
        time.sleep(float(os.environ.get("CHAOS_SLEEP", "0.002")))
        return super().extract(text)


def slow() -> Engine:
    return Engine(text_extractor=_SlowExtractor())


class FailingShardEngine(Engine):
    """Fails every batch of the shard whose path contains ``$CHAOS_FAIL_SHARD`` (a shard that keeps failing)."""

    def process_batch(self, ids, texts, source_shard=None, positions=None, preset_invalid=None):  # noqa: ANN001, ANN201
        needle = os.environ.get("CHAOS_FAIL_SHARD", "")
        if needle and source_shard and needle in source_shard:
            raise OSError(f"simulated persistent failure reading {source_shard}")
        return super().process_batch(ids, texts, source_shard=source_shard, positions=positions,
                                      preset_invalid=preset_invalid)


def failing_shard() -> Engine:
    return FailingShardEngine(text_extractor=PoisonExtractor())
