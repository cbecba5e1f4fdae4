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
        return super().process_batch(
            ids, texts, source_shard=source_shard, positions=positions, preset_invalid=preset_invalid
        )


def failing_shard() -> Engine:
    return FailingShardEngine(text_extractor=PoisonExtractor())


class FlakyEngine(FailingShardEngine):
    """Fails the first batch of each shard whose path contains ``$CHAOS_FLAKY_SHARD`` once per
    marker folder ``$CHAOS_MARKS`` (a transient fault), then works."""

    def process_batch(self, ids, texts, source_shard=None, positions=None, preset_invalid=None):  # noqa: ANN001, ANN201
        needle, marks = os.environ.get("CHAOS_FLAKY_SHARD", ""), os.environ.get("CHAOS_MARKS", "")
        if needle and marks and source_shard and needle in source_shard:
            mark = os.path.join(marks, source_shard.replace("/", "_") + ".failed-once")
            if not os.path.exists(mark):
                open(mark, "w").close()
                raise ConnectionError(f"simulated transient failure on {source_shard}")
        return super().process_batch(
            ids, texts, source_shard=source_shard, positions=positions, preset_invalid=preset_invalid
        )


def flaky() -> Engine:
    return FlakyEngine(text_extractor=PoisonExtractor())


class DroppingEngine(Engine):
    """Loses the last row of every batch (a bug the records-lost checks must catch)."""

    def process_batch(self, ids, texts, source_shard=None, positions=None, preset_invalid=None):  # noqa: ANN001, ANN201
        tbl = super().process_batch(
            ids, texts, source_shard=source_shard, positions=positions, preset_invalid=preset_invalid
        )
        return tbl.slice(0, max(tbl.num_rows - 1, 0))


def dropping() -> Engine:
    return DroppingEngine(text_extractor=PoisonExtractor())


class DroppingShardEngine(DroppingEngine):
    """Loses rows only in the shard whose path contains ``$CHAOS_DROP_SHARD``."""

    def process_batch(self, ids, texts, source_shard=None, positions=None, preset_invalid=None):  # noqa: ANN001, ANN201
        if os.environ.get("CHAOS_DROP_SHARD", "\0") in (source_shard or ""):
            return super().process_batch(ids, texts, source_shard, positions, preset_invalid)
        return Engine.process_batch(
            self, ids, texts, source_shard=source_shard, positions=positions, preset_invalid=preset_invalid
        )


def dropping_shard() -> Engine:
    return DroppingShardEngine(text_extractor=PoisonExtractor())


class _FailOrFlaky(FlakyEngine):
    pass


def failing_shard_or_flaky() -> Engine:
    """``$CHAOS_FAIL_SHARD`` keeps failing, ``$CHAOS_FLAKY_SHARD`` fails once."""
    return _FailOrFlaky(text_extractor=PoisonExtractor())
