"""Each resolution rule of the contract (section 2), on tag captions."""

from __future__ import annotations

import pytest

from charmeta.engine import Engine


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine.default()


def attrs(engine: Engine, text: str) -> dict:
    ex = engine.extract_text(text)
    assert ex.status != "invalid", ex.reason
    return {k: d.value for k, d in ex.attributes.items()}


# -- parsing shapes -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "1girl, solo, kagamine rin, vocaloid, ||| safe, blue eyes, blonde hair, short hair, newest, highres, best quality",
        "1girl, solo, kagamine rin, vocaloid, rating: general, blue eyes, blonde hair, short hair, newest, high quality",
        "1girl blue_eyes blonde_hair short_hair kagamine_rin vocaloid solo",
        "1girl,blue_eyes,blonde_hair,short_hair",
        "1GIRL, Blue Eyes, BLONDE HAIR, Short_Hair",
        " 1girl ,, blue eyes , ,blonde hair,   short hair,, blue eyes, 1girl ",
        "masterpiece, (1girl:1.1), [blue eyes], ((blonde hair)), (short hair:1.3)",
    ],
)
def test_every_caption_shape_reads_the_same(engine: Engine, text: str) -> None:
    a = attrs(engine, text)
    assert (a["Gender"], a["Eye Color"], a["Hair Color"], a["Hair Length"]) == ("Female", "Blue", "Blonde", "Short")


def test_rating_year_quality_words_are_not_attributes(engine: Engine) -> None:
    ex = engine.extract_text(
        "1girl, ||| explicit, nsfw, old, mid, masterpiece, very aesthetic, highres, absurdres, 2019"
    )
    assert ex.rating == "explicit"
    assert ex.value("Age") == "Unknown"  # bare `old` is a period word
    assert all(d.value == "Unknown" for k, d in ex.attributes.items() if k not in ("Gender",))


def test_raw_danbooru_rating_field(engine: Engine) -> None:
    assert engine.extract_text("1girl child", rating="e").status == "excluded"
    assert engine.extract_text("1girl child", rating="g").status == "ok"


def test_escaped_parentheses_and_emoticons(engine: Engine) -> None:
    ex = engine.extract_text("1girl, kaga \\(kancolle\\), kantai collection, ||| safe, ^_^, smile, brown hair")
    assert ex.characters == ["kaga (kancolle)"]
    assert ex.copyrights == ["kantai collection"]
    assert ex.value("Facial Expression") == "Smiling"
    assert ex.value("Hair Color") == "Brown"


def test_names_are_never_evidence(engine: Engine) -> None:
    ex = engine.extract_text("1boy, solo, kaitou kid, meitantei conan, ||| safe, white suit, top hat")
    assert ex.value("Age") == "Unknown"
    ex = engine.extract_text("1girl, solo, meruto \\(school uniform\\), original, ||| safe, bikini, swimsuit")
    assert ex.value("Age") == "Unknown"
    assert "Uniform" not in ex.value("Dress")
    ex = engine.extract_text("1girl meruto_(school_uniform) bikini solo")
    assert ex.value("Age") == "Unknown" and ex.value("Dress") == "Bikini"


# -- aliases and colors -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "tag,value",
    [
        ("blond_hair", "Blonde"),
        ("silver_hair", "Grey"),
        ("light_brown_hair", "Brown"),
        ("light_blue_hair", "Blue"),
        ("dark_blue_hair", "Blue"),
        ("light_purple_hair", "Purple"),
        ("gray hair", "Grey"),
        ("aqua_hair", "Aqua"),
    ],
)
def test_hair_color_aliases(engine: Engine, tag: str, value: str) -> None:
    assert attrs(engine, f"1girl, {tag}")["Hair Color"] == value


@pytest.mark.parametrize(
    "marker",
    [
        "multicolored_hair",
        "two-tone_hair",
        "gradient_hair",
        "streaked_hair",
        "split-color_hair",
        "colored_inner_hair",
        "rainbow_hair",
    ],
)
def test_multicolored_markers(engine: Engine, marker: str) -> None:
    ex = engine.extract_text(f"1girl, black hair, {marker}")
    assert ex.value("Hair Color") == "Multicolored"
    assert not ex.attributes["Hair Color"].conflict


def test_two_hair_colors_are_multicolored_and_conflicting(engine: Engine) -> None:
    ex = engine.extract_text("1girl, pink hair, blonde hair")
    d = ex.attributes["Hair Color"]
    assert d.value == "Multicolored" and d.conflict and d.confidence < 0.9


@pytest.mark.parametrize(
    "text,value",
    [
        ("gold eyes", "Yellow"),
        ("amber eyes", "Yellow"),
        ("yellow eyes", "Yellow"),
        ("heterochromia, blue eyes", "Heterochromia"),
        ("red eyes, blue eyes", "Heterochromia"),
    ],
)
def test_eye_colors(engine: Engine, text: str, value: str) -> None:
    assert attrs(engine, f"1girl, {text}")["Eye Color"] == value


