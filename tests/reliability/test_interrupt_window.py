"""A second Ctrl-C while ``charmeta`` reports the first must not kill the process (issue #19).

One CI run of ``test_interrupt.py`` printed the resume line and then died of SIGINT (-2)
instead of exiting 130: a KeyboardInterrupt raised again while the first was being handled
escaped ``main``. This test delivers that second SIGINT deterministically, from inside the
handler, and checks ``main`` still returns 130 and gives the caller its SIGINT handler back.
"""

from __future__ import annotations

import argparse
import os
import signal

import pytest

from charmeta import cli


def _parser_with_interrupted_run() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="charmeta")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--debug", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run")

    def interrupted(_args: argparse.Namespace) -> int:
        raise KeyboardInterrupt  # what the first Ctrl-C does mid-run

    run.set_defaults(func=interrupted)
    return parser


def test_second_sigint_while_reporting_the_first(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setattr(cli, "build_parser", _parser_with_interrupted_run)
    delivered = []

    def hint_with_second_interrupt() -> str:
        os.kill(os.getpid(), signal.SIGINT)  # the second Ctrl-C, while the first is reported
        delivered.append(True)
        return "charmeta run"

    monkeypatch.setattr(cli, "_resume_hint", hint_with_second_interrupt)
    before = signal.getsignal(signal.SIGINT)
    assert main_rc() == 130
    assert delivered, "the second interrupt was never sent"
    assert "To resume, run: charmeta run" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGINT) is before  # the caller's handler is back


def main_rc() -> int:
    return cli.main(["run"])
