"""Vectorised caption builder: one call turns a random generator into a chunk of rows.

Rows are built as integer token arrays with numpy (segments laid side by side
per row, shuffled and de-duplicated with sorts, never a Python loop per tag),
then turned into text with one Arrow ``take`` + ``binary_join``. Only prose
(~10%) and the rare over-long invalid rows are formatted in Python.

Mix per valid row: v3.1 ordered tags, v3.0 ordered tags, raw Danbooru tag
strings and short prose; ~2% name two characters; ~0.5% of rows are invalid
(empty, whitespace, null, wrong type) plus a rare over-long row. Every valid
row carries an artist name derived bijectively from its global row index, so
no two valid texts are equal whatever the seed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from charmeta.synth.vocab import Vocab, load_vocab

FORMATS = ("v31", "v30", "danbooru", "prose")
FORMAT_P = np.array([0.35, 0.30, 0.25, 0.10])
MULTI_P = 0.02
INVALID_P = 0.005
#: Over-long rows are rare on purpose: each is >64k characters and would dominate the bytes.
OVERLONG_P = 0.00005
OVERLONG_CHARS = 70_000

# Invalid kinds (``Chunk.kind``); 0 is a valid row.
VALID, EMPTY, WHITESPACE, NULL, WRONG_TYPE, OVERLONG = range(6)
INVALID_KIND_P = np.array([0.3, 0.25, 0.25, 0.2])  # EMPTY..WRONG_TYPE

#: 64 two-letter syllables: fixed width keeps artist names uniquely decodable.
_SYLLABLES = [c + v for c in "kstnhmyrwgzdbpjf" for v in "aiou"]
_WHITESPACE = ["", " ", "   ", "\t", "\n", " \n\t "]


@dataclass(frozen=True)
class Realism:
    """What makes a synthetic set look like a scraped dataset to the cleaning steps (issue 14).

    ``zipf``: characters drawn with probability ~ 1 / rank^zipf over a fixed shuffled order
    (0 = uniform, the historical default; Danbooru's per-character post counts fall off
    roughly like 1 / rank). ``near_dups``: share of tag rows that repost an earlier row of
    their chunk: tags reordered, one tag dropped or added, or case / underscores changed.
    Missing tags come from the appearance tags each kept with p = 0.7 (always on)."""

    zipf: float = 0.0
    near_dups: float = 0.0


NO_REALISM = Realism()
NEAR_DUP_KINDS = ("reorder", "drop_one", "add_one", "case_underscore")


@dataclass
class Chunk:
    """One block of generated rows: ids, texts (null where invalid-null) and row kinds."""

    ids: pa.Array
    texts: pa.Array
    kind: np.ndarray  # int8 per row, VALID or an invalid kind
    fmt: np.ndarray  # int8 per row, index into FORMATS
    multi: np.ndarray  # bool per row


@dataclass
class Pools:
    """Fixed token ids per slot, shared by all chunks (built once per process)."""

    v31_rating: np.ndarray
    v30_rating: np.ndarray
    rating_p: np.ndarray
    v31_year: np.ndarray
    v30_year: np.ndarray
    year_p: np.ndarray
    v31_quality: np.ndarray
    v30_quality: np.ndarray
    quality_p: np.ndarray
    aesthetic: np.ndarray
    meta: np.ndarray
    single_count: np.ndarray  # by gender code 0..3
    pair_count: np.ndarray  # [g1, g2, variant] -> token
    static_size: int
    ordered: pa.Array
    raw: pa.Array


def _count_token(v: Vocab, tags: list[str]) -> int:
    """One token for a run of count tags, with both spellings (``2girls, multiple girls``)."""
    return v.token(", ".join(t.replace("_", " ") for t in tags), " ".join(tags))


def build_pools(v: Vocab | None = None) -> Pools:
    """Token ids for the fixed slots; adds them to the vocabulary first, then freezes it."""
    v = v or load_vocab()
    single = [["1girl", "solo"], ["1boy", "solo"], ["1other", "solo"], ["solo"]]
    genders = ["girl", "boy", "other", "other"]
    pair = np.zeros((4, 4, 3), dtype=np.int64)
    for a in range(4):
        for b in range(4):
            ga, gb = genders[a], genders[b]
            if ga == gb:
                variants = [[f"2{ga}s"], [f"2{ga}s", f"multiple_{ga}s"], [f"3{ga}s", f"multiple_{ga}s"]]
            else:
                order = sorted([ga, gb], key=genders.index)
                variants = [[f"1{order[0]}", f"1{order[1]}"]] * 2 + [
                    [f"2{order[0]}s", f"1{order[1]}", f"multiple_{order[0]}s"]
                ]
            for k, tags in enumerate(variants):
                pair[a, b, k] = _count_token(v, tags)
    p = Pools(
        v31_rating=v.ids(["||| safe", "||| sensitive", "||| nsfw", "||| explicit, nsfw"]),
        v30_rating=v.ids(
            ["rating: general", "rating: sensitive", "rating: questionable, nsfw", "rating: explicit, nsfw"]
        ),
        rating_p=_norm([1589178, 3994361, 892496, 706509]),  # WD rating tag post counts
        v31_year=v.ids(["oldest", "early", "mid", "recent", "newest"]),
        v30_year=v.ids(["oldest", "early", "mid", "late", "newest"]),
        year_p=_norm([5, 12, 20, 28, 35]),
        v31_quality=v.ids(
            [
                "masterpiece",
                "best quality",
                "great quality",
                "good quality",
                "normal quality",
                "low quality",
                "worst quality",
            ]
        ),
        v30_quality=v.ids(
            [
                "masterpiece",
                "best quality",
                "high quality",
                "medium quality",
                "normal quality",
                "low quality",
                "worst quality",
            ]
        ),
        quality_p=_norm([5, 10, 15, 25, 25, 12, 8]),
        aesthetic=v.ids(["very aesthetic", "aesthetic", "displeasing", "very displeasing"]),
        meta=np.array([v.token("highres"), v.token("absurdres"), v.token("highres, absurdres", "highres absurdres")]),
        single_count=np.array([_count_token(v, s) for s in single], dtype=np.int64),
        pair_count=pair,
        static_size=0,
        ordered=pa.array([]),
        raw=pa.array([]),
    )
    p.static_size = len(v.ordered)
    p.ordered = pa.array(v.ordered, pa.string())
    p.raw = pa.array(v.raw, pa.string())
    return p


def _norm(w: list[float]) -> np.ndarray:
    a = np.asarray(w, dtype=float)
    return a / a.sum()


def _pick(rng: np.random.Generator, tokens: np.ndarray, p: np.ndarray, n: int) -> np.ndarray:
    return tokens[rng.choice(len(tokens), size=n, p=p)]


def artist_names(global_idx: np.ndarray, width: int, rng: np.random.Generator) -> tuple[pa.Array, pa.Array]:
    """Unique artist names (ordered and raw spelling) for global row indices.

    ``(idx * A + B) mod 64**width`` is a bijection, so names never repeat while
    consecutive rows do not get look-alike names; the random word break and
    number suffix keep the bijection (syllables are two letters, suffixes digits).
    """
    mod = 64**width
    u = (global_idx.astype(np.uint64) * np.uint64(0x9E3779B1) + np.uint64(12345)) % np.uint64(mod)
    digits = np.empty((len(u), width), dtype=np.int64)
    for k in range(width):
        digits[:, width - 1 - k] = (u % np.uint64(64)).astype(np.int64)
        u //= np.uint64(64)
    syl = np.array(_SYLLABLES, dtype=object)[digits]
    n = len(global_idx)
    brk = rng.random(n) < 0.25
    suffix = np.where(rng.random(n) < 0.2, rng.integers(1, 999, n).astype(str), "")
    half = width // 2
    left = pa.array(["".join(r) for r in syl[:, :half]])
    right = pa.array(["".join(r) for r in syl[:, half:]])
    sep = pa.array(np.where(brk, " ", ""))
    ordered = pc.binary_join_element_wise(left, sep, right, pa.array(suffix), "")
    raw = pc.replace_substring(ordered, " ", "_")
    return ordered, raw


def _ragged_take(starts: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """Flat indices ``starts[i] + 0..lens[i]-1`` for all i, row-major."""
    total = int(lens.sum())
    seg = np.repeat(np.cumsum(lens) - lens, lens)
    return np.repeat(starts, lens) + (np.arange(total) - seg)


def _interleave(n: int, segments: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Lay per-row segments side by side: returns flat tokens and per-row lengths."""
    row_len = np.zeros(n, dtype=np.int64)
    for lens, _ in segments:
        row_len += lens
    row_start = np.cumsum(row_len) - row_len
    out = np.empty(int(row_len.sum()), dtype=np.int64)
    pos = np.zeros(n, dtype=np.int64)
    for lens, vals in segments:
        seg_start = np.cumsum(lens) - lens
        dest = np.repeat(row_start + pos - seg_start, lens) + np.arange(len(vals))
        out[dest] = vals
        pos += lens
    return out, row_len


