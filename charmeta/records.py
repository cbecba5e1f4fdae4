"""The in-memory result of extracting one entry, and its three serialisations.

``Extraction`` is a plain slotted dataclass, not a pydantic model: millions are
built per run, so the hot path stays free of per-row validation. The views:

* ``extractions_to_table`` - an Arrow table of ``contract.rich_arrow_schema()`` (Parquet);
* ``to_cli_json`` - the ``charmeta extract`` line shape;
* ``to_clean`` - the clean export record (Title Case keys).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported lazily: the CLI's JSON path never builds Arrow tables
    import pyarrow as pa

from charmeta.contract import ATTRIBUTES, CORE_KEYS, UNKNOWN, rich_arrow_schema


@dataclass(slots=True)
class Decision:
    """One attribute's decision: value, confidence in [0, 1], evidence, conflict flag."""

    value: Any
    confidence: float
    evidence: list[str] = field(default_factory=list)
    conflict: bool = False


@dataclass(slots=True)
class Extraction:
    """Everything the core learned about one entry."""

    input_kind: str = "tags"  # tags | prose | image
    status: str = "ok"  # ok | multi_character | excluded | invalid
    reason: str | None = None
    character_count: int | None = None
    multi_character: bool = False
    characters: list[str] = field(default_factory=list)
    copyrights: list[str] = field(default_factory=list)
    artists: list[str] = field(default_factory=list)
    rating: str | None = None
    attributes: dict[str, Decision] = field(default_factory=dict)
    negative_prompt: str | None = None  # generation text (A1111 ``Negative prompt:``): kept, never evidence
    parameters: str | None = None  # generation parameter line (``Steps: 28, Sampler: ...``)

    @classmethod
    def invalid(cls, reason: str, input_kind: str = "tags") -> Extraction:
        return cls(input_kind=input_kind, status="invalid", reason=reason)

    def value(self, key: str) -> Any:
        d = self.attributes.get(key)
        return d.value if d is not None else (UNKNOWN if key in CORE_KEYS else None)


def extractions_to_table(
    extractions: Sequence[Extraction],
    ids: Sequence[Any],
    source_shard: str | None | Sequence[str | None] = None,
    positions: Sequence[Any] | None = None,
) -> pa.Table:
    """Build the rich Arrow table straight from extractions, column by column.

    The one flattening of the rich record (text, image and fused rows alike) and
    the hot path of every partition: no per-row dict, one list per column, one
    ``pa.array`` per column. ``source_shard`` is one shard for all rows or one per row.
    """
    import pyarrow as pa

    n = len(extractions)
    schema = rich_arrow_schema()
    cols: dict[str, Any] = {
        "id": [str(i) for i in ids],
        "source_shard": (
            pa.nulls(n, pa.string())
            if source_shard is None
            else [source_shard] * n
            if isinstance(source_shard, str)
            else list(source_shard)
        ),
        "source_position": list(range(n)) if positions is None else positions,
        "input_kind": [ex.input_kind for ex in extractions],
        "status": [ex.status for ex in extractions],
        "reason": [ex.reason for ex in extractions],
        "character_count": [ex.character_count for ex in extractions],
        "multi_character": [ex.multi_character for ex in extractions],
        "characters": [ex.characters for ex in extractions],
        "copyrights": [ex.copyrights for ex in extractions],
        "artists": [ex.artists for ex in extractions],
        "rating": [ex.rating for ex in extractions],
        "negative_prompt": [ex.negative_prompt for ex in extractions],
        "parameters": [ex.parameters for ex in extractions],
    }
    decisions = [ex.attributes for ex in extractions]
    invalid = [ex.status == "invalid" for ex in extractions]
    for spec in ATTRIBUTES:
        col, key = spec.column, spec.key
        ds = [a.get(key) for a in decisions]
        if spec.is_list:
            cols[col] = [d.value if d is not None else None for d in ds]
            continue
        if spec.is_core:  # missing core decision: Unknown, except on invalid rows (null)
            values, confs, evs, confl = [], [], [], []
            for d, bad in zip(ds, invalid):
                if d is None:
                    if bad:
                        values.append(None)
                        confs.append(None)
                        evs.append(None)
                        confl.append(None)
                    else:
                        values.append(UNKNOWN)
                        confs.append(0.0)
                        evs.append(_EMPTY)
                        confl.append(False)
                else:
                    values.append(d.value)
                    confs.append(d.confidence)
                    evs.append(d.evidence)
                    confl.append(d.conflict)
        else:
            values = [d.value if d is not None else None for d in ds]
            confs = [d.confidence if d is not None else None for d in ds]
            evs = [d.evidence if d is not None else None for d in ds]
            confl = [d.conflict if d is not None else None for d in ds]
        cols[col], cols[col + "_confidence"], cols[col + "_evidence"], cols[col + "_conflict"] = (
            values,
            confs,
            evs,
            confl,
        )
    arrays = [
        c if isinstance(c, pa.Array) else pa.array(c, type=f.type)
        for c, f in zip((cols[f.name] for f in schema), schema)
    ]
    return pa.Table.from_arrays(arrays, schema=schema)


_EMPTY: list[str] = []


def to_clean(ex: Extraction) -> dict[str, Any]:
    """The clean export record: nine core keys always, optional keys when evidenced."""
    out: dict[str, Any] = {}
    for spec in ATTRIBUTES:
        d = ex.attributes.get(spec.key)
        if spec.is_core:
            out[spec.key] = d.value if d is not None else UNKNOWN
        elif d is not None and d.value not in (None, [], ""):
            out[spec.key] = d.value
    return out


def to_cli_json(ex: Extraction, record_id: Any) -> dict[str, Any]:
    """The ``charmeta extract`` output line shape (issue #2), built in one pass over the contract."""
    if ex.status == "invalid":
        return {
            "id": record_id,
            "status": ex.status,
            "reason": ex.reason,
            "character_count": ex.character_count,
            "attributes": {},
            "confidence": {},
            "evidence": {},
        }
    clean: dict[str, Any] = {}
    conf: dict[str, float] = {}
    evid: dict[str, list[str]] = {}
    conflicts: list[str] = []
    attrs = ex.attributes
    for key, is_core in _KEY_KINDS:
        d = attrs.get(key)
        if d is None:
            if is_core:
                clean[key] = UNKNOWN
                conf[key] = 0.0
                evid[key] = []
            continue
        value = d.value
        if not is_core and (value is None or value == [] or value == ""):
            continue
        clean[key] = value
        conf[key] = d.confidence
        evid[key] = d.evidence
        if d.conflict:
            conflicts.append(key)
    out = {
        "id": record_id,
        "status": ex.status,
        "reason": ex.reason,
        "character_count": ex.character_count,
        "input_kind": ex.input_kind,
        "rating": ex.rating,
        "characters": ex.characters,
        "copyrights": ex.copyrights,
        "artists": ex.artists,
        "attributes": clean,
        "confidence": conf,
        "evidence": evid,
    }
    if conflicts:
        out["conflicts"] = conflicts
    if ex.negative_prompt is not None:  # generation text: kept, never evidence
        out["negative_prompt"] = ex.negative_prompt
    if ex.parameters is not None:
        out["parameters"] = ex.parameters
    return out


_KEY_KINDS: tuple[tuple[str, bool], ...] = tuple((spec.key, spec.is_core) for spec in ATTRIBUTES)
