"""Fusion: merge caption (tags / prose) and pixel evidence per attribute, with provenance.

Why flag instead of pick silently: when the caption says ``blonde_hair`` and the
pixels say Black, either the tag is wrong or the model is; a dataset consumer
needs to see both. The winner follows ``data/images/fusion.json`` (captions by
default: tags are precise, zero-shot is not) and ``conflict`` is set, with both
sides in the evidence, prefixed ``tag:`` / ``pixel:``. Agreement raises
confidence (noisy-OR). Character counts are merged the same way: either source
seeing 2+ characters makes the entry ``multi_character``, and a disagreement is
written into ``reason``.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

from charmeta.contract import ATTRIBUTES, UNKNOWN
from charmeta.records import Decision, Extraction


@cache
def _policies() -> dict:
    """``data/images/fusion.json``, read here rather than through ``charmeta.images.rules``: the
    image package imports this module, so importing it back would make an import cycle."""
    return json.loads(resources.files("charmeta").joinpath("data/images/fusion.json").read_text("utf-8"))


def _policy(attribute: str) -> dict:
    data = _policies()
    out = dict(data["default"])
    out.update(data.get("attributes", {}).get(attribute, {}))
    return out


def is_known(d: Decision | None) -> bool:
    """Whether a decision names a value (not absent, ``Unknown`` or empty)."""
    return d is not None and d.value not in (None, UNKNOWN, "", [])


def _tagged(d: Decision, prefix: str) -> list[str]:
    return [e if e.startswith(("tag:", "pixel:", "tagger:", "captioner:")) else f"{prefix}{e}" for e in d.evidence]


def fuse_decision(
    attribute: str, text: Decision | None, pixel: Decision | None, text_label: str = "tag", pixel_label: str = "pixels"
) -> Decision | None:
    """One attribute: both sides' evidence kept, winner by policy, conflict flagged."""
    if not is_known(text) and not is_known(pixel):
        if text is None and pixel is None:
            return None
        ev = (_tagged(text, "tag:") if text else []) + (_tagged(pixel, "pixel:") if pixel else [])
        base = text if text is not None else pixel
        return Decision(base.value if base is not None else UNKNOWN, 0.0, ev, bool(text and text.conflict))
    if not is_known(pixel):
        ev = _tagged(text, "tag:") + (_tagged(pixel, "pixel:") if pixel else [])  # type: ignore[arg-type]
        return Decision(text.value, text.confidence, ev, text.conflict)  # type: ignore[union-attr]
    if not is_known(text):
        ev = (_tagged(text, "tag:") if text else []) + _tagged(pixel, "pixel:")  # type: ignore[arg-type]
        conflict = bool(text and text.conflict) or pixel.conflict  # type: ignore[union-attr]
        return Decision(pixel.value, pixel.confidence, ev, conflict)  # type: ignore[union-attr]
    assert text is not None and pixel is not None
    ev = _tagged(text, "tag:") + _tagged(pixel, "pixel:")
    if text.value == pixel.value:
        conf = 1.0 - (1.0 - text.confidence) * (1.0 - pixel.confidence)
        return Decision(text.value, round(conf, 4), ev, text.conflict)
    pol = _policy(attribute)
    win, lose = (pixel, text) if pol["prefer"] == "pixel" else (text, pixel)
    conf = win.confidence * (1.0 - float(pol["conflict_penalty"]) * lose.confidence)
    lower = f"{pixel_label} say" if pixel_label == "pixels" else f"{pixel_label} says"
    ev.append(f"conflict: {text_label} says {text.value}, {lower} {pixel.value}; kept {win.value}")
    return Decision(win.value, round(conf, 4), ev, True)


