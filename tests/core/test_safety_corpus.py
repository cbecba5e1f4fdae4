"""The safety corpus (contract section 4): every minor marker x every sexual marker x every syntax.

``tests/data/make_safety_corpus.py`` writes both corpora; each label follows from
the contract's rule and the markers the generator put in, never from the engine.
The tuned corpus must be 100% right. The held-out corpus (syntaxes the engine was
not tuned on; ``python tests/data/make_safety_corpus.py --score``) was scored once at
the end: 15 of 732 unsafe entries passed (all one phrasing, ``without any clothes``)
and 16 of 906 controls were excluded (names split by ``;`` or ``::``). One vocabulary
fix followed (nudity phrases in ``safety.json``); since then nothing unsafe passes
there either, which the regression test below holds. The over-exclusions went later
(``TextExtractor``'s ``_run_words``: ``;`` and Midjourney ``::`` weights no longer keep a
name's words from joining): the held-out corpus is now 100% right too.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from charmeta.extractors.text import TextExtractor
from charmeta.parsing import split_caption
from charmeta.safety import SafetyScanner

DATA = Path(__file__).resolve().parents[1] / "data"


def _load(name: str) -> list[dict]:
    return [json.loads(line) for line in (DATA / name).read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def extractor() -> TextExtractor:
    return TextExtractor.default()


def _wrong(extractor: TextExtractor, rows: list[dict]) -> list[tuple[dict, str, str | None]]:
    out = []
    for row in rows:
        ex = extractor.extract(row["text"])
        got = "excluded" if ex.status == "excluded" else "allowed"
        if got != row["label"]:
            out.append((row, ex.status, ex.reason))
    return out


def test_corpus_is_the_generators_output() -> None:
    """The checked-in corpora are what the generator writes (labels were not edited by hand)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_safety_corpus", DATA / "make_safety_corpus.py")
    gen = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(gen)
    tuned = gen.tag_entries(gen.TUNED_SYNTAXES, gen.MINOR, gen.SEXUAL, gen.ADULT, gen.NONSEXUAL)
    tuned += gen.prose_entries(
        gen.PROSE_TUNED, [p for p, _ in gen.PROSE_MINOR], gen.PROSE_ADULT, gen.PROSE_SEXUAL, gen.PROSE_NONSEX
    )
    assert [(r["text"], r["label"]) for r in tuned] == [(r["text"], r["label"]) for r in _load("safety_corpus.jsonl")]


def test_tuned_corpus_is_100_percent_right(extractor: TextExtractor) -> None:
    rows = _load("safety_corpus.jsonl")
    labels = Counter(r["label"] for r in rows)
    assert labels["excluded"] > 4000 and labels["allowed"] > 5000  # both sides are really exercised
    assert len({r["syntax"] for r in rows}) >= 20
    wrong = _wrong(extractor, rows)
    assert not wrong, f"{len(wrong)} wrong, e.g. " + "; ".join(
        f"{r['text']!r} -> {st} ({why})" for r, st, why in wrong[:5]
    )


def test_held_out_corpus_lets_nothing_unsafe_through(extractor: TextExtractor) -> None:
    rows = _load("safety_heldout.jsonl")
    wrong = _wrong(extractor, rows)
    missed = [r["text"] for r, _, _ in wrong if r["label"] == "excluded"]
    assert missed == []
    # names in ';' lists and Midjourney '::' weights ('kid icarus', 'kaitou kid') stay names
    assert wrong == []


@pytest.mark.parametrize(
    "text",
    [
        "1girl, (petite:1.1) (loli:0.9) girl, outdoors",  # issue 12's example: several weighted terms in one slot
        "1girl, (child:1.1) (nude:1.2)",
        "1girl, ((child:1.2) nude), smile",
        "1girl, Little_Girl, Completely_Nude",
        "1girl, child, (rating:explicit:1.1)",
        "1girl, 14 years old, red hair, rating:questionable, smile",  # rating token mid-list, stated age
        "1girl, aged 12, nipples",
        "1girl, (12yo:1.2), nude",
        "1girl, solo, ||| general, 13-year-old, nude",  # stated age in a v3.1 body
        "1girl, solo, 12yo_artist, ||| explicit, smile",  # a stated age inside an unknown header name
        "a nude child standing in a river",
        "a fourteen-year-old girl, naked",
        "1girl child nude outdoors",
        "mature female, teenage, nude",  # two explicit ages conflict; the minor marker still counts
        "score_9, score_8_up, source_anime, rating_explicit, child",
        "1girl, solo, ||| general, half-naked child, smile",
        "1girl; kid; nude; smile",  # the same syntaxes with the marker alone
        "kid::2 nude::1 smile --ar 2:3 --v 6",
        "loli;nude smile outdoors",
    ],
)
def test_unsafe_forms_are_excluded(extractor: TextExtractor, text: str) -> None:
    ex = extractor.extract(text)
    assert ex.status == "excluded", (text, ex.status, ex.reason)
    assert ex.reason and ex.reason.startswith("safety:")


@pytest.mark.parametrize(
    "text",
    [
        "1girl, solo, foo_loli-gami_bar, ||| explicit, nude, mature female",  # a title holding the letters
        "1girl, kaitou kid, ||| explicit, nude",  # a character name, never evidence
        "1girl, kid icarus nude, mature female",
        "1girl; kid icarus; nude; smile",  # ';' lists and Midjourney weights: the name's words still join
        "kaitou kid::2 nude::1 smile --ar 2:3 --v 6",
        "1girl, lolita fashion, nude, mature female",
        "1girl, baby blue eyes, nude, mature female",
        "1girl, red facial markings, child, smile",  # 'facial' alone is not sexual
        "1girl, child, swimsuit, rating:sensitive",  # swimwear and the sensitive rating are not sexual
        "1girl, 25 years old, nude, rating:explicit",
        "a little girl flying a kite in a park",
        "1girl, child, smile\nNegative prompt: nsfw, nude, lowres",  # the negative prompt is never evidence
    ],
)
def test_controls_stay_allowed(extractor: TextExtractor, text: str) -> None:
    ex = extractor.extract(text)
    assert ex.status != "excluded", (text, ex.reason)