def _shuffle_rows(rng: np.random.Generator, toks: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """Random order within each row (one lexsort over the flat array)."""
    row = np.repeat(np.arange(len(lens), dtype=np.int64), lens)
    key = (row << 24) | rng.integers(0, 1 << 24, len(toks), dtype=np.int64)
    return toks[np.argsort(key)]


def _tag_bag(rng: np.random.Generator, v: Vocab, chars: list[np.ndarray], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Appearance tags of the row's characters (each kept with p=0.7) + 4-20 frequency-drawn
    general tags, shuffled and de-duplicated per row."""
    segs = []
    for c in chars:  # c: character index per row, -1 where absent
        present = c >= 0
        lens = np.where(present, v.app_len[np.maximum(c, 0)], 0)
        vals = v.app_tokens[_ragged_take(v.app_start[np.maximum(c, 0)], lens)]
        keep = rng.random(len(vals)) < 0.7
        kept_lens = np.bincount(np.repeat(np.arange(n), lens)[keep], minlength=n)
        segs.append((kept_lens, vals[keep]))
    k = rng.integers(4, 21, n)
    gen = v.general_ids[
        np.searchsorted(v.general_cdf, rng.random(int(k.sum())), side="right").clip(max=len(v.general_ids) - 1)
    ]
    segs.append((k, gen))
    toks, lens = _interleave(n, segs)
    toks = _shuffle_rows(rng, toks, lens)
    row = np.repeat(np.arange(n), lens)
    _, first = np.unique(row * len(v.ordered) + toks, return_index=True)
    keep = np.zeros(len(toks), dtype=bool)
    keep[first] = True
    return toks[keep], np.bincount(row[keep], minlength=n)


def _opt(mask: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A 0-or-1 token segment: ``values[i]`` where ``mask[i]``."""
    return mask.astype(np.int64), values[mask]


def build_chunk(
    rng: np.random.Generator,
    pools: Pools,
    n: int,
    global_start: int,
    shard: int,
    local_start: int,
    total_rows: int,
    realism: Realism = NO_REALISM,
) -> Chunk:
    """Generate ``n`` rows; ``global_start`` (row index over all shards) seeds unique artists."""
    v = load_vocab()
    fmt = rng.choice(len(FORMATS), size=n, p=FORMAT_P).astype(np.int8)
    multi = rng.random(n) < MULTI_P
    nchar = len(v.char_name)
    if realism.zipf > 0:
        c1 = rng.choice(nchar, size=n, p=_zipf_p(nchar, realism.zipf))
    else:
        c1 = rng.integers(0, nchar, n)
    c2 = np.where(multi, (c1 + rng.integers(1, nchar, n)) % nchar, -1)
    width = 4 if total_rows <= 64**4 else 5
    art_o, art_r = artist_names(np.arange(global_start, global_start + n), width, rng)

    is31, is30, israw, isprose = (fmt == i for i in range(4))
    tagged = ~isprose
    bag, bag_len = _tag_bag(rng, v, [c1, c2], n)
    g1 = v.char_gender[c1]
    g2 = v.char_gender[np.maximum(c2, 0)]
    count = np.where(multi, pools.pair_count[g1, g2, rng.integers(0, 3, n)], pools.single_count[g1])
    s1, s2 = v.char_series[c1], v.char_series[np.maximum(c2, 0)]
    second_series = multi & (s1 != s2)
    rating = np.where(
        is31, _pick(rng, pools.v31_rating, pools.rating_p, n), _pick(rng, pools.v30_rating, pools.rating_p, n)
    )
    year_i = rng.choice(5, size=n, p=pools.year_p)
    year = np.where(is31, pools.v31_year[year_i], pools.v30_year[year_i])
    qual_i = rng.choice(7, size=n, p=pools.quality_p)
    qual = np.where(is31, pools.v31_quality[qual_i], pools.v30_quality[qual_i])
    meta = pools.meta[rng.integers(0, 3, n)]
    aest = pools.aesthetic[rng.integers(0, 4, n)]
    artist_tok = pools.static_size + np.arange(n)
    ordered = is31 | is30
    bag_keep = np.repeat(tagged, bag_len)
    toks, lens = _interleave(
        n,
        [
            _opt(tagged, count),
            _opt(tagged, v.char_name[c1]),
            _opt(tagged & multi, v.char_name[np.maximum(c2, 0)]),
            _opt(tagged, s1),
            _opt(tagged & second_series, s2),
            _opt(tagged, artist_tok),
            _opt(ordered, rating),
            (np.where(tagged, bag_len, 0), bag[bag_keep]),
            _opt(ordered, year),
            _opt(is31 & (rng.random(n) < 0.6), meta),
            _opt(ordered, qual),
            _opt(is31 & (rng.random(n) < 0.5), aest),
        ],
    )
    # Raw Danbooru rows: whole tag string shuffled, raw spellings (second half of the pool).
    raw_elem = np.repeat(israw, lens)
    if raw_elem.any():
        sub_lens = np.where(israw, lens, 0)
        toks[raw_elem] = _shuffle_rows(rng, toks[raw_elem], sub_lens[israw])
        toks[raw_elem] += pools.static_size + n
    pool = pa.concat_arrays([pools.ordered, art_o, pools.raw, art_r])
    values = pool.take(pa.array(toks))
    offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int32)
    seps = pa.array(np.where(israw, " ", ", "))
    texts = pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), values), seps)

    if isprose.any():
        where = np.flatnonzero(isprose)
        prose = _prose(rng, v, where, c1, c2, multi, bag, bag_len, art_o)
        texts = pc.replace_with_mask(texts, pa.array(isprose), pa.array(prose, pa.string()))

    if realism.near_dups > 0 and n > 1:
        texts = _near_duplicates(rng, texts, fmt, multi, realism.near_dups)

    kind = np.zeros(n, dtype=np.int8)
    bad = rng.random(n) < INVALID_P
    kind[bad] = 1 + rng.choice(4, size=int(bad.sum()), p=INVALID_KIND_P)
    kind[rng.random(n) < OVERLONG_P] = OVERLONG
    if (kind != VALID).any():
        where = np.flatnonzero(kind != VALID)
        repl = [_invalid_text(int(kind[i]), texts[int(i)].as_py(), rng) for i in where]
        texts = pc.replace_with_mask(texts, pa.array(kind != VALID), pa.array(repl, pa.string()))

    local = pc.utf8_lpad(pc.cast(pa.array(np.arange(local_start, local_start + n)), pa.string()), width=8, padding="0")
    ids = pc.binary_join_element_wise(f"{shard:05d}", local, "-")
    return Chunk(ids=ids, texts=texts, kind=kind, fmt=fmt, multi=multi)


