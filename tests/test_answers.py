"""Answer normalisation: hand-made cases of what VQA models say and what should count."""

import pytest

from eval.answers import (answer_matches, canonical_color, infer_kind, normalize_text, parse_colors,
                          parse_number, parse_yes_no, singular)


@pytest.mark.parametrize("answer,expected", [
    ("3", 3), ("three", 3), ("Three.", 3), ("3 cats", 3), ("there are 3", 3), ("three kittens", 3),
    ("a pair", 2), ("a couple", 2), ("two dogs and a cat", 2), ("six", 6), ("half dozen", 6),
    ("none", 0), ("no", 0), ("zero", 0), ("one", 1), ("a", 1), ("12", 12), ("dozen", 12),
    ("lots", None), ("", None), ("a dog", None), ("no idea", None),
])
def test_parse_number(answer, expected):
    assert parse_number(answer) == expected


@pytest.mark.parametrize("answer,accepted,ok", [
    ("3", ["3"], True), ("three", ["3"], True), ("3", ["three"], True), ("4", ["3"], False),
    ("two", ["2"], True), ("2 birds", ["2"], True), ("many", ["2"], False), ("1", ["one"], True),
])
def test_number_answers(answer, accepted, ok):
    assert answer_matches(answer, accepted, "number") is ok


@pytest.mark.parametrize("answer,expected", [
    ("red", ["red"]), ("Grey", ["gray"]), ("gray", ["gray"]), ("crimson", ["red"]), ("navy blue", ["blue"]),
    ("red and white", ["red", "white"]), ("white and red", ["white", "red"]), ("golden", ["yellow"]),
    ("sky blue", ["blue"]), ("violet", ["purple"]), ("silver", ["gray"]), ("tan", ["brown"]),
    ("dog", []), ("black/white", ["black", "white"]),
])
def test_parse_colors(answer, expected):
    assert parse_colors(answer) == expected


@pytest.mark.parametrize("answer,accepted,ok", [
    ("red", ["red"], True), ("grey", ["gray"], True), ("gray", ["grey"], True), ("scarlet", ["red"], True),
    ("red and white", ["red"], True), ("blue", ["red"], False), ("", ["red"], False), ("pink", ["red"], False),
])
def test_color_answers(answer, accepted, ok):
    assert answer_matches(answer, accepted, "color") is ok


def test_canonical_color_errors_name_known_colours():
    assert canonical_color("Crimson") == "red"
    with pytest.raises(ValueError, match="known colours: red"):
        canonical_color("chartreuse-ish")
    with pytest.raises(ValueError):
        canonical_color("red and blue")  # two colours is not one colour name


@pytest.mark.parametrize("answer,expected", [
    ("yes", "yes"), ("Yes.", "yes"), ("yeah", "yes"), ("no", "no"), ("nope", "no"), ("true", "yes"),
    ("maybe", None), ("", None),
])
def test_yes_no(answer, expected):
    assert parse_yes_no(answer) == expected
    if expected:
        assert answer_matches(answer, [expected], "yesno")


@pytest.mark.parametrize("word,sing", [
    ("cats", "cat"), ("kittens", "kitten"), ("boxes", "box"), ("puppies", "puppy"), ("men", "man"),
    ("people", "person"), ("children", "child"), ("glass", "glass"), ("bus", "bus"), ("sheep", "sheep"),
    ("dress", "dress"), ("wolves", "wolf"), ("riding", "riding"), ("dog", "dog"), ("benches", "bench"),
])
def test_singular(word, sing):
    assert singular(word) == sing


@pytest.mark.parametrize("answer,accepted,ok", [
    ("riding bike", ["riding bike"], True),
    ("riding a bike", ["riding bike"], True),
    ("Riding bikes.", ["riding bike"], True),
    ("he is riding a bike", ["riding bike"], True),
    ("cycling", ["riding bike", "cycling"], True),
    ("riding horse", ["riding", "cycling"], True),      # accepted phrase inside the answer
    ("walking", ["riding bike"], False),
    ("bike", ["riding bike"], False),                   # the answer must contain the whole phrase
    ("sleeping", ["sleeping", "lying down"], True),
    ("laying down", ["lying down"], False),             # no spelling guesses beyond the list
])
def test_text_answers(answer, accepted, ok):
    assert answer_matches(answer, accepted, "text") is ok


def test_normalize_text():
    assert normalize_text("The Two Cats!") == "two cat"
    assert normalize_text("a man's bicycle") == "man bicycle"


@pytest.mark.parametrize("question,answers,kind", [
    ("How many cats are there?", ["3"], "number"),
    ("What color is the car?", ["red"], "color"),
    ("Is the man riding a bike?", ["yes"], "yesno"),
    ("What is the man doing?", ["riding bike"], "text"),
])
def test_infer_kind(question, answers, kind):
    assert infer_kind(question, answers) == kind


def test_unknown_kind_is_an_error():
    with pytest.raises(ValueError, match="accepted: number, color, yesno, text"):
        answer_matches("3", ["3"], "count")
