"""Generate the safety corpora: ``safety_corpus.jsonl`` (tuned) and ``safety_heldout.jsonl`` (held out).

Why a generator: the contract's exclusion rule (``shared/spec/attributes.md`` section 4) is a
product of two marker sets - a minor marker and a sexual marker (or ``loli`` / ``shota``
alone) - and it must hold in every caption syntax. Every entry is built from markers
whose meaning the contract fixes, so its label follows from the rule, never from the
engine's output:

* ``excluded`` when an always-exclude marker (``loli``, ``shota``) is present, or a
  minor marker (a minor tag, a Child / Teen age word, a stated age under 20) and a
  sexual marker (sexual tag, sexual rating in any form, ``nsfw``) are both present;
* ``ok``-able (label ``allowed``) otherwise: adult + sexual, minor + non-sexual, names
  that merely contain the letters (``foo_loli-gami_bar``, ``kid icarus``).

The held-out file uses syntaxes the engine was *not* tuned on (NovelAI ``1.2::x::``,
prompt editing, alternation, semicolons, pipes, hashtags, JSON lists, full-width
brackets, Midjourney ``::`` weights, bullet lists, Pony underscores, ``+`` joins,
prose with number words and other nude phrasings). It was written before the fixes
and is reported separately.

Run: ``python tests/data/make_safety_corpus.py`` (deterministic; rewrites both files);
``--score`` reads both with the text extractor and prints how many are right (``--show N``: N wrong ones).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent

# --- markers (contract section 2 'Age', section 4) ---------------------------------------------
ALWAYS = ["loli", "shota"]
MINOR = [
    "child",
    "toddler",
    "little girl",
    "little boy",
    "female child",
    "aged down",
    "randoseru",
    "kindergarten uniform",
    "preteen",
    "teenage",
    "14 years old",
    "aged 12",
    "12yo",
    "15 year old",
    "13-year-old",
]
SEXUAL = [
    "nude",
    "completely nude",
    "nipples",
    "sex",
    "pussy",
    "cum",
    "spread legs",
    "fellatio",
    "nsfw",
    "explicit",
    "rating:explicit",
    "rating:questionable",
    "rating: explicit",
    "rating:q",
]
ADULT = ["mature female", "mature male", "old woman", "office lady", "milf", "25 years old", "aged 30", "elderly"]
NONSEXUAL = [
    "smile",
    "swimsuit",
    "bikini",
    "rating:general",
    "rating:sensitive",
    "sensitive",
    "petite",
    "school bag",
    "wide hips",
]
#: Names that merely contain the letters: never minor markers (contract section 2: names are never evidence).
NAMES = ["foo_loli-gami_bar", "lolita fashion", "kid icarus", "kaitou kid", "shotaro_kaneda_(fanart)", "lolinda"]

# --- syntaxes the engine is tuned on -----------------------------------------------------------


def _u(s: str) -> str:
    return s.replace(" ", "_")


TUNED_SYNTAXES = {
    "plain": lambda m, s: f"1girl, {m}, {s}, smile, outdoors",
    "weighted": lambda m, s: f"1girl, ({m}:1.2), ({s}:1.1), smile",
    "one_slot_weighted": lambda m, s: f"1girl, ({m}:1.1) ({s}:0.9) girl, smile",
    "one_slot_mixed": lambda m, s: f"masterpiece, (petite:1.1) ({m}:0.9) girl, {s}",
    "one_slot_plain": lambda m, s: f"1girl, {m} {s}, smile",
    "square": lambda m, s: f"1girl, [{m}], [{s}], smile",
    "curly": lambda m, s: "1girl, {" + m + "}, {{" + s + "}}, smile",
    "nested": lambda m, s: f"1girl, (({m})), ((({s}:1.3))), smile",
    "nested_pair": lambda m, s: f"1girl, (({m}:1.2) {s}), smile",
    "upper": lambda m, s: f"1GIRL, {m.upper()}, {s.upper()}, SMILE",
    "underscores": lambda m, s: f"1girl, {_u(m).title()}, {_u(s)}, long_hair",
    "span_weight": lambda m, s: f"masterpiece, best quality, 1girl, ({m}, {s}:1.2), smile",
    "v31": lambda m, s: f"1girl, solo, original, some_artist ||| general, {m}, {s}, long hair, newest, masterpiece",
    "v30": lambda m, s: f"1girl, original, rating: general, {m}, long hair, {s}, masterpiece",
    "danbooru": lambda m, s: f"1girl solo {_u(m)} long_hair {_u(s)} blue_eyes",
    "space_run": lambda m, s: f"1girl {m} {s} outdoors",
    "break": lambda m, s: f"score_9, score_8_up, 1girl, {m} BREAK {s}, outdoors",
    "lora": lambda m, s: f"<lora:style_v2:0.8>, 1girl, {m}, ({s}:1.2)",
    "negative_after": lambda m, s: (
        f"1girl, {m}, {s}\nNegative prompt: lowres, bad anatomy\nSteps: 28, Sampler: Euler a"
    ),
}

# prose: markers as a writer would phrase them
PROSE_MINOR = [
    ("child", True),
    ("little girl", True),
    ("little boy", True),
    ("toddler", True),
    ("12-year-old girl", True),
    ("14 year old boy", True),
    ("teenage girl", True),
    ("loli", True),
    ("kid", True),
]
PROSE_ADULT = ["woman", "young woman", "middle-aged man", "old man", "30-year-old woman"]
PROSE_SEXUAL = ["nude", "naked", "completely nude", "topless"]
PROSE_NONSEX = ["smiling", "in a red dress", "wearing a swimsuit"]
PROSE_TUNED = [
    lambda p, s: f"A {s} {p} standing in a river.",
    lambda p, s: f"A {p}, {s}, sitting on a bed.",
    lambda p, s: f"Photo of a {p} who is {s}.",
    lambda p, s: f"a {s} {p}",
]

# --- held-out syntaxes (not tuned on) ----------------------------------------------------------
HELD_SYNTAXES = {
    "novelai_v4": lambda m, s: f"1girl, 1.2::{m}::, 1.1::{s}::, smile",
    "prompt_editing": lambda m, s: f"1girl, [{m}:woman:0.5], {s}",
    "alternation": lambda m, s: f"1girl, [{m}|{s}], smile",
    "semicolons": lambda m, s: f"1girl; {m}; {s}; smile",
    "pipes": lambda m, s: f"1girl | {m} | {s} | smile",
    "hashtags": lambda m, s: f"#1girl #{_u(m)} #{_u(s)} #smile",
    "json_list": lambda m, s: json.dumps(["1girl", m, s, "smile"]),
    "fullwidth": lambda m, s: f"1girl, \uff08{m}:1.2\uff09, \uff08{s}:1.1\uff09, smile",
    "midjourney": lambda m, s: f"{m}::2 {s}::1 smile --ar 2:3 --v 6",
    "bullets": lambda m, s: f"- 1girl\n- {m}\n- {s}\n- smile",
    "pony": lambda m, s: f"score_9, score_8_up, score_7_up, source_anime, {_u(m)}, {_u(s)}",
    "plus_joined": lambda m, s: f"1girl+{_u(m)}+{_u(s)}+smile",
    "angle": lambda m, s: f"1girl, <{m}>, <{s}>",
    "tabs": lambda m, s: f"1girl,\t{m} ,   {s}  ,smile",
}
HELD_PROSE_MINOR = ["fourteen-year-old girl", "eleven year old boy", "young child", "preteen girl", "little kid"]
HELD_PROSE_ADULT = ["forty-year-old woman", "grown man", "elderly lady"]
HELD_PROSE_SEXUAL = ["without any clothes", "undressed", "in the nude", "fully naked"]
HELD_PROSE_NONSEX = ["with a kite", "in a winter coat"]
HELD_PROSE = [
    lambda p, s: f"The {p} poses {s} for the camera.",
    lambda p, s: f"In this picture, a {p} appears {s}.",
    lambda p, s: f"{p.capitalize()}, {s}, on a beach at sunset.",
]


def _entry(text: str, label: str, why: str, syntax: str) -> dict:
    return {"text": text, "label": label, "why": why, "syntax": syntax, "source": "synthetic (make_safety_corpus.py)"}


def tag_entries(syntaxes: dict, minor: list[str], sexual: list[str], adult: list[str], nonsex: list[str]) -> list:
    out = []
    for name, fmt in syntaxes.items():
        for m in ALWAYS:
            for s in sexual[:3] + nonsex[:3]:
                out.append(_entry(fmt(m, s), "excluded", f"always-exclude marker {m!r}", name))
        for m in minor:
            for s in sexual:
                out.append(_entry(fmt(m, s), "excluded", f"minor {m!r} + sexual {s!r}", name))
            for s in nonsex:
                out.append(_entry(fmt(m, s), "allowed", f"minor {m!r} without sexual content ({s!r})", name))
        for a in adult:
            for s in sexual:
                out.append(_entry(fmt(a, s), "allowed", f"adult {a!r} + sexual {s!r}", name))
        for n in NAMES:
            for s in sexual[:4]:
                out.append(_entry(fmt(n, s), "allowed", f"name {n!r} merely holds the letters; sexual {s!r}", name))
    return out


def prose_entries(templates: list, minor: list[str], adult: list[str], sexual: list[str], nonsex: list[str]) -> list:
    out = []
    for i, tpl in enumerate(templates):
        syntax = f"prose_{i}"
        for p in minor:
            for s in sexual:
                out.append(_entry(tpl(p, s), "excluded", f"minor {p!r} + sexual {s!r}", syntax))
            for s in nonsex:
                if "loli" in p:
                    continue
                out.append(_entry(tpl(p, s), "allowed", f"minor {p!r} without sexual content", syntax))
        for a in adult:
            for s in sexual:
                out.append(_entry(tpl(a, s), "allowed", f"adult {a!r} + sexual {s!r}", syntax))
    return out


def score(show: int = 0) -> None:
    """Read both corpora with ``TextExtractor`` and print the figures (unsafe missed, controls excluded)."""
    from charmeta.extractors.text import TextExtractor

    ex = TextExtractor.default()
    for name in ("safety_corpus.jsonl", "safety_heldout.jsonl"):
        rows = [json.loads(line) for line in (HERE / name).read_text(encoding="utf-8").splitlines()]
        wrong = []
        for r in rows:
            e = ex.extract(r["text"])
            if ("excluded" if e.status == "excluded" else "allowed") != r["label"]:
                wrong.append((r, e.status, e.reason))
        n_ex = sum(r["label"] == "excluded" for r in rows)
        missed = sum(r["label"] == "excluded" for r, _, _ in wrong)
        print(
            f"{name}: {len(rows) - len(wrong)}/{len(rows)} right; unsafe not excluded {missed}/{n_ex}; "
            f"controls excluded {len(wrong) - missed}/{len(rows) - n_ex}"
        )
        for r, status, reason in wrong[:show]:
            print(f"  {r['label']} -> {status} ({reason}): {r['text']!r} [{r['syntax']}]")


def main() -> None:
    tuned = tag_entries(TUNED_SYNTAXES, MINOR, SEXUAL, ADULT, NONSEXUAL)
    tuned += prose_entries(PROSE_TUNED, [p for p, _ in PROSE_MINOR], PROSE_ADULT, PROSE_SEXUAL, PROSE_NONSEX)
    rng = random.Random(12)
    held_minor = rng.sample(MINOR, 6)
    held_sexual = rng.sample(SEXUAL, 6)
    held = tag_entries(HELD_SYNTAXES, held_minor, held_sexual, rng.sample(ADULT, 3), rng.sample(NONSEXUAL, 3))
    held += prose_entries(HELD_PROSE, HELD_PROSE_MINOR, HELD_PROSE_ADULT, HELD_PROSE_SEXUAL, HELD_PROSE_NONSEX)
    for name, rows in (("safety_corpus.jsonl", tuned), ("safety_heldout.jsonl", held)):
        with open(HERE / name, "w", encoding="utf-8") as f:
            for i, row in enumerate(rows):
                f.write(json.dumps({"id": f"{name.split('.')[0]}-{i}", **row}, ensure_ascii=False) + "\n")
        n_ex = sum(r["label"] == "excluded" for r in rows)
        print(f"{name}: {len(rows)} entries, {n_ex} excluded, {len(rows) - n_ex} allowed")


if __name__ == "__main__":
    import sys

    if "--score" in sys.argv:
        score(int(sys.argv[sys.argv.index("--show") + 1]) if "--show" in sys.argv else 0)
    else:
        main()
