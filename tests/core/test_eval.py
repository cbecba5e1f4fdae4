"""The accuracy goals of issue #2 on the dev set (the held-out set decides; this guards regressions)."""

from __future__ import annotations

from pathlib import Path

from charmeta.contract import CORE_KEYS
from charmeta.evaluation import evaluate, format_report, load_rows

DEV_SET = Path(__file__).resolve().parents[1] / "data" / "dev_set.jsonl"


def test_dev_set_goals() -> None:
    rep = evaluate(load_rows(DEV_SET))
    report = format_report(rep)
    for key in CORE_KEYS:
        assert rep.accuracy("tags", key) >= 0.97, report
        assert rep.accuracy("prose", key) >= 0.90, report
    assert rep.multi_f1 == 1.0, report
    assert rep.excluded_hit == rep.excluded_total and rep.false_excluded == 0, report
    assert rep.schema_ok == rep.schema_total, report
