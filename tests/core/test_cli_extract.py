"""`charmeta extract` through the installed entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from charmeta.contract import CORE_KEYS, validate_clean

CLI = [sys.executable, "-m", "charmeta.cli"]


def test_text_prints_one_record() -> None:
    out = subprocess.run(
        CLI + ["extract", "--text", "1girl, blue eyes, long hair, green kimono"],
        capture_output=True,
        text=True,
        check=True,
    )
    rec = json.loads(out.stdout)
    assert rec["status"] == "ok"
    assert rec["attributes"]["Eye Color"] == "Blue" and rec["attributes"]["Dress"] == "Green Kimono"
    assert set(CORE_KEYS) <= set(rec["attributes"]) and rec["confidence"]["Eye Color"] > 0.5
    assert rec["evidence"]["Eye Color"] == ["blue eyes"]
    validate_clean(rec["attributes"])


def test_file_with_bad_lines(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    lines = [
        b'{"id": "a", "text": "1girl, red hair"}',
        b'{"id": "b", "text": "2girls, school uniform"}',
        b"{not json",
        b'{"id": "d"}',
        b'{"id": "e", "text": 42}',
        b'{"id": "f", "text": "' + b"x, " * 40000 + b'"}',
        b"\xff\xfe not utf-8",
        b'["a", "list"]',
        b"plain prose line: a woman in a red dress",
        b'{"id": "j", "text": "1girl, ||| explicit, nsfw, child"}',
    ]
    src.write_bytes(b"\n".join(lines) + b"\n")
    dst = tmp_path / "out.jsonl"
    proc = subprocess.run(CLI + ["extract", "--input", str(src), "--output", str(dst)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    recs = [json.loads(line) for line in dst.read_text().splitlines()]
    assert len(recs) == len(lines)
    assert [r["id"] for r in recs] == ["a", "b", 3, "d", "e", "f", 7, 8, 9, "j"]
    assert [r["status"] for r in recs] == [
        "ok",
        "multi_character",
        "invalid",
        "invalid",
        "invalid",
        "invalid",
        "invalid",
        "invalid",
        "ok",
        "excluded",
    ]
    assert all(r["reason"] for r in recs if r["status"] == "invalid")
    assert "6 invalid" in proc.stderr
    assert recs[8]["attributes"]["Dress"] == "Red Dress"


def test_stdin_to_stdout() -> None:
    proc = subprocess.run(
        CLI + ["extract", "--input", "-"],
        input="1boy, black hair\n\n1girl, bob cut\n",
        capture_output=True,
        text=True,
        check=True,
    )
    recs = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["id"] for r in recs] == [1, 3]
    assert recs[1]["attributes"]["Hair Length"] == "Short"


def test_output_file_appears_only_when_complete(tmp_path: Path) -> None:
    """A run that dies mid-stream leaves neither a partial output nor its temp file."""
    import argparse

    import pytest

    from charmeta.commands.extract import _run_file

    class Dying:
        calls = 0

        def extract_text(self, text, rating=None):
            Dying.calls += 1
            if Dying.calls == 2:
                raise KeyboardInterrupt  # what Ctrl-C does mid-run
            from charmeta.records import Extraction

            return Extraction()

        def prepare_batches(self):
            pass

        def extract_texts(self, texts):
            return [self.extract_text(t) for t in texts]

    src = tmp_path / "in.txt"
    src.write_text("1girl\n1boy\n2girls\n")
    dst = tmp_path / "out.jsonl"
    args = argparse.Namespace(input=str(src), output=str(dst), progress_every=0)
    with pytest.raises(KeyboardInterrupt):
        _run_file(args, Dying())  # type: ignore[arg-type]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt"]


def test_blocks_give_the_per_entry_lines(tmp_path: Path, monkeypatch) -> None:
    """Read in blocks (``Engine.extract_texts``), every line comes out as ``extract_text`` makes it,
    in input order, across block boundaries: rating fields, invalid and blank lines included."""
    import argparse

    import orjson

    from charmeta.commands import extract
    from charmeta.engine import Engine
    from charmeta.records import Extraction, to_cli_json

    lines = [
        b'{"id": "a", "text": "1girl, solo, hatsune miku, vocaloid, ||| general, long hair, hair ornament"}',
        b'{"id": "b", "text": "long_hair blue_eyes 1girl solo", "rating": "e"}',
        b"",
        b"{not json",
        b"1girl, solo, rating: general, red eyes, twintails, glasses",
        b'{"id": "c", "text": "2girls, ||| explicit, child, nude"}',
        b"a tall woman with short red hair in a green kimono",
        b'{"id": "d", "text": null}',
        b"1girl, blue eyes, smile, (red dress:1.2)",
        b"2girls black_hair red_eyes kimono",
    ] * 3
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"\n".join(lines) + b"\n")
    dst = tmp_path / "out.jsonl"
    monkeypatch.setattr(extract, "BLOCK_LINES", 4)
    engine = Engine.default()
    extract._run_file(argparse.Namespace(input=str(src), output=str(dst), progress_every=5), engine)
    want = []
    for lineno, raw in enumerate(lines, start=1):
        if raw.strip():
            rid, text, rating, reason = extract.parse_line(raw, lineno)
            ex = Extraction.invalid(reason) if reason else engine.extract_text(text, rating)
            want.append(orjson.dumps(to_cli_json(ex, rid)))
    assert dst.read_bytes().splitlines() == want
    statuses = [json.loads(line)["status"] for line in want]
    assert {"ok", "multi_character", "excluded", "invalid"} <= set(statuses)
