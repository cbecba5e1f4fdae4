"""The output contract (``spec/attributes.md``) in code.

Everything that writes or checks a record reads the vocabularies from here, and
this module reads them from ``data/contract.json`` so that adding an attribute
is editing one data file. Three views of the same contract are exported:

* ``CleanRecord`` / ``RichRecord`` - pydantic models, used at the edges (CLI,
  app, JSON Schema export, bulk validation of samples);
* ``RICH_ARROW_SCHEMA`` - the Parquet schema of the rich output, used on the hot
  path (no per-row pydantic);
* ``clean_json_schema()`` - the versioned JSON Schema written to
  ``charmeta/schema/attributes.schema.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING, Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, create_model

if TYPE_CHECKING:  # pyarrow is imported where a schema is built: `charmeta extract` never needs it
    import pyarrow as pa

UNKNOWN = "Unknown"


@dataclass(frozen=True)
class AttributeSpec:
    """One attribute of the contract: its Title Case key, its Parquet column and vocabulary."""

    key: str
    column: str
    kind: str  # "core" | "optional" | "list"
    values: tuple[str, ...] | None
    pattern: str | None = None

    @property
    def is_core(self) -> bool:
        return self.kind == "core"

    @property
    def is_list(self) -> bool:
        return self.kind == "list"


def _load_contract() -> dict[str, Any]:
    text = resources.files("charmeta").joinpath("data/contract.json").read_text("utf-8")
    return json.loads(text)


_CONTRACT = _load_contract()

SCHEMA_VERSION: str = _CONTRACT["schema_version"]
ATTRIBUTES: tuple[AttributeSpec, ...] = tuple(
    AttributeSpec(
        key=a["key"],
        column=a["column"],
        kind=a["kind"],
        values=tuple(a["values"]) if a.get("values") else None,
        pattern=a.get("pattern"),
    )
    for a in _CONTRACT["attributes"]
)
ATTRIBUTE_BY_KEY: dict[str, AttributeSpec] = {a.key: a for a in ATTRIBUTES}
CORE_KEYS: tuple[str, ...] = tuple(a.key for a in ATTRIBUTES if a.is_core)
OPTIONAL_SCALAR_KEYS: tuple[str, ...] = tuple(a.key for a in ATTRIBUTES if a.kind == "optional")
LIST_KEYS: tuple[str, ...] = tuple(a.key for a in ATTRIBUTES if a.is_list)
STATUSES: tuple[str, ...] = tuple(_CONTRACT["statuses"])
INPUT_KINDS: tuple[str, ...] = tuple(_CONTRACT["input_kinds"])
RATINGS: tuple[str, ...] = tuple(_CONTRACT["ratings"])

Status = Literal["ok", "multi_character", "excluded", "invalid"]


def _field_type(spec: AttributeSpec) -> Any:
    if spec.is_list:
        return list[str]
    if spec.values:
        return Literal[spec.values]  # type: ignore[valid-type]
    return str


def model_field(spec: Any, ftype: Any) -> tuple[Any, Any]:
    """``(type, Field)`` of one attribute in a pydantic record model (the clean record here, the LLM
    reader's answer): the Title Case key as alias, the value pattern, required when core and
    optional (absent = None) otherwise - so every model built from the contract reads it one way."""
    extra: dict[str, Any] = {"alias": spec.key}
    if spec.pattern:
        extra["pattern"] = spec.pattern
    if spec.is_core:
        return (ftype, Field(..., **extra))
    return (Optional[ftype], Field(None, **extra))  # noqa: UP045 (runtime type object)


def _build_clean_model() -> type[BaseModel]:
    fields = {spec.column: model_field(spec, _field_type(spec)) for spec in ATTRIBUTES}
    return create_model(  # type: ignore[call-overload]
        "CleanRecord",
        __config__=ConfigDict(populate_by_name=True, extra="forbid", frozen=True),
        __doc__="The clean export record: Title Case keys, exact vocabularies (contract section 1).",
        **fields,
    )


CleanRecord: type[BaseModel] = _build_clean_model()


class AttributeValue(BaseModel):
    """One attribute's decision in the rich record, with why it was made."""

    model_config = ConfigDict(extra="forbid")
    value: Any
    confidence: float = Field(ge=0.0, le=1.0)
    evidence: list[str] = Field(default_factory=list)
    conflict: bool = False


class RichRecord(BaseModel):
    """The rich record (Parquet row) of contract sections 1 and 4, as a model for the edges."""

    model_config = ConfigDict(extra="forbid")
    schema_version: str = SCHEMA_VERSION
    id: str
    source_shard: str | None = None
    source_position: int | None = None
    input_kind: Literal["tags", "prose", "image"]
    status: Status
    reason: str | None = None
    character_count: int | None = Field(None, ge=0)
    multi_character: bool = False
    characters: list[str] = Field(default_factory=list)
    copyrights: list[str] = Field(default_factory=list)
    artists: list[str] = Field(default_factory=list)
    rating: Literal["general", "sensitive", "questionable", "explicit"] | None = None
    negative_prompt: str | None = Field(None, description="A generation prompt's negative prompt (never evidence).")
    parameters: str | None = Field(None, description="A generation prompt's parameter line (never evidence).")
    attributes: dict[str, AttributeValue] = Field(default_factory=dict)


def clean_json_schema() -> dict[str, Any]:
    """JSON Schema of the clean record, stamped with the contract version."""
    schema = CleanRecord.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://charmeta.local/schema/attributes-{SCHEMA_VERSION}.json"
    schema["title"] = "CharmetaCleanRecord"
    schema["x-schema-version"] = SCHEMA_VERSION
    return schema


def rich_json_schema() -> dict[str, Any]:
    schema = RichRecord.model_json_schema()
    schema["x-schema-version"] = SCHEMA_VERSION
    return schema


# ---------------------------------------------------------------------------
# Arrow schema of the rich output (hot path)
# ---------------------------------------------------------------------------


@lru_cache(maxsize=1)
def rich_arrow_schema() -> pa.Schema:
    """Column layout of every ``*_records.parquet`` / predictions file.

    Per attribute ``x``: ``x`` (value), ``x_confidence``, ``x_evidence`` (list of
    tags / phrases / model scores), ``x_conflict``. List attributes have only the
    value column. Values are null for ``invalid`` records.
    """
    import pyarrow as pa

    _STR_LIST = pa.list_(pa.string())
    fields: list[pa.Field] = [
        pa.field("id", pa.string(), nullable=False),
        pa.field("source_shard", pa.string()),
        pa.field("source_position", pa.int64()),
        pa.field("input_kind", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("reason", pa.string()),
        pa.field("character_count", pa.int32()),
        pa.field("multi_character", pa.bool_(), nullable=False),
        pa.field("characters", _STR_LIST),
        pa.field("copyrights", _STR_LIST),
        pa.field("artists", _STR_LIST),
        pa.field("rating", pa.string()),
        # generation text of A1111 / ComfyUI / NovelAI prompts: kept, never evidence (contract section 5)
        pa.field("negative_prompt", pa.string()),
        pa.field("parameters", pa.string()),
    ]
    for spec in ATTRIBUTES:
        if spec.is_list:
            fields.append(pa.field(spec.column, _STR_LIST))
            continue
        fields += [
            pa.field(spec.column, pa.string()),
            pa.field(f"{spec.column}_confidence", pa.float32()),
            pa.field(f"{spec.column}_evidence", _STR_LIST),
            pa.field(f"{spec.column}_conflict", pa.bool_()),
        ]
    return pa.schema(fields, metadata={b"charmeta.schema_version": SCHEMA_VERSION.encode()})


def validate_clean(record: dict[str, Any]) -> BaseModel:
    """Validate one clean record (Title Case keys); raises ``pydantic.ValidationError``."""
    return CleanRecord.model_validate(record)
