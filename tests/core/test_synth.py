"""``charmeta synth``: formats parse, exact counts, determinism, uniqueness, mix shares."""

from __future__ import annotations

import json
import re
import tarfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from charmeta.cli import main
from charmeta.engine import guard_text
from charmeta.synth import captions, generate, shard_plan
from charmeta.synth.vocab import ordered_form, raw_form

ID_RE = re.compile(r"^\d{5}-\d{8}$")
MULTI_RE = re.compile(
    r"(^|[ ,])([2-6]\+?(girls|boys|others)|1girl[, ]+1(boy|other)|1boy[, ]+1other|multiple[ _](girls|boys|others))([ ,]|$)"
)


def _parquet_rows(d: Path) -> list[dict]:
    return [r for f in sorted(d.glob("*.parquet")) for r in pq.read_table(f).to_pylist()]


def _jsonl_rows(d: Path) -> list[dict]:
    return [json.loads(line) for f in sorted(d.glob("*.jsonl")) for line in f.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def pq_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("synth_pq")
    generate(20_000, 3, d, "parquet", seed=11, workers=1, chunk_rows=4_000, log=lambda _m: None)
    return d


def test_shard_plan_exact() -> None:
    plan = shard_plan(10, 3)
    assert [n for _, _, n in plan] == [4, 3, 3]
    assert [s for _, s, _ in plan] == [0, 4, 7]


def test_spellings() -> None:
    assert ordered_form("kaga_(kancolle)") == "kaga \\(kancolle\\)"
    assert ordered_form("^_^") == "^_^"
    assert raw_form("kaga \\(kancolle\\)") == "kaga_(kancolle)"


def test_parquet_counts_ids_and_mix(pq_dir: Path) -> None:
    rows = _parquet_rows(pq_dir)
    assert len(rows) == 20_000
    assert len(list(pq_dir.glob("*.parquet"))) == 3
    assert all(ID_RE.match(r["id"]) for r in rows)
    assert len({r["id"] for r in rows}) == len(rows)
    valid = [r["text"] for r in rows if guard_text(r["text"])[1] is None]
    invalid = len(rows) - len(valid)
    assert 40 <= invalid <= 200  # ~0.5%
    assert len(set(valid)) == len(valid), "valid texts must be unique"
    v31 = [t for t in valid if " ||| " in t]
    v30 = [t for t in valid if ", rating: " in t]
    raw = [t for t in valid if "," not in t and "_" in t]
    assert len(v31) > 0.25 * len(valid) and len(v30) > 0.2 * len(valid) and len(raw) > 0.15 * len(valid)
    for t in v31 + v30:  # ordered-tags: escaped parentheses, no underscores in long tags
        assert not re.search(r"(?<!\\)\(", t), t
        assert t.split(", ")[-1].endswith(("quality", "masterpiece", "aesthetic", "displeasing")), t
    for t in v31:
        head, tail = t.split(" ||| ")
        assert tail.split(", ")[0] in {"safe", "sensitive", "nsfw", "explicit"}
        assert head.startswith(("1", "2", "3", "solo", "multiple"))
    multi = sum(1 for t in v31 + v30 + raw if MULTI_RE.search(t))
    share = multi / len(v31 + v30 + raw)
    assert 0.012 <= share <= 0.03, share


def test_deterministic_by_seed_and_independent_of_workers(tmp_path: Path, pq_dir: Path) -> None:
    quiet = {"log": lambda _m: None, "chunk_rows": 4_000}
    generate(20_000, 3, tmp_path / "a", "parquet", seed=11, workers=2, **quiet)
    generate(2_000, 1, tmp_path / "b", "parquet", seed=12, workers=1, **quiet)
    assert _parquet_rows(tmp_path / "a") == _parquet_rows(pq_dir)
    other = {r["text"] for r in _parquet_rows(tmp_path / "b")}
    same = {r["text"] for r in _parquet_rows(pq_dir)[:2_000]}
    assert len(other & same) < 20  # only invalid empties/blanks may coincide


def test_jsonl_and_webdataset(tmp_path: Path) -> None:
    s = generate(3_000, 2, tmp_path / "j", "jsonl", seed=3, workers=1, log=lambda _m: None)
    rows = _jsonl_rows(tmp_path / "j")
    assert len(rows) == 3_000 == s.rows
    kinds = {type(r["text"]).__name__ for r in rows}
    assert {"str"} <= kinds
    w = generate(3_000, 2, tmp_path / "w", "webdataset", seed=3, workers=1, log=lambda _m: None)
    names = [m.name for f in sorted((tmp_path / "w").glob("*.tar")) for m in tarfile.open(f).getmembers()]
    assert len(names) == 3_000 == w.rows
    assert names == [f"{r['id']}.txt" for r in rows]
    with tarfile.open(sorted((tmp_path / "w").glob("*.tar"))[0]) as tar:
        first = tar.extractfile(tar.getmembers()[0]).read()
    if rows[0]["text"] and isinstance(rows[0]["text"], str):
        assert first.decode("utf-8") == rows[0]["text"]


def test_invalid_kinds_all_rejected_by_engine_guard(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(captions, "INVALID_P", 0.2)
    monkeypatch.setattr(captions, "OVERLONG_P", 0.01)
    generate(2_000, 1, tmp_path / "j", "jsonl", seed=5, workers=1, log=lambda _m: None)
    generate(2_000, 1, tmp_path / "p", "parquet", seed=5, workers=1, log=lambda _m: None)
    jrows = _jsonl_rows(tmp_path / "j")
    prows = _parquet_rows(tmp_path / "p")
    texts = [r["text"] for r in jrows]
    assert None in texts and "" in texts
    assert any(isinstance(t, int) for t in texts)
    assert any(isinstance(t, str) and t and not t.strip() for t in texts)
    assert any(isinstance(t, str) and len(t) > 64_000 for t in texts)
    reasons = [guard_text(t)[1] for t in texts]
    assert sum(r is not None for r in reasons) == sum(guard_text(r["text"])[1] is not None for r in prows)
    assert any(r and "NUL" in r for r in (guard_text(r["text"])[1] for r in prows))


def test_cli(tmp_path: Path, capsys) -> None:
    assert main(["synth", "--rows", "500", "--shards", "2", "--output", str(tmp_path), "--seed", "1"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["rows"] == 500 and out["shards"] == 2 and out["bytes"] > 0
    assert len(_parquet_rows(tmp_path)) == 500


def test_bad_arguments(tmp_path: Path) -> None:
    from charmeta.errors import ConfigError

    with pytest.raises(ConfigError):
        generate(10, 0, tmp_path, "parquet")
    with pytest.raises(ConfigError):
        generate(10, 1, tmp_path, "csv")
