"""The cleaning part (``charmeta.cleaning.parts``) against its definition, on a partition with the
awkward rows: out of position order, invalid rows, nulls, ``Unknown``, empty and null lists,
two-character rows, aliases and escaped names, raw tag strings, repeated and empty tags.

The part is computed with Arrow / numpy over dictionary codes (issue 14's cost pass); the
reference here is the DuckDB SQL it replaced (row columns and the profile's UNPIVOT +
GROUP BY) and a per-row Python tag split, so a change of meaning fails here."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from charmeta.cleaning import parts as cparts
from charmeta.cleaning.config import load_policy
from charmeta.cleaning.signatures import h32, minhash, sorted_token_lists, token_hashes
from charmeta.contract import ATTRIBUTES, UNKNOWN
from charmeta.duck import sql_ident, sql_string
from charmeta.engine import Engine

TEXTS = [
    "1girl, solo, chen, touhou, brown hair, brown eyes, outdoors, smile",
    "1girl, solo, Chen, touhou, brown_hair, night, smile, smile",  # case, underscore, repeated tag
    "1girl solo chen touhou brown_hair brown_eyes beach",  # raw tag string
    "1girl, solo, saber (fate), blonde hair, green eyes, armor",  # alias -> artoria pendragon (fate)
    "1girl, solo, saber_(fate), blonde_hair, green_eyes, , sky",  # alias + empty tag
    "1girl, solo, kaga \\(kancolle\\), brown hair, brown eyes, explicit",  # escaped name, sexual rating word
    "2girls, chen, kaenbyou rin, touhou, red hair, brown hair",  # two characters: no identity
    "1girl, solo, kazami yuuka, touhou, green hair, red eyes, ||| safe, flower",
    "A girl with green hair standing in a field of flowers.",  # prose
    "",  # no tags
    "1girl, solo, nipples, chen, touhou, brown hair",  # sexual tag
    "1boy, solo, male focus, short hair, black hair, school uniform",  # nameless
    "1girl, solo, chen, touhou, blonde hair, green eyes, long hair",  # chen: a second value
    "1girl, solo, chen, touhou, black hair, red eyes",  # and a third
]


def _reference_rows(con: duckdb.DuckDBPyConnection, src: str) -> pa.Table:
    """The former ``_build`` query: the part's row columns from the validated file, in SQL."""
    policy = load_policy()
    known = [
        f"({sql_ident(a.column)} IS NOT NULL AND {sql_ident(a.column)} <> '{UNKNOWN}')::INT"
        if not a.is_list
        else f"(coalesce(len({sql_ident(a.column)}), 0) > 0)::INT"
        for a in ATTRIBUTES
    ]
    core = [a for a in ATTRIBUTES if a.is_core]
    conf = " + ".join(f"coalesce({sql_ident(a.column + '_confidence')}, 0)" for a in core)
    ratings = ", ".join(sql_string(r) for r in cparts._sexual_ratings())
    name = cparts.fold_name_sql("v.characters[1]", policy)
    scalars = ", ".join(f"v.{sql_ident(a.column)}" for a in ATTRIBUTES if not a.is_list)
    return con.sql(
        f"""
        SELECT v.source_position AS pos, v.id, v.status,
               CASE WHEN len(v.characters) = 1 THEN {name} END AS character,
               ({" + ".join(known)})::TINYINT AS completeness,
               (({conf}) / {len(core)})::FLOAT AS confidence,
               coalesce(v.rating IN ({ratings}), false) AS sexual_rating, {scalars}
        FROM read_parquet({sql_string(src)}) v
        WHERE v.status <> 'invalid' ORDER BY v.source_position
        """
    ).to_arrow_table()


def _reference_profile(con: duckdb.DuckDBPyConnection, rows_in: pa.Table) -> pa.Table:
    """The former profile query (UNPIVOT + GROUP BY + the ``(entries)`` rows, ORDER BY ALL)."""
    policy = load_policy()
    attrs = [a for a in ATTRIBUTES if not a.is_list and a.key in policy.profile_attributes]
    cols = ", ".join(sql_ident(a.column) for a in attrs)
    names = ", ".join(f"{sql_string(a.column)}: {sql_string(a.key)}" for a in attrs)
    statuses = ", ".join(sql_string(s) for s in policy.profile_statuses)
    con.register("rows_in", rows_in)
    return con.sql(
        f"""
        SELECT character, MAP {{{names}}}[col] AS attribute, value, count(*)::BIGINT AS n
        FROM (UNPIVOT (SELECT character, {cols} FROM rows_in
                       WHERE character IS NOT NULL AND status IN ({statuses}))
              ON {cols} INTO NAME col VALUE value)
        WHERE value IS NOT NULL AND value <> '{UNKNOWN}'
        GROUP BY ALL
        UNION ALL
        SELECT character, '(entries)' AS attribute, '' AS value, count(*)::BIGINT AS n FROM rows_in
        WHERE character IS NOT NULL AND status IN ({statuses}) GROUP BY ALL
        ORDER BY ALL
        """
    ).to_arrow_table()


