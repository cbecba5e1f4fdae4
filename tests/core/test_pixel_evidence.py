"""``images.pixel_evidence.pixel_extraction``: one picture's colour calls against its model's attributes,
ranked by ``pixel_order`` in ``data/images/fusion.json`` (moved out of ``charmeta.fusion`` to break an
import cycle; these pin what it decides)."""

from __future__ import annotations

import json

import pytest

from charmeta.images import rules
from charmeta.images.pixel_evidence import pixel_extraction
from charmeta.records import Decision

RED = json.dumps([{"Hair Color": ["Red", 0.8, "pixel:colors:hair:Red:0.80 of 400 px"]}])


def test_colour_call_outranks_the_model_by_default_and_the_conflict_is_kept() -> None:
    model = {"Hair Color": Decision("Black", 0.6, ["pixel:zero-shot:Black"])}
    ex = pixel_extraction(model, 1, RED)
    assert ex is not None
    hair = ex.attributes["Hair Color"]
    assert (hair.value, hair.confidence, hair.conflict) == ("Red", 0.8, True)
    assert hair.evidence == ["pixel:colors:hair:Red:0.80 of 400 px", "pixel:model said Black"]


def test_model_first_order_keeps_a_known_model_value(monkeypatch: pytest.MonkeyPatch) -> None:
    shipped = rules.fusion_policy

    def model_first(attribute: str) -> dict:
        return {**shipped(attribute), "pixel_order": ["model", "colors"]}

    monkeypatch.setattr(rules, "fusion_policy", model_first)
    model = {"Hair Color": Decision("Black", 0.6, ["pixel:zero-shot:Black"])}
    ex = pixel_extraction(model, 1, RED)
    assert ex is not None and ex.attributes["Hair Color"].value == "Black"
    # with nothing known from the model, the colour call fills in whatever the order
    ex = pixel_extraction({"Hair Color": Decision("Unknown", 0.0, [])}, 1, RED)
    assert ex is not None and ex.attributes["Hair Color"].value == "Red"


def test_colours_count_only_for_exactly_one_face() -> None:
    two = json.dumps([json.loads(RED)[0], json.loads(RED)[0]])
    assert pixel_extraction(None, 2, two) is None  # whose hair would it be?
    model = {"Eye Color": Decision("Blue", 0.5, ["pixel:zero-shot:Blue"])}
    ex = pixel_extraction(model, 2, two)
    assert ex is not None and set(ex.attributes) == {"Eye Color"} and ex.input_kind == "image"