def _zipf_p(nchar: int, s: float) -> np.ndarray:
    """Per-character probabilities ~ 1 / rank^s, ranks in a fixed shuffled order (seed 0)."""
    rank = np.random.default_rng(0).permutation(nchar) + 1
    w = 1.0 / rank.astype(np.float64) ** s
    return w / w.sum()


def _near_duplicates(
    rng: np.random.Generator, texts: pa.Array, fmt: np.ndarray, multi: np.ndarray, share: float
) -> pa.Array:
    """Rows (tag formats only) replaced by a near-duplicate of an earlier row of the chunk; ``fmt``
    and ``multi`` follow the source row. One Python edit per duplicate (~3% of rows)."""
    n = len(texts)
    where = np.flatnonzero((rng.random(n) < share) & (fmt != FORMATS.index("prose")))
    where = where[where > 0]
    if not len(where):
        return texts
    src = (rng.random(len(where)) * where).astype(np.int64)
    src = np.where(fmt[src] == FORMATS.index("prose"), where, src)  # a prose source: keep the row
    keep = src != where
    where, src = where[keep], src[keep]
    kinds = rng.integers(0, len(NEAR_DUP_KINDS), len(where))
    extra = rng.integers(0, 1 << 30, len(where))
    out = []
    for text, k, x in zip(texts.take(pa.array(src)).to_pylist(), kinds.tolist(), extra.tolist()):
        raw = ", " not in text
        tags = text.split(" ") if raw else text.split(", ")
        if k == 0:
            tags = tags[::-1]
        elif k == 1 and len(tags) > 3:
            del tags[1 + x % (len(tags) - 1)]
        elif k == 2:
            tags.insert(x % (len(tags) + 1), "signature")
        else:
            tags = [t.upper() if raw else t.replace(" ", "_").upper() for t in tags]
        out.append((" " if raw else ", ").join(tags))
    fmt[where], multi[where] = fmt[src], multi[src]
    mask = np.zeros(n, bool)
    mask[where] = True  # ``where`` is ascending: replacements line up with the mask's true slots
    return pc.replace_with_mask(texts, pa.array(mask), pa.array(out, pa.string()))


