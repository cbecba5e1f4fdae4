"""The swappable extractor interface every backend implements, and the batch capability.

A backend turns one entry into an ``Extraction`` (attributes with confidence and
evidence). The tag/prose backend is one implementation; image backends (CLIP,
SigLIP) and an LLM backend implement the same protocol, and ``fusion.fuse``
merges several backends' results per attribute.

Three protocols, one family:

* ``AttributeExtractor`` - what every backend is: ``extract`` / ``extract_batch``.
* ``ColumnarCapable`` - an ``AttributeExtractor`` that also reads whole batches as
  arrays: its ``columnar`` property is a ``ColumnarPath`` (``Engine.process_batch``
  and ``Engine.extract_texts`` find it by type).
* ``TagReader`` - what a tag extractor offers a columnar path so the path can read
  items exactly as the per-entry path does (``TextExtractor`` is one;
  ``charmeta.extractors.columnar.ColumnarTagPath`` reads one). The columnar modules
  import this module only, never the extractor that builds them, so the three
  extractor modules form no import cycle.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from charmeta.records import Extraction

if TYPE_CHECKING:  # annotations only: nothing here needs Arrow or the ontology at run time
    import pyarrow as pa

    from charmeta.evidence import Evidence
    from charmeta.ontology import Ontology
    from charmeta.resolvers import DressResolver, Resolver
    from charmeta.safety import SafetyRule, SafetyScanner

#: ``TagReader.read_item``'s answer: (normalised tag, the index's hits or None when the index does
#: not know the item, the only hit when there is one - or, for an unknown item, its safety hits).
ItemReading = tuple[str, "tuple | None", "tuple | None"]


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
class ColumnarPath(Protocol):
    """A batch reader over Arrow arrays that gives, row for row, what the per-entry path gives.

    Rows it cannot read exactly so go through ``extract_one`` (the engine's guarded
    per-entry call); a batch it fails on is read whole that way."""

    def table(
        self,
        ids: Sequence[Any],
        texts: Sequence[Any] | pa.Array,
        source_shard: Any,
        positions: Sequence[Any] | None,
        preset_invalid: Sequence[str | None] | None,
        extract_one: Callable[[Any], Extraction],
    ) -> pa.Table:
        """One batch -> one table of ``contract.rich_arrow_schema()``, rows in input order."""
        ...

    def extractions(self, texts: Sequence[Any], extract_one: Callable[[Any], Extraction]) -> list[Extraction]:
        """One batch -> one ``Extraction`` per text, in input order."""
        ...


@runtime_checkable
class ColumnarCapable(AttributeExtractor, Protocol):
    """An extractor with a batch path: ``columnar`` (built on first use; a one-entry caller
    never pays for it). ``TextExtractor`` is the implementation (``charmeta.extractors.columnar``)."""

    @property
    def columnar(self) -> ColumnarPath: ...


@runtime_checkable
class TagReader(Protocol):
    """The reading a columnar path borrows from a tag extractor, so both paths read alike.

    ``read_item`` / ``apply`` are the per-entry path's own item reader and evidence
    writer; the resolvers, the dress resolver, the safety rule and scanner are the
    ones it decides with. A columnar path replays a tag through ``apply`` and the
    resolvers when it meets a situation it has not memoised, so its result is the
    per-entry result by construction."""

    ont: Ontology
    resolvers: dict[str, Resolver]
    dress: DressResolver
    safety: SafetyRule
    scanner: SafetyScanner
    #: Tags that apply in full in an ordered-tags header (count, solo, gender, rating tags).
    header_tags: frozenset[str]
    #: Rating -> severity (the strongest rating of an entry wins).
    rating_severity: dict[str, int]

    def read_item(self, raw: str) -> ItemReading:
        """One raw item, normalised and looked up (memoised per raw string)."""
        ...

    def lookup(self, tag: str) -> tuple | None:
        """The index's hits of a normalised tag, None when the index does not know it."""
        ...

    def scan_hits(self, tag: str) -> tuple:
        """The safety markers in the words of a normalised tag the index does not know."""
        ...

    def apply(self, hits: tuple, tag: str, ev: Evidence) -> None:
        """Record ``hits`` of ``tag`` in ``ev``, as the per-entry path does."""
        ...

    def is_appearance(self, raw: str) -> bool:
        """An item that describes the character (read as a tag even in a name section)."""
        ...

    def forget_items(self, limit: int) -> None:
        """Forget the memoised item readings once there are more than ``limit``."""
        ...
