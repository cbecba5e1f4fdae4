"""The batch entry point every caller uses: CLI, Dagster assets, the app, benchmarks.

``Engine.process_batch`` turns a batch of raw inputs into an Arrow table of the
rich schema, one row per input, never raising on a bad row: guards turn bad
inputs into ``invalid`` records with a reason, and a backend that raises on a
batch is retried record by record so one poison record cannot fail a shard.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from charmeta.extractors.base import AttributeExtractor, ColumnarCapable
from charmeta.parsing import with_rating
from charmeta.records import Extraction, extractions_to_table

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger("charmeta.engine")

#: Largest caption accepted, in characters; longer ones are ``invalid`` (not truncated:
#: a truncated caption would silently lose tags).
MAX_TEXT_CHARS = 64_000
#: Most tags (comma / space separated items) accepted in one entry.
MAX_TAGS = 2_000


def guard_text(value: Any) -> tuple[str | None, str | None]:
    """Return ``(text, None)`` for a usable caption, else ``(None, reason)``."""
    if value is None:
        return None, "missing text (null)"
    if isinstance(value, (bytes, bytearray, memoryview)):
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError as exc:
            return None, f"text is not valid UTF-8 (byte {exc.start})"
    if not isinstance(value, str):
        return None, f"text must be a string, got {type(value).__name__}"
    if "\x00" in value:
        return None, "text contains NUL bytes"
    if len(value) > MAX_TEXT_CHARS:
        n_tags = value.count(",") + 1  # name the real problem of a giant tag list, not just its length
        if n_tags > MAX_TAGS:
            return None, f"too many tags ({n_tags} > limit {MAX_TAGS}; {len(value)} chars)"
        return None, f"text too long ({len(value)} chars > limit {MAX_TEXT_CHARS})"
    if not value or value.isspace():
        return None, "empty or whitespace-only text"
    # Counting separators only pays off for texts long enough to hold that many tags.
    if len(value) > MAX_TAGS and (value.count(",") > MAX_TAGS or value.count(" ") > MAX_TAGS * 4):
        return None, f"too many tags (> {MAX_TAGS})"
    if "\ufffd" in value:
        return None, "text contains undecodable bytes (U+FFFD replacement characters)"
    return value, None


@dataclass
class Engine:
    """A configured set of extractor backends plus the fusion step."""

    text_extractor: AttributeExtractor

    @classmethod
    def default(cls) -> Engine:
        from charmeta.extractors.text import TextExtractor

        engine = cls(text_extractor=TextExtractor.default())
        # The compiled ontology (~10^5 long-lived objects) never becomes garbage: move it
        # out of the collector's generations so full collections stop re-scanning it.
        gc.freeze()
        return engine

    def extract_text(self, value: Any, rating: str | None = None) -> Extraction:
        """Extract one caption / prose entry; bad input becomes an ``invalid`` Extraction.

        ``rating`` is a raw Danbooru post's own rating field (g/s/q/e), when known.
        """
        text, reason = guard_text(value)
        if reason is not None:
            return Extraction.invalid(reason)
        if rating is not None:
            text = with_rating(text, rating)
        try:
            return self.text_extractor.extract(text)
        except Exception as exc:  # a poison record must not fail the batch
            log.warning("extractor %s failed on one record: %r", self.text_extractor.name, exc)
            return Extraction.invalid(f"extractor {self.text_extractor.name} failed: {type(exc).__name__}: {exc}")

    def prepare_batches(self) -> None:
        """Build the backend's columnar path now (``extract_texts`` would on its first block):
        its tables of the ontology take ~0.3 s, set-up like the ontology itself."""
        if isinstance(self.text_extractor, ColumnarCapable):
            self.text_extractor.columnar  # noqa: B018 (built on first access)

    def extract_texts(self, values: Sequence[Any]) -> list[Extraction]:
        """Many captions at once -> one ``Extraction`` each, in order: ``extract_text`` of each
        value, with the structured captions read by the backend's columnar path when it has one
        (``charmeta extract`` reads its input in blocks through here: ~2x the entries/s)."""
        columnar = self.text_extractor.columnar if isinstance(self.text_extractor, ColumnarCapable) else None
        with gc_paused():
            if columnar is not None:
                return columnar.extractions(values, self.extract_text)
            return [self.extract_text(v) for v in values]

    def process_batch(
        self,
        ids: Sequence[str],
        texts: Sequence[Any],
        source_shard: str | None = None,
        positions: Sequence[int] | None = None,
        preset_invalid: Sequence[str | None] | None = None,
    ) -> pa.Table:
        """One batch of inputs to one Arrow table of rich records, same order, same length.

        Inputs may be Python sequences or Arrow arrays (a Parquet batch's columns:
        the columnar tag path reads those without converting them to Python).
        ``preset_invalid`` carries reasons found upstream (a broken JSON line, a
        missing column): those rows become ``invalid`` without touching the text.
        """
        if len(ids) != len(texts):
            raise ValueError(f"ids ({len(ids)}) and texts ({len(texts)}) differ in length")
        extract = self.extract_text
        columnar = self.text_extractor.columnar if isinstance(self.text_extractor, ColumnarCapable) else None
        with gc_paused():
            if columnar is not None:  # ordered-tag captions: memoised, columnar (same output)
                return columnar.table(ids, texts, source_shard, positions, preset_invalid, extract)
            ids, texts, positions, preset_invalid = (_as_list(v) for v in (ids, texts, positions, preset_invalid))
            if preset_invalid is None:
                extractions = [extract(v) for v in texts]
            else:
                extractions = [Extraction.invalid(pre) if pre else extract(v) for v, pre in zip(texts, preset_invalid)]
            table = extractions_to_table(extractions, ids, source_shard, positions)
            del extractions  # freed by refcount before the collector is back on
        return table


def _as_list(values: Any) -> Any:
    """Arrow arrays as Python lists (backends without a columnar path read Python values)."""
    return values.to_pylist() if hasattr(values, "to_pylist") else values


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a batch is built.

    A batch keeps ~10^4 extractions alive (dicts, lists, decisions); each young
    collection then walks them, which halves throughput. Nothing on this path
    makes reference cycles, so reference counting frees everything as usual;
    the collector is only switched back on (not forced) afterwards.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