def _invalid_text(kind: int, caption: str, rng: np.random.Generator) -> str | None:
    """The stored text of an invalid row; WRONG_TYPE holds the number as digits, writers
    turn it into the format's own wrong type (JSON number, NUL-bearing string, bad bytes)."""
    if kind == EMPTY:
        return ""
    if kind == WHITESPACE:
        return _WHITESPACE[1 + int(rng.integers(0, len(_WHITESPACE) - 1))]
    if kind == NULL:
        return None
    if kind == WRONG_TYPE:
        return str(int(rng.integers(0, 10**9)))
    return (caption + ", ") * (OVERLONG_CHARS // (len(caption) + 2) + 1)


_PROSE = (
    "{Name} from {series}, {a} {noun} with {t0}, {t1} and {t2}; art by {artist}.",
    "A drawing by {artist} of {name} ({series}): {t0}, {t1}, {t2}.",
    "{A} {noun} with {t0} and {t1}, {t2}. Inspired by {name} of {series}, sketched by {artist}.",
    "{artist} drew {name} wearing {t0}, with {t1} and {t2}.",
    "portrait of {name}, {t0}, {t1}, soft light, by {artist}",
)
_PROSE_MULTI = (
    "{Name} and {name2} from {series}, {pair}: {t0}, {t1} and {t2}; art by {artist}.",
    "{pair_cap} ({name} and {name2}) with {t0} and {t1}, drawn by {artist}.",
)
_QUALIFIER = re.compile(r"\s*\([^)]*\)")


def _bare(name: str) -> str:
    """``kaga (kancolle)`` -> ``kaga``: prose names drop Danbooru's disambiguation suffixes."""
    return _QUALIFIER.sub("", name).strip() or name


_NOUNS = ("girl", "boy", "character", "figure")
_PAIRS = {(0, 0): "two girls", (1, 1): "two boys"}


def _prose(rng, v: Vocab, where, c1, c2, multi, bag, bag_len, artists: pa.Array) -> list[str]:
    """Short English sentences about the row's character(s), built from its own tag bag."""
    starts = np.cumsum(bag_len) - bag_len
    tmpl = rng.integers(0, 1 << 30, len(where))
    art = artists.take(pa.array(where)).to_pylist()
    out = []
    for j, i in enumerate(where):
        tags = [v.plain[t] for t in bag[starts[i] : starts[i] + min(bag_len[i], 3)]]
        tags += ["a calm smile"] * (3 - len(tags))
        name, series = _bare(v.plain[v.char_name[c1[i]]]), v.plain[v.char_series[c1[i]]]
        g = int(v.char_gender[c1[i]])
        noun = _NOUNS[g]
        if multi[i]:
            g2 = int(v.char_gender[c2[i]])
            pair = _PAIRS.get((g, g2), "a girl and a boy" if {g, g2} == {0, 1} else "two characters")
            t = _PROSE_MULTI[tmpl[j] % len(_PROSE_MULTI)]
            out.append(
                t.format(
                    Name=name.capitalize(),
                    name=name,
                    name2=_bare(v.plain[v.char_name[c2[i]]]),
                    series=series,
                    pair=pair,
                    pair_cap=pair.capitalize(),
                    t0=tags[0],
                    t1=tags[1],
                    t2=tags[2],
                    artist=art[j],
                )
            )
        else:
            t = _PROSE[tmpl[j] % len(_PROSE)]
            a = "an" if noun[0] in "aeiou" else "a"
            out.append(
                t.format(
                    Name=name.capitalize(),
                    name=name,
                    series=series,
                    a=a,
                    A=a.capitalize(),
                    noun=noun,
                    t0=tags[0],
                    t1=tags[1],
                    t2=tags[2],
                    artist=art[j],
                )
            )
    return out
