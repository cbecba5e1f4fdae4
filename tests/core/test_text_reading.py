"""Issue #12 reading rules: prompt items, prose people, hair nouns, ages in words, peoples, garments.

Every case here is new text (not a row of the labeled sets), one rule per case.
"""

from __future__ import annotations

import pytest

from charmeta.engine import Engine


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine.default()


def attrs(engine: Engine, text: str) -> dict:
    ex = engine.extract_text(text)
    assert ex.status == "ok", (ex.status, ex.reason)
    return {k: d.value for k, d in ex.attributes.items()}


# -- item-level routing -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,key,value",
    [
        ("elderly gentleman, top hat", "Gender", "Male"),
        ("elderly gentleman, top hat", "Age", "Elderly"),
        ("brazilian surfer girl, wet hair", "Ethnicity", "Latino"),
        ("brazilian surfer girl, wet hair", "Gender", "Female"),
        ("1girl, cute elf girl", "Gender", "Female"),
        ("old woman, knitting, armchair", "Gender", "Female"),  # a known tag ending in a person noun
        ("teenage boy, bicycle", "Gender", "Male"),
    ],
)
def test_each_prompt_item_is_read_as_a_tag_or_a_phrase(engine: Engine, text: str, key: str, value: str) -> None:
    assert attrs(engine, text)[key] == value


def test_weights_inside_a_prompt_item_are_not_words(engine: Engine) -> None:
    a = attrs(engine, "1girl, (auburn:1.2) wavy hair, (jade) eyes")
    assert a["Hair Color"] == "Red" and a["Hair Style"] == "Wavy" and a["Eye Color"] == "Green"


# -- people in the scene ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "A grandmother braiding her granddaughter's hair by the window.",
        "Two clerks arguing behind a shop counter.",
        "A vet examining a puppy while its owner, a young boy, watches.",
        "A dentist checking a patient's teeth.",
        "A magician on stage as an applauding audience fills the hall.",
        "A bartender serving a customer at a crowded bar.",
    ],
)
def test_people_interacting_are_several_characters(engine: Engine, text: str) -> None:
    assert engine.extract_text(text).multi_character, text


@pytest.mark.parametrize(
    "text",
    [
        "A woman waiting for her son outside a school, long brown hair.",
        "A boy holding a photo of his late grandfather, short black hair.",
        "A girl thinking about her older sister, blue dress.",
        "A man looking at a statue of a queen in a square, grey coat.",
        "A girl dressed as a nurse for a costume party, pink wig.",
        "A woman walking her dog through the snow, red parka.",
    ],
)
def test_people_only_mentioned_are_not_characters(engine: Engine, text: str) -> None:
    assert not engine.extract_text(text).multi_character, text


# -- hair and eyes ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,color",
    [
        ("A girl with a long copper-red braid.", "Red"),
        ("A woman with jet-black curls.", "Black"),
        ("A man with an ash-grey ponytail.", "Grey"),
        ("A girl with hair the colour of ink.", "Black"),
        ("A boy with a buzz cut dyed electric blue.", "Blue"),
    ],
)
def test_hair_nouns_and_compound_colours(engine: Engine, text: str, color: str) -> None:
    assert attrs(engine, text)["Hair Color"] == color


def test_a_compound_eye_colour_is_one_colour(engine: Engine) -> None:
    a = attrs(engine, "A woman with sea-green eyes.")
    assert a["Eye Color"] == "Green"


def test_a_second_colour_in_part_of_the_hair_is_multicolored(engine: Engine) -> None:
    assert attrs(engine, "A girl with black hair with purple tips.")["Hair Color"] == "Multicolored"
    assert attrs(engine, "1girl, blonde hair, blue streaks")["Hair Color"] == "Multicolored"


def test_a_hair_noun_carries_its_length(engine: Engine) -> None:
    assert attrs(engine, "1girl, long ponytail, red hair")["Hair Length"] == "Long"


def test_a_real_word_is_not_a_typo_of_a_colour(engine: Engine) -> None:
    assert attrs(engine, "A man with his hair slicked back, grey suit.").get("Hair Color") == "Unknown"


def test_topknot_is_no_style_but_carries_colour(engine: Engine) -> None:
    a = attrs(engine, "A monk with a white topknot.")
    assert a["Hair Style"] == "Unknown" and a["Hair Color"] == "White" and a["Hair Length"] == "Unknown"


# -- ages and peoples -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,age",
    [
        ("A fourteen-year-old girl with a skateboard.", "Teen"),
        ("A thirty-two-year-old man in a suit.", "Young Adult"),
        ("A woman aged sixty-eight, reading.", "Elderly"),
        ("A man in his early sixties, fishing.", "Middle-Aged"),
        ("A man in his late sixties, fishing.", "Elderly"),
        ("A preteen boy with a kite.", "Child"),
        ("A boy of twelve with a kite.", "Child"),
        ("A woman, about seventy, with a cane.", "Elderly"),
        ("A fifty-something man in a cardigan.", "Middle-Aged"),
        ("A mature woman in a cardigan.", "Middle-Aged"),
    ],
)
def test_ages_in_words(engine: Engine, text: str, age: str) -> None:
    assert attrs(engine, text)["Age"] == age


@pytest.mark.parametrize(
    "text,group",
    [
        ("A Finnish woman with short hair.", "Caucasian"),
        ("A man of Indonesian descent in a batik shirt.", "Asian"),
        ("A Jordanian girl with long hair.", "Middle Eastern"),
        ("A Nepalese boy with a kite.", "South Asian"),
        ("A Chilean man with a guitar.", "Latino"),
        ("An Ugandan woman in a yellow dress.", "African"),
    ],
)
def test_nationality_names_the_group(engine: Engine, text: str, group: str) -> None:
    assert attrs(engine, text)["Ethnicity"] == group


def test_clothing_and_skin_are_not_ethnicity(engine: Engine) -> None:
    a = attrs(engine, "A girl in a korean hanbok with dark skin and short black hair.")
    assert a["Ethnicity"] == "Unknown"


# -- garments ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,dress",
    [
        ("1girl, cassock", "Cassock"),
        ("1boy, green parka, jeans", "Green Parka"),
        ("A man in a blue boilersuit.", "Blue Boilersuit"),
        ("1girl, stewardess, flight attendant uniform", "Flight Attendant Uniform"),
        ("A woman in a grey priest robe.", "Grey Priest Robe"),
        ("1girl, swimsuit, beach", "Swimsuit"),
        ("1boy, yellow baggy hoodie, shorts", "Yellow Hoodie"),
        ("1girl, white blouse, black skirt", "White Blouse"),
        ("1girl, red cape, blue dress", "Blue Dress"),
        ("A knight in a black cloak over silver armor.", "Silver Armor"),
        ("1girl, alternate costume, pirate outfit", "Pirate Outfit"),
        ("1boy, (olive military jacket:1.1), jeans", "Olive Military Jacket"),  # the last garment noun is the head
        ("A woman in a red wool pencil skirt and a cream silk blouse.", "Cream Silk Blouse"),
    ],
)
def test_the_garment_as_named(engine: Engine, text: str, dress: str) -> None:
    assert attrs(engine, text)["Dress"] == dress


@pytest.mark.parametrize(
    "text",
    [
        "1girl, sitting at the bottom of the frame, smile",
        "A woman dressed to impress, smiling at the camera.",
        "1girl, alternate costume, official alternate costume, smile",
        "A woman in a cute outfit, smiling.",
    ],
)
def test_words_in_another_sense_are_not_garments(engine: Engine, text: str) -> None:
    assert attrs(engine, text)["Dress"] == "Unknown"