def fuse_counts(
    text_count: int | None, pixel_count: int | None, pixel_backend: str = "pixels", text_label: str = "caption"
) -> tuple[int | None, bool, str | None]:
    """(count, multi_character, disagreement note). The caption count wins when present."""
    count = text_count if text_count is not None else pixel_count
    multi = any(c is not None and c >= 2 for c in (text_count, pixel_count))
    note = None
    if text_count is not None and pixel_count is not None and text_count != pixel_count:
        note = f"count disagreement: {text_label} says {text_count}, pixels say {pixel_count} ({pixel_backend})"
    return count, multi, note


def fuse(
    text: Extraction | None,
    pixels: Extraction | None,
    *,
    pixel_count: int | None = None,
    pixel_backend: str = "pixels",
    notes: list[str] | None = None,
    input_kind: str = "image",
    text_label: str = "caption",
) -> Extraction:
    """Merge a caption extraction and a pixel extraction of the same image into one record.

    List attributes (accessories, ...) come from ``text``, or from ``pixels`` when ``text``
    has none (a picture without a caption keeps what the tagger / captioner side listed)."""
    notes = list(notes or [])
    if text is not None and text.status == "invalid":
        notes.append(f"caption ignored: {text.reason}")
        text = None
    attrs: dict[str, Decision] = {}
    for spec in ATTRIBUTES:
        t = text.attributes.get(spec.key) if text else None
        p = pixels.attributes.get(spec.key) if pixels else None
        if spec.is_list:
            if t is not None or p is not None:
                attrs[spec.key] = t if t is not None else p  # type: ignore[assignment]
            continue
        if p is None:
            if t is not None:
                attrs[spec.key] = Decision(t.value, t.confidence, _tagged(t, "tag:"), t.conflict)
            continue
        d = fuse_decision(spec.key, t, p, "tag" if text_label == "caption" else text_label)
        if d is not None and (spec.is_core or d.value != UNKNOWN):  # optional keys only when evidenced
            attrs[spec.key] = d
    tc = text.character_count if text else None
    count, multi, note = fuse_counts(tc, pixel_count, pixel_backend, text_label)
    if note:
        notes.append(note)
    status = "ok"
    if text is not None and text.status == "excluded":
        status = "excluded"
    elif multi:
        status = "multi_character"
    reasons = ([text.reason] if text is not None and text.reason else []) + notes
    return Extraction(
        input_kind=input_kind,
        status=status,
        reason="; ".join(reasons) or None,
        character_count=count,
        multi_character=multi,
        characters=list(text.characters) if text else [],
        copyrights=list(text.copyrights) if text else [],
        artists=list(text.artists) if text else [],
        rating=text.rating if text else None,
        attributes=attrs,
    )


