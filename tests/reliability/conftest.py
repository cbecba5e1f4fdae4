"""The chaos suite's table: every case records ``input / fault -> outcome -> records lost``.

Tests call the ``chaos`` fixture (``chaos.record(case, outcome, lost)``); the rows
are printed after the run (``make chaos``) and written to
``$CHARMETA_CHAOS_TABLE`` when set. A case whose test failed is shown as FAILED.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # chaos_faults must import in spawn workers and subprocesses too
    sys.path.insert(0, str(HERE))

_ROWS: list[dict] = []


class Chaos:
    def __init__(self, nodeid: str) -> None:
        self.nodeid = nodeid

    def record(self, case: str, outcome: str, lost: int) -> None:
        _ROWS.append({"case": case, "outcome": outcome, "lost": int(lost), "nodeid": self.nodeid, "passed": None})


@pytest.fixture
def chaos(request: pytest.FixtureRequest) -> Chaos:
    return Chaos(request.node.nodeid)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):  # noqa: ANN001, ANN201
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call" or (rep.when == "setup" and rep.failed):
        mine = [r for r in _ROWS if r["nodeid"] == item.nodeid]
        for r in mine:
            if r["passed"] is None:
                r["passed"] = rep.passed
        if rep.failed and not mine:  # failed before recording its row: still shown, loss unknown
            name = item.callspec.id if hasattr(item, "callspec") else item.name
            _ROWS.append(
                {
                    "case": name,
                    "outcome": "TEST FAILED (see above)",
                    "lost": None,
                    "nodeid": item.nodeid,
                    "passed": False,
                }
            )


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # noqa: ANN001, ANN201
    if not _ROWS:
        return
    w1 = min(max(len(r["case"]) for r in _ROWS), 48)
    w2 = min(max(len(r["outcome"]) for r in _ROWS), 90)
    lines = [
        f"{'input / fault':<{w1}} | {'outcome':<{w2}} | records lost | test",
        f"{'-' * w1}-+-{'-' * w2}-+--------------+------",
    ]
    for r in _ROWS:
        status = "ok" if r["passed"] else "FAILED"
        out = r["outcome"] if len(r["outcome"]) <= w2 else r["outcome"][: w2 - 1] + "…"
        lost = "?" if r["lost"] is None else r["lost"]
        lines.append(f"{r['case'][:w1]:<{w1}} | {out:<{w2}} | {lost:>12} | {status}")
    total_lost = sum(r["lost"] or 0 for r in _ROWS)
    failed = sum(1 for r in _ROWS if not r["passed"])
    lines.append(f"{len(_ROWS)} cases, records lost: {total_lost}, failed cases: {failed}")
    terminalreporter.write_sep("=", "chaos: input / fault -> outcome -> records lost")
    for line in lines:
        terminalreporter.write_line(line)
    target = os.environ.get("CHARMETA_CHAOS_TABLE")
    if target:
        Path(target).write_text("\n".join(lines) + "\n", encoding="utf-8")