def test_no_eye_color_tag_is_unknown(engine: Engine) -> None:
    assert attrs(engine, "1girl, closed eyes, glowing eyes, half-closed eyes, covered eyes")["Eye Color"] == "Unknown"


@pytest.mark.parametrize(
    "tag",
    [
        "hair_between_eyes",
        "blonde_pubic_hair",
        "facial_hair",
        "hand_in_own_hair",
        "closed_eyes",
        "half-closed_eyes",
        "glowing_eyes",
        "covered_eyes",
        "hair_over_one_eye",
    ],
)
def test_tags_about_something_else_never_count(engine: Engine, tag: str) -> None:
    a = attrs(engine, f"1girl, {tag}")
    assert a["Hair Color"] == a["Eye Color"] == a["Hair Style"] == a["Hair Length"] == "Unknown"


# -- length and style --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,value",
    [
        ("short hair", "Short"),
        ("very short hair", "Short"),
        ("medium hair", "Medium"),
        ("very long hair", "Long"),
        ("absurdly long hair", "Long"),
        ("bald", "Bald"),
        ("bob cut", "Short"),
        ("pixie cut", "Short"),
        ("buzz cut", "Short"),
        ("bob cut, long hair", "Long"),
        ("short hair, long hair", "Unknown"),
    ],
)
def test_hair_length(engine: Engine, text: str, value: str) -> None:
    assert attrs(engine, f"1girl, {text}")["Hair Length"] == value


def test_short_and_long_conflict(engine: Engine) -> None:
    d = engine.extract_text("1girl, short hair, long hair").attributes["Hair Length"]
    assert d.value == "Unknown" and d.conflict


@pytest.mark.parametrize(
    "text,value",
    [
        ("braid, ponytail", "Ponytail"),
        ("twin drills, two side up", "Half Up"),
        ("low twintails", "Twintails"),
        ("high ponytail", "Ponytail"),
        ("braided ponytail", "Ponytail"),
        ("single hair bun", "Bun"),
        ("hair bun", "Bun"),
        ("twin drills", "Drill Hair"),
        ("one side up", "Half Up"),
        ("spiked hair, messy hair", "Spiky"),
        ("twin braids, twintails", "Twin Braids"),
        ("double bun, hair bun", "Double Bun"),
        ("ahoge, blunt bangs, sidelocks, hair ornament", "Unknown"),
    ],
)
def test_hair_style_order_and_families(engine: Engine, text: str, value: str) -> None:
    assert attrs(engine, f"1girl, {text}")["Hair Style"] == value


# -- body, ethnicity, skin -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,value",
    [
        ("skinny", "Slim"),
        ("petite", "Petite"),
        ("toned", "Athletic"),
        ("muscular female", "Muscular"),
        ("wide hips", "Curvy"),
        ("chubby", "Plump"),
        ("large breasts, flat chest", "Unknown"),
    ],
)
def test_body_type(engine: Engine, text: str, value: str) -> None:
    assert attrs(engine, f"1girl, {text}")["Body Type"] == value


def test_ethnicity_only_from_explicit_words(engine: Engine) -> None:
    a = attrs(engine, "1girl, japanese clothes, chinese clothes, indian style, dark skin, dark-skinned female, tan")
    assert a["Ethnicity"] == "Unknown"
    assert a["Skin Tone"] == "Dark"
    assert attrs(engine, "1girl, asian")["Ethnicity"] == "Asian"
    assert attrs(engine, "1girl, latina")["Ethnicity"] == "Latino"
    assert attrs(engine, "1girl, pale skin")["Skin Tone"] == "Pale"


# -- age and gender -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,value",
    [
        ("child", "Child"),
        ("aged down", "Child"),
        ("randoseru", "Child"),
        ("kindergarten uniform", "Child"),
        ("school uniform", "Teen"),
        ("serafuku", "Teen"),
        ("gakuran", "Teen"),
        ("office lady", "Young Adult"),
        ("mature female, school uniform", "Middle-Aged"),
        ("milf", "Middle-Aged"),
        ("old woman", "Elderly"),
        ("old man", "Elderly"),
        ("old", "Unknown"),
        ("", "Unknown"),
    ],
)
def test_age(engine: Engine, text: str, value: str) -> None:
    assert attrs(engine, f"1girl, {text}")["Age"] == value


@pytest.mark.parametrize(
    "text,value",
    [
        ("1girl", "Female"),
        ("1boy", "Male"),
        ("1boy, male focus", "Male"),
        ("male focus", "Male"),
        ("1girl, otoko no ko", "Male"),
        ("1other, non-binary", "Non-binary"),
        ("agender", "Non-binary"),
        ("1other", "Unknown"),
        ("solo, blue eyes", "Unknown"),
    ],
)
def test_gender(engine: Engine, text: str, value: str) -> None:
    assert attrs(engine, text)["Gender"] == value


