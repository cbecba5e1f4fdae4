"""One ``Extraction`` as the app shows it: JSON record, clean record, per-attribute table, status line.

Why derived here and not in the UI: the browser tests and the ``gradio_client`` test
read the same dictionaries the Gradio components display, and a unit test pins
them without a browser.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from charmeta.contract import ATTRIBUTES
from charmeta.records import Extraction, to_clean, to_cli_json

#: Evidence prefixes written by the fusion step and image backends -> the source shown in the table.
#: ``tag:`` caption tags, ``tagger:<tag>:<score>`` the WD tagger, ``pixel:colors:...`` the offline colour
#: namer, ``pixel:zero-shot:...`` / ``pixel:<head>:...`` the image model, ``identity:`` a character profile.
SOURCE_LABELS = {
    "tag": "caption tag",
    "tagger": "tagger",
    "identity": "identity fill",
    "character": "identity fill",
}
PIXEL_LABELS = {"colors": "pixel colors", "colours": "pixel colors", "zero-shot": "zero-shot", "zeroshot": "zero-shot"}

TABLE_HEADERS = ["attribute", "value", "confidence", "source", "evidence"]


@dataclass
class RecordView:
    """Everything the Image and Text tabs display for one input."""

    record: dict[str, Any]  # the ``charmeta extract`` JSON line
    clean: dict[str, Any]  # the clean export record (ok records), else a note why it is not exported
    rows: list[list[Any]]  # TABLE_HEADERS rows, contract order
    status: str  # one Markdown line: status + reason
    backends: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "record": self.record,
            "clean": self.clean,
            "rows": self.rows,
            "status": self.status,
            "backends": self.backends,
        }


def sources_of(evidence: list[str], input_kind: str) -> tuple[list[str], list[str]]:
    """(sources, evidence) of one decision.

    Text records carry bare tags / phrases as evidence (their source is the caption);
    fused image records prefix each item with its backend (``tag:``, ``pixel:`` ...).
    """
    default = "prose" if input_kind == "prose" else "caption tag"
    if input_kind != "image":
        return ([default] if evidence else []), list(evidence)
    sources: list[str] = []
    for item in evidence:
        parts = item.split(":")
        head = parts[0].strip().lower()
        if len(parts) < 2:
            label = "caption tag"  # list attributes keep the caption's bare tags in a fused record
        elif head == "pixel":
            sub = parts[1].strip().lower() if len(parts) > 2 else ""
            label = PIXEL_LABELS.get(sub, "image model")
        else:
            label = SOURCE_LABELS.get(head)
        if label and label not in sources:
            sources.append(label)
    return sources, list(evidence)


def attribute_rows(ex: Extraction) -> list[list[Any]]:
    """value / confidence / source / evidence per contract attribute (optional keys when present)."""
    rows: list[list[Any]] = []
    for spec in ATTRIBUTES:
        d = ex.attributes.get(spec.key)
        if d is None:
            if spec.is_core and ex.status != "invalid":
                rows.append([spec.key, "Unknown", 0.0, "", ""])
            continue
        value = d.value
        if isinstance(value, list):
            if not value:
                continue
            value = ", ".join(str(v) for v in value)
        sources, evidence = sources_of(list(d.evidence), ex.input_kind)
        if d.conflict:
            evidence.append("(conflict)")
        rows.append([spec.key, value, round(float(d.confidence), 4), ", ".join(sources), "; ".join(evidence)])
    return rows


STATUS_TEXT = {
    "ok": "ok: one character, attributes extracted; this record goes to the clean export",
    "multi_character": "multi_character: more than one character; kept out of the clean export",
    "excluded": "excluded by the safety rule; kept out of the clean export",
    "invalid": "invalid input; quarantined with its reason",
}


def status_line(ex: Extraction) -> str:
    line = f"**status: {ex.status}** — {STATUS_TEXT.get(ex.status, ex.status)}"
    if ex.reason:
        line += f"  \n**reason:** {ex.reason}"
    return line


def record_view(ex: Extraction, record_id: Any, backends: list[str] | None = None) -> RecordView:
    """The app's views of one extraction (same JSON as ``charmeta extract``)."""
    record = to_cli_json(ex, record_id)
    if ex.status == "ok":
        clean: dict[str, Any] = {"id": record_id, **to_clean(ex)}
    else:
        clean = {"id": record_id, "exported": False, "status": ex.status, "reason": ex.reason}
    return RecordView(record, clean, attribute_rows(ex), status_line(ex), list(backends or []))


def error_view(message: str) -> RecordView:
    """A bad upload / input: a clear message instead of a record (never a stack trace)."""
    record = {"status": "error", "reason": message}
    return RecordView(record, {}, [], f"**error:** {message}", [])