def _python_tags(text: str | None) -> set[str]:
    """The tag-set rule, per row in Python: commas, else whitespace; lower, ``_`` -> space, ``\\``
    dropped, spaces and ``|`` trimmed, empty tags dropped (ASCII texts: Python and Arrow agree)."""
    text = text or ""
    pieces = text.split(",") if "," in text else text.split()
    tags = {p.lower().replace("_", " ").replace("\\", "").strip(" \t\n\r|") for p in pieces}
    return tags - {""}


def _awkward_partition(root: Path) -> None:
    n = len(TEXTS) * 3
    texts = [TEXTS[i % len(TEXTS)] for i in range(n)]
    ids = pa.array([f"r{i:03d}" for i in range(n)])
    pos = pa.array(np.arange(n, dtype=np.int64) * 2)  # gaps between positions
    rich = Engine.default().process_batch(ids, pa.array(texts), source_shard="p0", positions=pos)
    rng = np.random.default_rng(7)
    rich = rich.take(pa.array(rng.permutation(n)))  # out of position order
    status = rich.column("status").to_pylist()
    for i in (1, 5):
        status[i] = "invalid"
    status[2] = "excluded"
    cols = {c: rich.column(c) for c in rich.column_names}
    cols["status"] = pa.array(status, rich.schema.field("status").type)
    hair = cols["hair_color"].to_pylist()
    hair[3], hair[4] = None, UNKNOWN
    cols["hair_color"] = pa.array(hair, rich.schema.field("hair_color").type)
    for a in ATTRIBUTES:  # confidences whose float32 sum differs from a float64 one
        if a.is_core:
            conf = rng.random(n).astype(np.float32)
            cols[a.column + "_confidence"] = pa.array(conf, pa.float32(), mask=rng.random(n) < 0.2)
    chars = cols["characters"].to_pylist()
    chars[7], chars[8] = None, []
    cols["characters"] = pa.array(chars, rich.schema.field("characters").type)
    acc = cols["accessories"].to_pylist()
    acc[9], acc[10] = None, ["hat"]
    cols["accessories"] = pa.array(acc, rich.schema.field("accessories").type)
    validated = pa.table(cols, schema=rich.schema)
    for stage, table in (
        ("validated_records", validated),
        # normalized texts in position order, one row missing (its tags: none)
        ("normalized_records", pa.table({"id": ids, "text": pa.array(texts), "source_position": pos}).slice(1)),
    ):
        (root / stage).mkdir(parents=True, exist_ok=True)
        pq.write_table(table, root / stage / "p0.parquet", row_group_size=10)  # several row groups


def test_part_rows_and_profile_match_their_sql_definition(tmp_path: Path) -> None:
    _awkward_partition(tmp_path)
    cparts.build_part(str(tmp_path), "p0")
    rows_path, prof_path, _ = cparts.part_paths(str(tmp_path), "p0")
    part = pq.read_table(rows_path)
    con = duckdb.connect()
    ref = _reference_rows(con, str(tmp_path / "validated_records" / "p0.parquet"))
    assert part.num_rows == ref.num_rows <= len(TEXTS) * 3 - 2  # the invalid rows left out
    for c in ("pos", "id", "status", "character", "completeness", "confidence"):
        assert part.column(c).to_pylist() == ref.column(c).to_pylist(), c
        assert part.schema.field(c).type == ref.schema.field(c).type, c
    names = set(part.column("character").to_pylist())
    assert {"chen", "artoria pendragon (fate)", "kaga (kancolle)", None} <= names
    assert pq.read_table(prof_path).equals(_reference_profile(con, ref))