def test_scanner_reads_words_not_letters() -> None:
    from charmeta.ontology import get_ontology

    scanner = SafetyScanner(get_ontology())
    kinds = lambda t: sorted({h.kind for h, _ in scanner.scan(t)})  # noqa: E731
    assert kinds("foo_loli-gami_bar") == []
    assert kinds("(petite:1.1) (LOLI:0.9) girl") == ["exclude"]
    assert kinds("aged 17") == ["minor"] and kinds("aged 20") == []  # contract: 13-19 is Teen
    assert kinds("19 years old") == ["minor"] and kinds("30-year-old") == []
    assert kinds("kaitou kid") == [] and kinds("kid") == ["minor"]
    assert kinds("rating:explicit") == ["sexual"] and kinds("rating:general") == []


def test_generation_text_is_kept_and_never_evidence(extractor: TextExtractor) -> None:
    text = (
        "1girl, solo, red hair, <lora:style_v2:0.8>, BREAK blue eyes\n"
        "Negative prompt: 2girls, lowres, child\n"
        "Steps: 28, Sampler: Euler a, CFG scale: 7, Seed: 12345, Size: 512x768"
    )
    ex = extractor.extract(text)
    assert ex.status == "ok" and ex.character_count == 1  # 2girls in the negative prompt is not two characters
    assert ex.value("Hair Color") == "Red" and ex.value("Eye Color") == "Blue"
    assert ex.negative_prompt == "2girls, lowres, child"
    assert ex.parameters == "Steps: 28, Sampler: Euler a, CFG scale: 7, Seed: 12345, Size: 512x768"
    assert split_caption("1girl, <lora:x:0.8>, child BREAK nude AND smile").body == ["1girl", "child", "nude", "smile"]


@pytest.mark.parametrize(
    ("text", "count"),
    [
        ("2girls, multiple_girls, smile", 2),
        ("1girl, 4boys, multiple_boys", 5),
        ("6+girls, smile", 6),
        ("multiple_girls, smile", 2),
        ("1girl, multiple_girls", 2),
        ("6+girls, 1boy", 7),
        ("2girls, 2girls, 1boy", 3),
    ],
)
def test_count_tags(extractor: TextExtractor, text: str, count: int) -> None:
    """Contract section 2: distinct count tags sum; `multiple_*` means 2 or more, `6+` at least 6."""
    assert extractor.extract(text).character_count == count


def test_rating_token_mid_list_keeps_tags(extractor: TextExtractor) -> None:
    """Issue 12 item 4: a `rating:` token inside a plain list does not turn the tags before it into names."""
    ex = extractor.extract("1girl, red hair, green kimono, rating:general, blue eyes")
    assert ex.value("Hair Color") == "Red" and ex.value("Dress") == "Green Kimono" and ex.value("Eye Color") == "Blue"
    assert ex.characters == [] and ex.rating == "general"
    ex = extractor.extract("1girl, blue eyes, hatsune miku, vocaloid, ||| general, smile")
    assert ex.value("Eye Color") == "Blue" and ex.characters == ["hatsune miku"]


def test_columnar_prefilter_never_hides_a_marker() -> None:
    """Items the columnar path keeps *plain* skip the scanner: its regex must match every item the
    scanner finds something in (all comma items of both corpora, normalised as the index reads them)."""
    import re

    from charmeta.ontology import get_ontology, normalize_tag

    scanner = SafetyScanner(get_ontology())
    candidate = re.compile(scanner.candidate_regex())
    items = {
        normalize_tag(piece)
        for name in ("safety_corpus.jsonl", "safety_heldout.jsonl")
        for row in _load(name)
        for piece in row["text"].replace("\n", ",").split(",")
    }
    flagged = [t for t in items if scanner.scan(t)]
    assert len(flagged) > 100
    assert [t for t in flagged if not candidate.search(t)] == []


#: A real A1111 infotext: the example in the docstring of ``parse_generation_parameters``,
#: AUTOMATIC1111/stable-diffusion-webui ``modules/infotext_utils.py`` (the format's reference parser).
A1111_INFOTEXT = (
    "girl with an artist's beret, determined, blue eyes, desert scene, computer monitors, heavy makeup, "
    "by Alphonse Mucha and Charlie Bowater, ((eyeshadow)), (coquettish), detailed, intricate\n"
    "Negative prompt: ugly, fat, obese, chubby, (((deformed))), [blurry], bad anatomy, disfigured, poorly drawn face, "
    "mutation, mutated, (extra_limb), (ugly), (poorly drawn hands), messy drawing\n"
    "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 965400086, Size: 512x512, Model hash: 45dee52b"
)


def test_real_a1111_infotext(extractor: TextExtractor) -> None:
    """Split as A1111's own parser splits it: the negative prompt's `chubby` is no Body Type evidence."""
    ex = extractor.extract(A1111_INFOTEXT)
    assert ex.negative_prompt is not None and ex.negative_prompt.startswith("ugly, fat, obese, chubby")
    assert ex.negative_prompt.endswith("messy drawing")
    assert (
        ex.parameters
        == "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 965400086, Size: 512x512, Model hash: 45dee52b"
    )
    assert ex.value("Body Type") == "Unknown" and ex.value("Eye Color") == "Blue" and ex.value("Gender") == "Female"
    assert ex.status == "ok"
