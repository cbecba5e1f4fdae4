"""The swappable extractor interface every backend implements.

A backend turns one entry into an ``Extraction`` (attributes with confidence and
evidence). The tag/prose backend is one implementation; image backends (CLIP,
SigLIP) and an LLM backend implement the same protocol, and ``fusion.fuse``
merges several backends' results per attribute.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from charmeta.records import Extraction


@runtime_checkable
class AttributeExtractor(Protocol):
    """Turns entries into ``Extraction`` records. Implementations must not raise on bad rows."""

    name: str

    def extract(self, item: Any) -> Extraction:
        """Extract one entry (text for text backends, image bytes/array for image ones)."""
        ...

    def extract_batch(self, items: Sequence[Any]) -> list[Extraction]:
        """Extract many entries; backends that batch (models) override this."""
        ...


@runtime_checkable
class ColumnarCapable(Protocol):
    """The batch capability of an extractor: a ``columnar`` path that turns a whole batch of
    Arrow arrays into a rich-record table (``table(ids, texts, source_shard, positions,
    preset_invalid, fallback)``), the same records the per-entry ``extract`` gives.

    Part of the protocol so the engine finds it by type, not by probing attribute names;
    ``TextExtractor.columnar`` is the implementation (``charmeta.extractors.columnar``)."""

    @property
    def columnar(self) -> Any: ...
