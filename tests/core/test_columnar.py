"""The columnar tag path (memoised decisions, Arrow ``take``) must equal the per-entry path.

``Engine.process_batch`` sends ordered-tag captions through
``charmeta.extractors.columnar``; everything else through ``TextExtractor.extract``.
These tests build the same rows both ways and compare whole tables, on the dev
set, on synthetic captions in every format, and on hand-made edge cases
(headers with unknown names, safety tags in name slots, nude + garments, colour
forms, unknown counts, memo trimming between batches).
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from charmeta.engine import Engine, gc_paused
from charmeta.extractors import caption_arrays, columnar
from charmeta.extractors.caption_arrays import read_units
from charmeta.records import extractions_to_table, to_cli_json
from charmeta.synth import generate

DEV_SET = Path(__file__).resolve().parents[1] / "data" / "dev_set.jsonl"

EDGE_CASES = [
    "1girl, solo, hatsune miku, vocaloid, some artist, ||| general, long hair, twintails, aqua hair, aqua eyes",
    "1girl, solo, unknown person, another name, third name, ||| explicit, child, nude, dress, school uniform",
    "1girl, loli, vocaloid, ||| general, smile",  # safety tag standing in a name slot
    "solo, rating: explicit, child, red dress, blue dress, dress, sportswear, track suit",
    "rating: general, green kimono, kimono, black hair, white hair, multicolored hair, heterochromia",
    "1girl, 1boy, solo, ||| sensitive, long hair, short hair, bob cut, blush, smile, crying",
    "2girls, ||| general, red eyes, blue eyes, glasses, hat, glasses, scar, tattoo",
    "long_hair blue_eyes 1girl solo school_uniform rating:explicit otoko_no_ko",
    "black_hair red_eyes kimono nude sweater",
    "no count here, rating: questionable, aged down, swimsuit, bikini, sexy",
    "(1girl:1.2), [solo], rating: general, ((long hair)), {blue eyes}",
    "1girl, solo, ||| ||| general, long hair",  # a second '|||' stays inside the body
    "1girl, solo, artist |||| general, long hair",  # four pipes: one '|||', a '|' left in the body
    "1girl, solo, artist ||||| general, long hair",
    "1girl, solo, artist |||||| general, long hair",  # six pipes: two '|||'
    "1girl solo ||| general long_hair",  # '|||' without a comma
    "||| general, long hair",
    "1girl, solo, |||",
    "1girl | solo, rating: general, long hair",
    # one name spelled as a plain item and as items read per item (backslash, double space): kept once
    "1girl, solo, a name, some show, zork\\ quux, zork quux, Zork  Quux, ||| general, long hair",
    "1girl, solo, a name, some show, zork quux, other show, zork\\ quux, ||| general, long hair",
    "1girl,, , solo,,, rating: general,, long hair,",
    # two spaces / underscores in a row (read per item, never as plain items) and short emoticons
    "1girl, solo, some__name, a _name, name_ b, x__, ^_^, ||| general, long hair, ^_^, o_o, >_<",
    "1girl, solo,  two  spaces ,  ||| general, long__hair,  blue eyes",
    "1girl solo some__name ^_^ long_hair",
    # rating items in any case (v3.0 captions are read here only when one is found)
    "1girl, solo, RATING: General, long hair, smile",
    "solo, Rating:explicit, nude, (RATING: QUESTIONABLE:1.2), blush",
    "long hair, blue eyes, smile, ratings: none",
    "1girl, solo\nrating: general, long hair",  # newline: per-entry path
    "Tall woman with long red hair and green eyes, wearing a black dress.",
    "long hair, blue eyes, smile",  # prompt list without rating: per-entry path
    "male focus",
    "long_hair\x1cblue_eyes 1girl solo",  # str.split() splits on \x1c, Arrow does not: per-entry path
    "1girl, solo,\x1e||| general, long hair",
    "\u3000",
    "\u3000\u3000 \x1f",
    "\u30ed\u30f3\u30b0 long_hair 1girl solo",
    "1girl\u3000long_hair blue_eyes",
    "1girl, solo, \u521d\u97f3\u30df\u30af, ||| general, long hair",
    "loli, 1girl, ||| general",
    "",
    "   ",
    None,
    b"\xff\xfe",
    "a\x00b",
    12,
    # issue 12: terms hidden in one slot, ratings inside prompt lists, appearance tags in name slots,
    # generation text, extra-network tokens, count floors, word runs, safety words inside unknown names
    "1girl, solo, original, some_artist ||| general, (child:1.1) (nude:1.2), long hair",
    "1girl, red hair, rating:general, blue eyes",
    "1girl, blue eyes, hatsune miku, ||| general, smile",
    "1girl, teenage, rating: explicit, smile",
    "(1girl:1.2), rating: general, long hair",
    "1girl, original, (rating:questionable:1.1), 14 years old, nude",
    "1girl, solo, ||| general, child BREAK nude, <lora:x:0.8>",
    "1girl, solo, rating: general, long hair, Negative prompt: 2girls, Steps: 20, Sampler: Euler, Seed: 1",
    "1girl, solo, ||| general, red hair AND blue eyes",
    "2girls, multiple_girls, ||| general, long hair",
    "1girl, 4boys, multiple boys, ||| general",
    "6+girls, ||| general, smile",
    "multiple_girls 1girl long_hair",
    "1girl little girl nude outdoors",
    "1girl solo 12yo nude long_hair",
    "1girl, solo, foo_loli-gami_bar, ||| explicit, nude, mature female",
    "1girl, solo, 12yo artist, ||| general, smile",
    "1girl, kaitou kid, ||| explicit, nude",
    "1girl, solo, kaga \\(kancolle\\), ||| explicit, aged 12, nude",
    "1girl, solo, ||| questionable, child nude, smile",
    "1girl, solo, ||| general, half-naked child, smile",
    "1girl, solo, rating: general, baby blue eyes, smile",
]


def _both_ways(engine: Engine, texts: list, batch: int = 997, may_fall_back: bool = False) -> tuple[pa.Table, pa.Table]:
    fallbacks = engine.text_extractor.columnar.fallbacks
    ids = [f"r{i}" for i in range(len(texts))]
    pos = list(range(len(texts)))
    new = pa.concat_tables(
        [
            engine.process_batch(
                ids[i : i + batch], texts[i : i + batch], source_shard="s.parquet", positions=pos[i : i + batch]
            )
            for i in range(0, len(texts), batch)
        ]
    )
    with gc_paused():
        ref = pa.concat_tables(
            [
                extractions_to_table(
                    [engine.extract_text(v) for v in texts[i : i + batch]],
                    ids[i : i + batch],
                    "s.parquet",
                    pos[i : i + batch],
                )
                for i in range(0, len(texts), batch)
            ]
        )
    if not may_fall_back:  # the columnar path really ran (a batch it raises on is read per entry)
        assert engine.text_extractor.columnar.fallbacks == fallbacks
    return new, ref


def _assert_same(new: pa.Table, ref: pa.Table, texts: list) -> None:
    assert new.schema == ref.schema
    for name in ref.schema.names:
        a, b = new.column(name).to_pylist(), ref.column(name).to_pylist()
        diffs = [i for i in range(len(a)) if a[i] != b[i]]
        assert not diffs, (
            f"{name}: {len(diffs)} rows differ, e.g. {texts[diffs[0]]!r}: {a[diffs[0]]!r} != {b[diffs[0]]!r}"
        )


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine.default()


def test_edge_cases_identical(engine: Engine) -> None:
    new, ref = _both_ways(engine, EDGE_CASES, batch=7)
    _assert_same(new, ref, EDGE_CASES)
    # the structured captions really took the columnar path (not everything fell back)
    assert _fast_count(engine, EDGE_CASES) >= 10


def _fast_count(engine: Engine, texts: list) -> int:
    arrow = pa.array([t if isinstance(t, str) else None for t in texts], pa.string())
    return int(read_units(arrow, engine.text_extractor.columnar.items).fast.sum())


def test_safety_corpora_identical(engine: Engine) -> None:
    """Every syntax of both safety corpora (tuned and held-out) reads alike both ways."""
    texts = [
        json.loads(line)["text"]
        for name in ("safety_corpus.jsonl", "safety_heldout.jsonl")
        for line in (DEV_SET.parent / name).read_text(encoding="utf-8").splitlines()
    ]
    new, ref = _both_ways(engine, texts, batch=2_000)
    _assert_same(new, ref, texts)
    assert _fast_count(engine, texts) > 500  # the v3.1 / v3.0 / Danbooru rows really took the columnar path


def test_dev_set_identical(engine: Engine) -> None:
    texts = [json.loads(line)["text"] for line in DEV_SET.read_text(encoding="utf-8").splitlines()]
    new, ref = _both_ways(engine, texts)
    _assert_same(new, ref, texts)


def test_synthetic_identical_with_memo_trimming(engine: Engine, tmp_path: Path, monkeypatch) -> None:
    generate(12_000, 2, tmp_path, "parquet", seed=5, workers=1, chunk_rows=6_000, log=lambda _m: None)
    texts = [t for f in sorted(tmp_path.glob("*.parquet")) for t in pq.read_table(f).column("text").to_pylist()]
    monkeypatch.setattr(columnar, "MEMO_MAX", 300)  # memos fill and are cleared between batches
    path = engine.text_extractor.columnar
    resets = []
    real_reset = path._reset
    monkeypatch.setattr(path, "_reset", lambda: (resets.append(1), real_reset()))
    new, ref = _both_ways(engine, texts, batch=1_000)
    _assert_same(new, ref, texts)
    assert len(resets) >= 5
    assert path.results.n <= 300 + 8 * 1_000
    assert _fast_count(engine, texts) > 0.7 * len(texts)


def _same_records(engine: Engine, texts: list, batch: int) -> int:
    """``Engine.extract_texts`` (``charmeta extract``'s path) against ``extract_text`` one by one:
    the CLI lines must be identical. Returns how many rows took the columnar path."""
    fallbacks = engine.text_extractor.columnar.fallbacks
    for start in range(0, len(texts), batch):
        chunk = texts[start : start + batch]
        records = engine.extract_texts(chunk)
        assert len(records) == len(chunk)
        for i, (value, record) in enumerate(zip(chunk, records)):
            got, want = to_cli_json(record, i), to_cli_json(engine.extract_text(value), i)
            assert got == want, f"{value!r}: {got} != {want}"
    assert engine.text_extractor.columnar.fallbacks == fallbacks
    return _fast_count(engine, texts)


def test_records_identical_to_per_entry(engine: Engine, tmp_path: Path, monkeypatch) -> None:
    """The records of the columnar path equal the per-entry ones on every corpus the tables are
    checked on: edge cases, both safety corpora, the dev set, synthetic captions with the memos
    trimmed between batches (list decisions included: their evidence is not in the rich table)."""
    assert _same_records(engine, EDGE_CASES, batch=7) >= 10
    corpora = [
        json.loads(line)["text"]
        for name in ("safety_corpus.jsonl", "safety_heldout.jsonl", "dev_set.jsonl")
        for line in (DEV_SET.parent / name).read_text(encoding="utf-8").splitlines()
    ]
    assert _same_records(engine, corpora, batch=2_000) > 500
    generate(6_000, 1, tmp_path, "parquet", seed=7, workers=1, chunk_rows=6_000, log=lambda _m: None)
    texts = [t for f in sorted(tmp_path.glob("*.parquet")) for t in pq.read_table(f).column("text").to_pylist()]
    monkeypatch.setattr(columnar, "MEMO_MAX", 300)
    assert _same_records(engine, texts, batch=1_000) > 0.7 * len(texts)
    with_lists = [r for r in engine.extract_texts(texts[:1_000]) if r.attributes.get("Accessories") is not None]
    assert with_lists and all(r.attributes["Accessories"].evidence for r in with_lists)


def test_records_fall_back_whole(engine: Engine, monkeypatch) -> None:
    """A batch the columnar path raises on is read per entry, record for record."""
    texts = ["1girl, solo, ||| general, long hair", "1girl, ||| general, red eyes", "long hair, smile", None]
    want = [to_cli_json(engine.extract_text(t), 0) for t in texts]

    def boom(*_a, **_k):
        raise RuntimeError("boom")

    monkeypatch.setattr(columnar, "read_units", boom)
    before = engine.text_extractor.columnar.fallbacks
    assert [to_cli_json(r, 0) for r in engine.extract_texts(texts)] == want
    assert engine.text_extractor.columnar.fallbacks == before + 1
    assert want[0]["attributes"]["Hair Length"] == "Long" and want[3]["status"] == "invalid"


def test_arrow_input_identical(engine: Engine) -> None:
    """Arrow columns straight from Parquet give the same table as Python lists."""
    texts = [t for t in EDGE_CASES if t is None or isinstance(t, str)]
    ids = [f"r{i}" for i in range(len(texts))]
    from_lists = engine.process_batch(ids, texts, source_shard="s", positions=list(range(len(texts))))
    from_arrow = engine.process_batch(
        pa.array(ids), pa.array(texts, pa.string()), source_shard="s", positions=pa.array(range(len(texts)), pa.int64())
    )
    assert from_arrow.equals(from_lists)
    preset = ["broken line" if i == 2 else None for i in range(len(texts))]
    with_preset = engine.process_batch(
        pa.array(ids),
        pa.array(texts, pa.string()),
        source_shard="s",
        positions=pa.array(range(len(texts)), pa.int64()),
        preset_invalid=pa.array(preset, pa.string()),
    )
    assert with_preset.equals(
        engine.process_batch(ids, texts, source_shard="s", positions=list(range(len(texts))), preset_invalid=preset)
    )
    assert with_preset.column("status").to_pylist()[2] == "invalid"


def test_batch_failure_falls_back_whole(engine: Engine, monkeypatch) -> None:
    """If the columnar path raises on a batch, the per-entry path reads every row of it instead."""
    texts = ["1girl, solo, ||| general, long hair", "1girl, ||| general, red eyes", "long hair, smile"]

    def boom(*_a, **_k):
        raise RuntimeError("boom")

    _, ref = _both_ways(engine, texts)
    monkeypatch.setattr(columnar, "read_units", boom)
    new, _ = _both_ways(engine, texts, may_fall_back=True)
    assert engine.text_extractor.columnar.fallbacks > 0
    _assert_same(new, ref, texts)
    assert new.column("hair_length").to_pylist()[0] == "Long"
    assert new.column("eye_color").to_pylist()[1] == "Red"


def test_caches_stay_bounded(engine: Engine, monkeypatch) -> None:
    """Unique names in every caption must not grow any cache past its limit, whatever N."""
    path = engine.text_extractor.columnar
    monkeypatch.setattr(caption_arrays, "MAX_ITEMS", 500)
    texts = [
        f"1girl, solo, name{i}, show{i}, artist{i}, ||| general, long hair, hair{i % 7} ornament" for i in range(6_000)
    ]
    for i in range(0, len(texts), 1_000):
        table = engine.process_batch([str(j) for j in range(1_000)], texts[i : i + 1_000])
        assert table.column("characters").to_pylist()[0] == [f"name{i}"]
        assert len(engine.text_extractor._item_cache) <= 500 + 4 * 1_000
        assert len(path.items.flags) <= 500 + 4 * 1_000
        assert path.results.n <= columnar.MEMO_MAX
        assert len(path.unit_results.ids) <= max(1024, 2 * len(path.items.u_slot))


def test_array_helpers_match_numpy() -> None:
    """``dense_unique`` / ``run_starts`` / ``first_per_row`` give what ``np.unique`` gives,
    ``take_where`` what boolean indexing gives."""
    import numpy as np

    rng = np.random.default_rng(0)
    for size in (1, 7, 1000):
        values = rng.integers(0, size, 500)
        distinct, inverse = caption_arrays.dense_unique(values, size)
        want_distinct, want_inverse = np.unique(values, return_inverse=True)
        assert distinct.tolist() == want_distinct.tolist() and inverse.tolist() == want_inverse.reshape(-1).tolist()
        rows = np.sort(values)
        assert caption_arrays.run_starts(rows).tolist() == np.unique(rows, return_index=True)[1].tolist()
        mask = rng.random(500) < 0.3
        hits = np.flatnonzero(mask)
        want = np.zeros(500, bool)
        want[hits[np.unique(rows[hits], return_index=True)[1]]] = True
        assert caption_arrays.first_per_row(rows, mask).tolist() == want.tolist()
    assert caption_arrays.run_starts(np.zeros(0, np.int64)).tolist() == []
    a, b = rng.integers(0, 9, 300), rng.integers(0, 9, 300)
    mask = a > b
    assert [x.tolist() for x in caption_arrays.take_where(mask, a, b)] == [a[mask].tolist(), b[mask].tolist()]


def test_null_except_keeps_the_rows_asked_for() -> None:
    """Rows outside the mask become null without a copy, also in a sliced array (its offset)."""
    import numpy as np

    texts = pa.array(["a,b", None, "c", "d,e,f", "g", "h,i", "j"] * 3).slice(3, 13)
    rows = np.arange(len(texts)) % 2 == 0
    out = caption_arrays._null_except(texts, rows)
    assert out.to_pylist() == [v if keep else None for v, keep in zip(texts.to_pylist(), rows)]
    assert out.buffers()[2].address == texts.buffers()[2].address  # the data is shared