def fuse_image(
    text: Extraction | None,
    tagger: Extraction | None,
    pixels: Extraction | None,
    *,
    pixel_count: int | None = None,
    pixel_backend: str = "pixels",
    notes: list[str] | None = None,
    safety_check: Extraction | None = None,
    captioner: Extraction | None = None,
) -> Extraction:
    """Caption tags > tagger > VLM caption > pixel colours > zero-shot / heads, per attribute, with provenance.

    The captioner's caption was read by the prose reader (evidence ``captioner:<phrase>``);
    it is fused with the pixels first (``fuse(captioner, pixels)``: its count cross-checked
    with the faces, ``count disagreement: captioner says ...``), and that result is the
    pixel side of the steps below; the faces' count stays the pixel count (on the 15 shipped
    drawings with the tiny test captioner, letting its "a girl" win dropped the exact count
    from 14/15 to 11/15). A captioner reading that the safety rule excludes
    excludes the record, like the tagger's.

    The tagger's tags were read by the tag engine (evidence ``tagger:<tag>:<score>``);
    they first win over the pixel side (``fuse(tagger, pixels)``), then the caption wins
    over that result. Counts: the caption's, else the tagger's, cross-checked with the
    faces counted in the pixels (``count disagreement``). The tagger's rating, character
    names and exclusion are kept, so a picture with no caption still meets the safety
    rule; ``safety_check`` is the tag engine's reading of caption + tagger tags together
    (a minor in one source and a sexual tag in the other), excluded when it is.
    """
    raw_pixels, cap_multi = pixels, False
    if captioner is not None and captioner.status != "invalid":
        cap_side = fuse(captioner, pixels, pixel_count=pixel_count, pixel_backend=pixel_backend, text_label="captioner")
        if cap_side.reason and cap_side.reason != captioner.reason:
            notes = list(notes or []) + [r for r in cap_side.reason.split("; ") if r != captioner.reason]
        pixels, cap_multi = cap_side, cap_side.multi_character
        # the faces' count stays the record's count and what later steps cross-check (a generated
        # "a girl" over a three-face scene must not erase the counter's 3); the captioner's count
        # is used only when no face counter ran, and a disagreement is noted and flags multi
        if pixel_count is None:
            pixel_count, pixel_backend = cap_side.character_count, "captioner"
    else:
        captioner = None
    if tagger is None or tagger.status == "invalid":
        out = fuse(text, pixels, pixel_count=pixel_count, pixel_backend=pixel_backend, notes=notes)
    else:
        side = fuse(tagger, pixels, pixel_count=pixel_count, pixel_backend=pixel_backend)
        side_notes = list(notes or []) + ([side.reason] if side.reason and side.reason != tagger.reason else [])
        out = fuse(text, side, pixel_count=side.character_count, pixel_backend="tagger", notes=side_notes)
        out.characters = list(dict.fromkeys(out.characters + tagger.characters))
        out.copyrights = list(dict.fromkeys(out.copyrights + tagger.copyrights))
        if out.rating is None:
            out.rating = tagger.rating
        if side.multi_character and out.status == "ok":
            out.status, out.multi_character = "multi_character", True
        if tagger.status == "excluded" and out.status != "excluded":
            out.status = "excluded"
            out.reason = "; ".join(r for r in (f"tagger: {tagger.reason}", out.reason) if r)
    if cap_multi and out.status == "ok":
        out.status, out.multi_character = "multi_character", True
    if captioner is not None:
        out.characters = list(dict.fromkeys(out.characters + captioner.characters))
        if captioner.status == "excluded" and out.status != "excluded":
            out.status = "excluded"
            out.reason = "; ".join(r for r in (f"captioner: {captioner.reason}", out.reason) if r)
    _reorder(out, {"caption": text, "tagger": tagger, "captioner": captioner, "pixels": raw_pixels})
    if safety_check is not None and safety_check.status == "excluded" and out.status != "excluded":
        out.status = "excluded"
        out.reason = "; ".join(r for r in (safety_check.reason, out.reason) if r)
    return out


DEFAULT_ORDER = ("caption", "tagger", "captioner", "pixels")
_PREFIX = {"caption": "tag:", "tagger": "tagger:", "captioner": "captioner:", "pixels": "pixel:"}


def _reorder(out: Extraction, sources: dict[str, Extraction | None]) -> None:
    """Attributes whose ``source_order`` in ``data/images/fusion.json`` differs from caption > tagger >
    captioner > pixels are re-decided in that order (highest source wins a conflict, both sides kept in the evidence)."""
    for spec in ATTRIBUTES:
        order = tuple(_policy(spec.key).get("source_order", DEFAULT_ORDER))
        if order == DEFAULT_ORDER or spec.is_list:
            continue
        acc: Decision | None = None
        acc_src = ""
        for src in reversed(order):
            ex = sources.get(src)
            d = ex.attributes.get(spec.key) if ex is not None and ex.status != "invalid" else None
            if d is None:
                continue
            d = Decision(d.value, d.confidence, _tagged(d, _PREFIX[src]), d.conflict)
            label = "tag" if src == "caption" else src
            acc = d if acc is None else fuse_decision(spec.key, d, acc, label, acc_src)
            acc_src = label if is_known(d) or not acc_src else acc_src
        if acc is not None and (spec.is_core or acc.value != UNKNOWN):
            out.attributes[spec.key] = acc
