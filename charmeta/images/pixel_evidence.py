"""One picture's pixel evidence as an ``Extraction``: the embedding model's attributes merged with
the offline colour calls (``images.colors``), before ``charmeta.fusion`` weighs it against the caption.

Why here and not in ``charmeta.fusion``: this reads the image package's colour calls, and the image
package calls fusion; kept in fusion it made an import cycle (fusion -> images.colors -> images -> fusion).
"""

from __future__ import annotations

from charmeta.fusion import is_known
from charmeta.images import rules
from charmeta.records import Decision, Extraction


def pixel_extraction(model_attrs: dict | None, pixel_count: int | None, pixel_colors: str | None) -> Extraction | None:
    """One picture's pixel evidence: the embedding model's attributes (zero-shot / heads, when a model ran)
    with the offline colour calls (``images.colors``) taking Hair / Eye Color where they name a colour -
    the per-attribute source order in ``data/images/fusion.json`` ranks pixel colours above zero-shot."""
    from charmeta.images.colors import decisions, from_json

    attrs = dict(model_attrs or {})
    for key, d in decisions(pixel_count, from_json(pixel_colors)).items():
        prev = attrs.get(key)
        colors_first = list(rules.fusion_policy(key).get("pixel_order", ["colors", "model"]))[0] == "colors"
        if (is_known(d) and (colors_first or not is_known(prev))) or not is_known(prev):
            if prev is not None and is_known(prev) and prev.value != d.value:
                d = Decision(d.value, d.confidence, d.evidence + [f"pixel:model said {prev.value}"], True)
            attrs[key] = d
    if not attrs:
        return None
    return Extraction(input_kind="image", attributes=attrs)