# -- character count ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,count,multi",
    [
        ("1girl, solo", 1, False),
        ("2girls", 2, True),
        ("1girl, 1boy", 2, True),
        ("1girl, 1girl, 1girl", 1, False),
        ("multiple girls", 2, True),
        ("6+girls", 6, True),
        ("solo", 1, False),
        ("2girls, solo focus", 2, True),
        ("1girl, 1other", 2, True),
        ("blue eyes", None, False),
    ],
)
def test_character_count(engine: Engine, text: str, count: int | None, multi: bool) -> None:
    ex = engine.extract_text(text)
    assert ex.character_count == count
    assert ex.multi_character is multi
    assert (ex.status == "multi_character") is multi


def test_unknown_count_lowers_confidence(engine: Engine) -> None:
    with_count = engine.extract_text("1girl, blue eyes").attributes["Eye Color"].confidence
    without = engine.extract_text("blue eyes, long hair").attributes["Eye Color"].confidence
    assert without < with_count


# -- dress --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,value",
    [
        ("kimono, green kimono", "Green Kimono"),
        ("black dress, dress", "Black Dress"),
        ("nude", "None"),
        ("completely nude, school uniform", "None"),
        ("shirt, skirt, school uniform", "School Uniform"),
        ("business suit, pink suit", "Pink Business Suit"),
        ("maid, maid headdress, maid apron", "Maid Uniform"),
        ("china dress, blue china dress", "Blue China Dress"),
        ("one-piece swimsuit, white one-piece swimsuit", "White One-Piece Swimsuit"),
        ("white shirt, black skirt", "White Shirt"),
        ("track suit, sportswear", "Track Suit"),
        ("smile", "Unknown"),
    ],
)
def test_dress(engine: Engine, text: str, value: str) -> None:
    assert attrs(engine, f"1girl, {text}")["Dress"] == value


def test_dress_style_follows_garment(engine: Engine) -> None:
    a = attrs(engine, "1girl, yukata")
    assert a["Dress Style"] == "Traditional"
    assert attrs(engine, "1girl, nude")["Dress Style"] == "Nude"


def test_optional_lists(engine: Engine) -> None:
    a = attrs(
        engine,
        "1girl, glasses, witch hat, hair ribbon, fox ears, fox tail, scar on cheek, facial tattoo, no hat, freckles",
    )
    assert a["Accessories"] == ["Glasses", "Hat", "Hair Ribbon"]
    assert a["Features"] == ["Fox Ears", "Tail", "Freckles"]
    assert a["Scars"] == ["Face Scar"]
    assert a["Tattoos"] == ["Facial Tattoo"]


# -- safety ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,excluded",
    [
        ("1girl, solo, ||| safe, loli", True),
        ("1boy, solo, rating: general, shota", True),
        ("1girl, loli, ||| safe", True),
        ("1girl, ||| explicit, nsfw, child", True),
        ("1girl, ||| nsfw, child", True),
        ("1girl, aged down, ||| questionable", True),
        ("1girl, ||| nsfw, school uniform", True),
        ("1girl, child, nude", True),
        ("1girl, child, nipples", True),
        ("1girl, child, ||| sensitive", False),
        ("1girl, child, swimsuit, wide hips", False),
        ("1girl, mature female, ||| explicit, nsfw", False),
        ("1girl, ||| explicit, nsfw, blue eyes", False),
    ],
)
def test_safety_rule(engine: Engine, text: str, excluded: bool) -> None:
    ex = engine.extract_text(text)
    assert (ex.status == "excluded") is excluded
    if excluded:
        assert ex.reason and ex.reason.startswith("safety:")


def test_excluded_beats_multi_character(engine: Engine) -> None:
    assert engine.extract_text("2girls, loli").status == "excluded"


def test_cover_danbooru_vocabulary_beyond_dev_set(engine: Engine) -> None:
    """Tags the dev set never uses still resolve (expanded from the WD vocabulary)."""
    a = attrs(
        engine,
        "1girl, hat with ears, beret, sleeveless dress, red sleeveless dress, dog ears, wolf tail, low ponytail, light green hair",
    )
    assert a["Hair Color"] == "Green"
    assert a["Hair Style"] == "Ponytail"
    assert "Dress" in a["Dress"]
    assert "Dog Ears" in a["Features"]


def test_two_eye_colors_are_heterochromia_without_conflict(engine: Engine) -> None:
    d = engine.extract_text("1girl, red eyes, blue eyes").attributes["Eye Color"]
    assert d.value == "Heterochromia" and not d.conflict


@pytest.mark.parametrize(
    "text,value",
    [
        ("print bikini", "Print Bikini"),  # a pattern word belongs to the garment (contract section 5)
        ("bikini top only, red bikini", "Red Bikini Top"),  # the garment as named, its colour kept
        ("open jacket, black jacket", "Black Jacket"),
        ("open coat", "Coat"),
        ("collared dress, black dress", "Black Collared Dress"),
    ],
)
def test_garment_variants_from_the_vocabulary(engine: Engine, text: str, value: str) -> None:
    assert attrs(engine, f"1girl, {text}")["Dress"] == value


def test_any_tag_with_a_loli_word_excludes(engine: Engine) -> None:
    assert engine.extract_text("1girl, ||| safe, oppai loli").status == "excluded"