def test_part_tag_sets_match_a_per_row_split(tmp_path: Path) -> None:
    _awkward_partition(tmp_path)
    cparts.build_part(str(tmp_path), "p0")
    part = pq.read_table(cparts.part_paths(str(tmp_path), "p0")[0])
    norm = pq.read_table(tmp_path / "normalized_records" / "p0.parquet").to_pydict()
    text_at = dict(zip(norm["source_position"], norm["text"]))
    texts = pa.array([text_at.get(p) for p in part.column("pos").to_pylist()], pa.string())
    rows, hashes, dictionary, idx = token_hashes(texts)
    with_null = pa.concat_arrays([texts, pa.array([None], pa.string())])  # a row without a text: no tags
    chunked = token_hashes(pa.chunked_array([with_null.slice(0, 7), with_null.slice(7)]))  # as the pool task holds them
    assert all(np.array_equal(a, b) for a, b in zip((rows, hashes, idx), (chunked[0], chunked[1], chunked[3])))
    # pairs ordered by (row, 32-bit hash): the order the part persists, without a second sort
    key = rows.astype(np.uint64) << np.uint64(32) | h32(hashes).astype(np.uint64)
    assert bool(np.all(key[1:] >= key[:-1]))
    for i, text in enumerate(texts.to_pylist()):
        got = dictionary.take(pa.array(idx[rows == i])).to_pylist()
        assert sorted(got) == sorted(_python_tags(text)), text
        assert part.column("tokens")[i].as_py() == sorted(set(h32(hashes[rows == i]).tolist()))
    assert part.column("ntok").to_pylist() == [len(_python_tags(t)) for t in texts.to_pylist()]
    sexual = dict(zip(part.column("pos").to_pylist(), part.column("sexual").to_pylist()))

    def flags(text: str) -> set[bool]:
        at = [2 * i for i in range(len(TEXTS) * 3) if TEXTS[i % len(TEXTS)] == text]
        return {sexual[p] for p in at if p in sexual}

    assert flags("1girl, solo, nipples, chen, touhou, brown hair") == {True}  # a sexual tag
    assert flags("1girl, solo, chen, touhou, brown hair, brown eyes, outdoors, smile") == {False}


def test_token_lists_sort_unordered_input_and_minhash_takes_precomputed_hashes() -> None:
    rng = np.random.default_rng(1)
    rows = np.repeat(np.arange(4), 5)
    hashes = rng.integers(0, 2**63, 20, dtype=np.uint64)
    hashes[3] = hashes[1]  # a repeat within row 0
    lists = sorted_token_lists(rows[::-1].copy(), hashes[::-1].copy(), 4)  # rows descending: sorted here
    assert lists.to_pylist() == [sorted(set(h32(hashes[rows == i]).tolist())) for i in range(4)]
    t32 = h32(hashes)
    assert np.array_equal(minhash(rows, hashes, 4, 12), minhash(rows, hashes, 4, 12, t32=t32))
    assert pc.all(pc.equal(pc.list_value_length(lists), pa.array([4, 5, 5, 5], pa.int32()))).as_py()


def test_compiled_signatures_equal_the_numpy_ones(monkeypatch) -> None:
    pytest.importorskip("numba")
    from charmeta.cleaning import compiled as loader
    from charmeta.cleaning import signatures

    rng = np.random.default_rng(5)
    vocab = [f"tag {i}" for i in range(300)] + ["Tag_1", "TAG 2", "|||", "kaga \\(kancolle\\)", " "]
    texts = [", ".join(rng.choice(vocab, int(rng.integers(0, 40)))) for _ in range(400)]
    texts += [", ".join(rng.choice(vocab, 150)), "", None, "a b  c a", "x, x, x"]  # > 64 tags, none, repeats
    texts += [" ".join(t.replace(" ", "_") for t in rng.choice(vocab[:300], 20)) for _ in range(50)]  # raw strings
    codes = signatures.tag_codes(pa.array(texts, pa.string()))
    flag = np.zeros(len(codes.h64), bool)
    flag[::7] = True
    monkeypatch.setattr(signatures, "JIT_MIN_TAGS", 0)
    compiled = signatures.part_signatures(codes, 30, 6, flag)
    assert loader._LOADED[signatures._JIT] is not None  # the compiled loops ran
    monkeypatch.setitem(loader._LOADED, signatures._JIT, None)  # as without numba: the numpy path
    reference = signatures.part_signatures(codes, 30, 6, flag)
    for field in ("ntok", "set_hash", "flagged", "keys"):
        assert np.array_equal(getattr(compiled, field), getattr(reference, field)), field
    assert compiled.tokens.equals(reference.tokens)
    assert compiled.ntok.max() > 64 and compiled.ntok.min() == 0 and compiled.flagged.any()
    empty = signatures.part_signatures(signatures.tag_codes(pa.array([], pa.string())), 30, 6, np.zeros(0, bool))
    assert len(empty.ntok) == 0 and len(empty.tokens) == 0 and empty.keys.shape == (0, 6)


def test_profile_pair_counts_by_bincount_or_sort_agree_with_unique() -> None:
    rng = np.random.default_rng(2)
    keys = rng.integers(0, 5000, 20_000)
    want = np.unique(keys, return_counts=True)
    for space in (5000, 1 << 40):  # a bincount over the key space; a sort past the size limit
        got = cparts._count_pairs(keys, space)
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
