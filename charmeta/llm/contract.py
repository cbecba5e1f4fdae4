"""What the LLM reader is told and what it may answer: the contract prompt, the answer's JSON Schema, its validator.

Why derived, not written by hand: the answer schema is the slice of the checked-in
record schema (``charmeta/schema/attributes.schema.json``, generated from
``data/contract.json``) for the keys the reader asks, so a vocabulary change in the
contract reaches the LLM's constraint and its validation in one place. The system
prompt is ``data/llm/contract.md`` (the contract's reading rules, copied into the
package: the product never reads the spec folder at run time).
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from charmeta.contract import ATTRIBUTE_BY_KEY, UNKNOWN, model_field
from charmeta.errors import ConfigError


@cache
def policy() -> dict[str, Any]:
    """``data/llm/reader.json``."""
    return dict(json.loads(resources.files("charmeta").joinpath("data/llm/reader.json").read_text("utf-8")))


@cache
def system_prompt() -> str:
    """``data/llm/contract.md``: the contract's values and reading rules."""
    return resources.files("charmeta").joinpath("data/llm/contract.md").read_text("utf-8")


@cache
def _record_schema() -> dict[str, Any]:
    return dict(json.loads(resources.files("charmeta").joinpath("schema/attributes.schema.json").read_text("utf-8")))


def check_keys(keys: tuple[str, ...]) -> tuple[str, ...]:
    bad = [k for k in keys if k not in ATTRIBUTE_BY_KEY or ATTRIBUTE_BY_KEY[k].is_list]
    if bad:
        raise ConfigError(
            f"LLM reader keys {bad} are not scalar contract keys (data/llm/reader.json 'keys'); "
            f"choose from {[k for k, s in ATTRIBUTE_BY_KEY.items() if not s.is_list]}"
        )
    return keys


def answer_schema(keys: tuple[str, ...]) -> dict[str, Any]:
    """JSON Schema of one answer: an object with exactly ``keys``, each as the record schema defines it
    (optional keys may be null)."""
    props = _record_schema()["properties"]
    out: dict[str, Any] = {}
    for k in check_keys(keys):
        p = dict(props[k])
        p.pop("default", None)
        out[k] = p
    return {
        "type": "object",
        "title": "CharacterAttributes",
        "properties": out,
        "required": list(keys),
        "additionalProperties": False,
    }


def enum_values(key: str) -> tuple[str, ...] | None:
    """The values a scoring backend chooses among: the enum, with ``Unknown`` added for optional keys
    (whose vocabulary has none: absent = no evidence); None for free text."""
    spec = ATTRIBUTE_BY_KEY[key]
    if not spec.values:
        return None
    return spec.values if UNKNOWN in spec.values else (*spec.values, UNKNOWN)


@cache
def _answer_model(keys: tuple[str, ...]) -> type[BaseModel]:
    fields: dict[str, Any] = {}
    for k in check_keys(keys):
        spec = ATTRIBUTE_BY_KEY[k]
        ftype: Any = Literal[spec.values] if spec.values else str  # type: ignore[valid-type]
        fields[spec.column] = model_field(spec, ftype)
    return create_model(  # type: ignore[call-overload, no-any-return]
        "LLMAnswer", __config__=ConfigDict(populate_by_name=True, extra="forbid", frozen=True), **fields
    )


class InvalidAnswer(ValueError):
    """The model's answer is not JSON or breaks the answer schema (the rules' values are kept)."""


def validate_answer(raw: str | dict[str, Any], keys: tuple[str, ...]) -> dict[str, str]:
    """Parse and validate one answer; ``{key: value}`` for the non-null values. Raises ``InvalidAnswer``."""
    if isinstance(raw, str):
        text = raw.strip()
        if text.startswith("```"):  # some servers wrap JSON in a fence despite response_format
            text = text.strip("`").removeprefix("json").strip()
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidAnswer(f"not JSON ({exc.msg} at {exc.pos}): {text[:80]!r}") from exc
    if not isinstance(raw, dict):
        raise InvalidAnswer(f"not a JSON object: {type(raw).__name__}")
    try:
        rec = _answer_model(keys).model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InvalidAnswer(
            f"breaks the answer schema: {'.'.join(str(x) for x in first['loc'])}: {first['msg']}"
        ) from exc
    return {k: v for k, v in rec.model_dump(by_alias=True).items() if v is not None}
