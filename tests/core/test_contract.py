"""The contract in code: vocabularies, JSON Schema export, and every output validating."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from charmeta.commands.schema import RICH_SCHEMA_FILE, SCHEMA_FILE, render
from charmeta.contract import (
    ATTRIBUTES,
    CORE_KEYS,
    SCHEMA_VERSION,
    CleanRecord,
    RichRecord,
    clean_json_schema,
    rich_arrow_schema,
    rich_json_schema,
    validate_clean,
)
from charmeta.engine import Engine
from charmeta.records import extractions_to_table, to_clean

DEV_SET = Path(__file__).resolve().parents[1] / "data" / "dev_set.jsonl"


def test_core_keys_match_the_spec() -> None:
    assert CORE_KEYS == (
        "Age",
        "Gender",
        "Ethnicity",
        "Hair Style",
        "Hair Color",
        "Hair Length",
        "Eye Color",
        "Body Type",
        "Dress",
    )
    assert all(spec.values is None or "Unknown" in spec.values for spec in ATTRIBUTES if spec.is_core)


def test_checked_in_schema_is_current_and_versioned() -> None:
    """`make schema` regenerates it; a contract change without regenerating fails here."""
    assert SCHEMA_FILE.read_text("utf-8") == render(clean_json_schema())
    assert RICH_SCHEMA_FILE.read_text("utf-8") == render(rich_json_schema())
    schema = json.loads(SCHEMA_FILE.read_text("utf-8"))
    assert schema["x-schema-version"] == SCHEMA_VERSION
    assert set(schema["required"]) == set(CORE_KEYS)


def test_clean_record_rejects_off_vocabulary_values() -> None:
    good = {k: "Unknown" for k in CORE_KEYS}
    validate_clean(good)
    with pytest.raises(ValidationError):
        validate_clean({**good, "Hair Color": "Silver"})
    with pytest.raises(ValidationError):
        validate_clean({k: v for k, v in good.items() if k != "Age"})
    with pytest.raises(ValidationError):
        validate_clean({**good, "hair_color": "Black"} | {"Extra": 1})
    with pytest.raises(ValidationError):
        validate_clean({**good, "Dress": "lowercase dress"})


def test_every_dev_set_output_validates_and_fits_the_arrow_schema() -> None:
    engine = Engine.default()
    rows = [json.loads(line) for line in DEV_SET.read_text("utf-8").splitlines()]
    out = []
    for row in rows:
        ex = engine.extract_text(row["text"])
        assert ex.status in ("ok", "multi_character", "excluded")
        CleanRecord.model_validate(to_clean(ex))
        RichRecord.model_validate(
            {
                "id": row["id"],
                "input_kind": ex.input_kind,
                "status": ex.status,
                "reason": ex.reason,
                "character_count": ex.character_count,
                "multi_character": ex.multi_character,
                "rating": ex.rating,
                "attributes": {
                    k: {"value": d.value, "confidence": d.confidence, "evidence": d.evidence, "conflict": d.conflict}
                    for k, d in ex.attributes.items()
                },
            }
        )
        out.append(ex)
    table = extractions_to_table(out, [r["id"] for r in rows], "dev")
    assert table.schema == rich_arrow_schema()
    assert table.num_rows == len(rows)


def test_invalid_inputs_still_yield_one_row() -> None:
    engine = Engine.default()
    table = engine.process_batch(
        ["a", "b", "c", "d", "e"],
        ["", None, 5, "x\x00y", "1girl, blue eyes"],
        preset_invalid=[None, None, None, None, None],
    )
    assert table.column("status").to_pylist() == ["invalid", "invalid", "invalid", "invalid", "ok"]
    reasons = table.column("reason").to_pylist()
    assert all(reasons[:4]) and reasons[4] is None
    assert table.column("age").to_pylist()[:4] == [None] * 4
