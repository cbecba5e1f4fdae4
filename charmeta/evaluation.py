"""Accuracy of the extractor on a labeled set (``make eval``).

Dev-set rows: ``{"id", "text", "format", "multi_character", "excluded",
"labels": {core attributes} | null, "dress_keywords": [...], "optional": {...}}``.
Dress is judged by keywords: a correct value contains one of them
(case-insensitive); ``Unknown`` and ``None`` must match exactly.

``make eval`` reads three sets (``EVAL_SETS``): the dev set (tag captions and
some prose, which the rules were tuned on), and the prompt-style and prose sets
of issue #12. Each of the latter two is cut into a *tuned* and an *untouched*
half by a fixed rule on the row id (``half_of``), decided before any rule was
changed: rules are tuned looking only at the tuned half's failures, and the
untouched half measures how well they carry over to text the tuning never saw.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from charmeta.contract import CORE_KEYS, validate_clean
from charmeta.engine import Engine
from charmeta.records import Extraction, to_clean

TAG_FORMATS = ("v31", "v30", "danbooru")
#: The halves of a labeled set (``half_of``).
HALVES = ("tuned", "untouched")


def half_of(row_id: str) -> str:
    """``tuned`` or ``untouched``: the parity of the SHA-256 of the row id.

    A hash, not the row order, so adding rows never moves an existing row to the
    other half, and nobody chooses which row lands where.
    """
    return HALVES[int(hashlib.sha256(row_id.encode("utf-8")).hexdigest(), 16) % 2]


def dress_correct(value: str, expected: str, keywords: list[str]) -> bool:
    if expected in ("Unknown", "None") or not keywords:
        return value == expected
    low = value.lower()
    return any(k.lower() in low for k in keywords)


@dataclass
class EvalReport:
    """Counts per (format, attribute), plus status metrics and failures for debugging."""

    correct: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    total: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    tp: int = 0
    fp: int = 0
    fn: int = 0
    excluded_hit: int = 0
    excluded_total: int = 0
    false_excluded: int = 0
    schema_ok: int = 0
    schema_total: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)

    def accuracy(self, group: str, key: str) -> float | None:
        t = self.total.get((group, key), 0)
        return self.correct.get((group, key), 0) / t if t else None

    @property
    def multi_precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def multi_recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def multi_f1(self) -> float:
        p, r = self.multi_precision, self.multi_recall
        return 2 * p * r / (p + r) if p + r else 0.0


def evaluate(rows: Iterable[dict[str, Any]], engine: Engine | None = None) -> EvalReport:
    engine = engine or Engine.default()
    rep = EvalReport()
    for row in rows:
        ex: Extraction = engine.extract_text(row["text"])
        fmt = row.get("format", "unknown")
        group = "tags" if fmt in TAG_FORMATS else fmt
        want_multi = bool(row.get("multi_character"))
        got_multi = ex.multi_character
        rep.tp += want_multi and got_multi
        rep.fp += (not want_multi) and got_multi
        rep.fn += want_multi and not got_multi
        if want_multi != got_multi:
            rep.failures.append(
                {
                    "id": row["id"],
                    "group": group,
                    "key": "multi_character",
                    "want": want_multi,
                    "got": got_multi,
                    "evidence": [f"count {ex.character_count}"],
                    "text": row["text"][:300],
                }
            )
        if row.get("excluded"):
            rep.excluded_total += 1
            rep.excluded_hit += ex.status == "excluded"
        elif ex.status == "excluded":
            rep.false_excluded += 1
            rep.failures.append({"id": row["id"], "key": "status", "want": "not excluded", "got": ex.reason})
        if ex.status != "invalid":
            rep.schema_total += 1
            try:
                validate_clean(to_clean(ex))
                rep.schema_ok += 1
            except ValidationError as exc:
                rep.failures.append({"id": row["id"], "key": "schema", "want": "valid", "got": str(exc)[:200]})
        labels = row.get("labels")
        if not labels or want_multi or row.get("excluded"):
            continue
        for key in CORE_KEYS:
            want = labels[key]
            got = ex.value(key)
            ok = dress_correct(got, want, row.get("dress_keywords") or []) if key == "Dress" else got == want
            for g in (group, fmt, "all"):
                rep.total[(g, key)] += 1
                rep.correct[(g, key)] += ok
            if not ok:
                ev = ex.attributes.get(key)
                rep.failures.append(
                    {
                        "id": row["id"],
                        "group": group,
                        "key": key,
                        "want": want,
                        "got": got,
                        "evidence": ev.evidence if ev else [],
                        "text": row["text"][:300],
                    }
                )
    return rep


def load_rows(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def format_report(rep: EvalReport) -> str:
    groups = ["tags", "v31", "v30", "danbooru", "prose", "all"]
    lines = ["attribute      " + "".join(f"{g:>10}" for g in groups)]
    for key in CORE_KEYS:
        cells = []
        for g in groups:
            acc = rep.accuracy(g, key)
            cells.append(f"{acc:10.3f}" if acc is not None else f"{'-':>10}")
        lines.append(f"{key:<15}" + "".join(cells))
    n = rep.total.get(("all", "Age"), 0)
    lines.append(f"(n single-character labeled rows: {n})")
    lines.append(
        f"multi-character precision {rep.multi_precision:.3f}  recall {rep.multi_recall:.3f}  F1 {rep.multi_f1:.3f}"
    )
    lines.append(f"excluded recall {rep.excluded_hit}/{rep.excluded_total}   wrongly excluded {rep.false_excluded}")
    lines.append(f"schema-valid outputs {rep.schema_ok}/{rep.schema_total}")
    return "\n".join(lines)


@dataclass
class SuiteColumn:
    """One column of the ``make eval`` table: a labeled set, or one half of it."""

    name: str
    report: EvalReport
    rows: int


def evaluate_suite(sets: dict[str, list[dict[str, Any]]], engine: Engine | None = None) -> list[SuiteColumn]:
    """The dev set whole (tag formats and prose apart), every other set as its tuned and untouched halves."""
    engine = engine or Engine.default()
    columns: list[SuiteColumn] = []
    for name, rows in sets.items():
        if name == "dev":
            rep = evaluate(rows, engine)
            columns.append(SuiteColumn("dev tags", _restrict(rep, "tags"), len(rows)))
            columns.append(SuiteColumn("dev prose", _restrict(rep, "prose"), len(rows)))
            continue
        for half in HALVES:
            part = [r for r in rows if half_of(r["id"]) == half]
            columns.append(SuiteColumn(f"{name} {half}", evaluate(part, engine), len(part)))
    return columns


def _restrict(rep: EvalReport, group: str) -> EvalReport:
    """A copy of ``rep`` whose ``all`` group is ``group`` (status metrics kept as they are: the whole set)."""
    out = EvalReport(
        tp=rep.tp,
        fp=rep.fp,
        fn=rep.fn,
        excluded_hit=rep.excluded_hit,
        excluded_total=rep.excluded_total,
        false_excluded=rep.false_excluded,
        schema_ok=rep.schema_ok,
        schema_total=rep.schema_total,
    )
    for (g, key), n in rep.total.items():
        if g == group:
            out.total[("all", key)] = n
            out.correct[("all", key)] = rep.correct.get((g, key), 0)
    out.failures = [f for f in rep.failures if f.get("group", group) == group]
    return out


def format_suite(columns: list[SuiteColumn]) -> str:
    """Accuracy per attribute (rows) and set / half (columns), then multi-character F1, exclusions, schema."""
    width = max(12, *(len(c.name) + 2 for c in columns))
    lines = ["attribute      " + "".join(f"{c.name:>{width}}" for c in columns)]

    def cell(value: float | None) -> str:
        return f"{value:{width}.3f}" if value is not None else f"{'-':>{width}}"

    for key in CORE_KEYS:
        lines.append(f"{key:<15}" + "".join(cell(c.report.accuracy("all", key)) for c in columns))
    accs = [[c.report.accuracy("all", k) for k in CORE_KEYS] for c in columns]
    lines.append(f"{'mean':<15}" + "".join(cell(sum(a) / len(a) if None not in a else None) for a in accs))
    lines.append(f"{'min':<15}" + "".join(cell(min(a) if None not in a else None) for a in accs))
    lines.append(f"{'multi F1':<15}" + "".join(cell(c.report.multi_f1) for c in columns))
    lines.append(
        f"{'multi tp/fp/fn':<15}" + "".join(f"{f'{c.report.tp}/{c.report.fp}/{c.report.fn}':>{width}}" for c in columns)
    )
    lines.append(
        f"{'excluded':<15}"
        + "".join(f"{f'{c.report.excluded_hit}/{c.report.excluded_total}':>{width}}" for c in columns)
    )
    lines.append(f"{'wrongly excl.':<15}" + "".join(f"{c.report.false_excluded:>{width}}" for c in columns))
    lines.append(
        f"{'schema-valid':<15}"
        + "".join(f"{f'{c.report.schema_ok}/{c.report.schema_total}':>{width}}" for c in columns)
    )
    lines.append(
        f"{'labeled rows':<15}" + "".join(f"{c.report.total.get(('all', 'Age'), 0):>{width}}" for c in columns)
    )
    lines.append(f"{'rows':<15}" + "".join(f"{c.rows:>{width}}" for c in columns))
    lines.append(
        "(dev: the whole dev set, tag formats and prose apart; other sets: halves by SHA-256 parity of the id)"
    )
    return "\n".join(lines)
