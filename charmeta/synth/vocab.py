"""Token pools for ``charmeta synth``, built once from the bundled reference data.

Every string a caption can contain (general tag, character, copyright, count
prefix, rating, year, quality...) becomes one integer token with two spellings:
the ordered-tags spelling (``kaga \\(kancolle\\)``, spaces for tags longer than
three characters) and the raw Danbooru spelling (``kaga_(kancolle)``). Captions
are then built as integer arrays with numpy and turned into text in one Arrow
``take`` + ``binary_join``; that is what makes millions of rows cheap.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

import numpy as np

#: Count tags the ordered-tags builder pulls to the front; kept out of the general pool.
COUNT_TAGS = frozenset(
    ["solo", "male_focus", "other_focus"]
    + [f"{n}{k}" for k in ("girl", "boy", "other") for n in ("1",)]
    + [f"{n}{k}s" for k in ("girl", "boy", "other") for n in ("2", "3", "4", "5", "6+")]
    + ["multiple_girls", "multiple_boys", "multiple_others"]
)
#: Meta tags placed in their own slot (after the year), never drawn as general tags.
META_TAGS = ("highres", "absurdres")


def ordered_form(raw: str) -> str:
    """Danbooru tag -> ordered-tags spelling: ``_`` -> space if longer than 3 chars, escape parens."""
    tag = raw.replace("_", " ") if len(raw) > 3 else raw
    return tag.replace("(", "\\(").replace(")", "\\)")


def raw_form(ordered: str) -> str:
    """Ordered-tags spelling -> raw Danbooru tag (``kaga \\(kancolle\\)`` -> ``kaga_(kancolle)``)."""
    return ordered.replace("\\(", "(").replace("\\)", ")").replace(" ", "_")


@dataclass
class Vocab:
    """All token spellings plus the index arrays the caption builder samples from."""

    ordered: list[str] = field(default_factory=list)
    raw: list[str] = field(default_factory=list)
    _index: dict[str, int] = field(default_factory=dict)
    #: General-tag token ids and their cumulative sampling weights (post counts).
    general_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    general_cdf: np.ndarray = field(default_factory=lambda: np.zeros(0))
    #: Per character: token id of the name, of the series, gender code, appearance tokens.
    char_name: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    char_series: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    char_gender: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int8))  # 0 girl 1 boy 2 other 3 unknown
    app_start: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    app_len: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    app_tokens: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    #: Prose needs plain words for the same tags (no escapes).
    plain: list[str] = field(default_factory=list)

    def token(self, ordered: str, raw: str | None = None) -> int:
        """Id of a token, adding it on first sight."""
        tid = self._index.get(ordered)
        if tid is None:
            tid = len(self.ordered)
            self._index[ordered] = tid
            self.ordered.append(ordered)
            self.raw.append(raw if raw is not None else raw_form(ordered))
            self.plain.append(ordered.replace("\\(", "(").replace("\\)", ")"))
        return tid

    def ids(self, words: list[str]) -> np.ndarray:
        """Token ids for fixed words (ratings, years...); the raw spelling uses underscores."""
        return np.array([self.token(w) for w in words], dtype=np.int64)


def _reference_text(name: str) -> str:
    return resources.files("charmeta.data.reference").joinpath(name).read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def load_vocab() -> Vocab:
    """Build the vocabulary from ``wd_selected_tags.csv`` and ``characters_dev.txt`` (cached)."""
    v = Vocab()
    gen_ids: list[int] = []
    gen_w: list[float] = []
    for row in csv.DictReader(_reference_text("wd_selected_tags.csv").splitlines()):
        if row["category"] != "0" or row["name"] in COUNT_TAGS or row["name"] in META_TAGS:
            continue
        gen_ids.append(v.token(ordered_form(row["name"]), row["name"]))
        gen_w.append(float(row["count"]))
    v.general_ids = np.array(gen_ids, dtype=np.int64)
    cdf = np.cumsum(np.array(gen_w))
    v.general_cdf = cdf / cdf[-1]

    names, series, genders, starts, lens, app = [], [], [], [], [], []
    gender_of = {"1girl": 0, "1boy": 1, "1other": 2}
    for line in _reference_text("characters_dev.txt").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 2 or not parts[0] or not parts[1]:
            continue
        rest = [p for p in parts[2:] if p]
        gender = 3
        if rest and rest[0] in gender_of:
            gender = gender_of[rest.pop(0)]
        names.append(v.token(parts[0]))
        series.append(v.token(parts[1]))
        genders.append(gender)
        toks = list(dict.fromkeys(v.token(t) for t in rest))  # drop repeated tags, keep order
        starts.append(len(app))
        lens.append(len(toks))
        app.extend(toks)
    v.char_name = np.array(names, dtype=np.int64)
    v.char_series = np.array(series, dtype=np.int64)
    v.char_gender = np.array(genders, dtype=np.int8)
    v.app_start = np.array(starts, dtype=np.int64)
    v.app_len = np.array(lens, dtype=np.int64)
    v.app_tokens = np.array(app, dtype=np.int64)
    return v
