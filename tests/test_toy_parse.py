"""`surlib.toy.parse`: every shipped toy-suite prompt reads back as its row's scene, every prompt
the grammar can write reads back, and what the grammar cannot write is refused (None)."""

import json

import numpy as np
import pytest

from surlib.names import SUITES_DIR
from surlib.toy.parse import parse_narrative, parse_prompt, parse_spell, why_unparsed
from surlib.toy.prompts import complex_prompt, simple_prompt
from surlib.toy.scene import Scene, all_scenes
from surlib.toy.suite import TOY_SUITES


@pytest.mark.parametrize("suite", sorted(TOY_SUITES))
def test_every_row_of_the_shipped_toy_suites_parses_to_its_scene(suite):
    rows = [json.loads(line) for line in (SUITES_DIR / f"{suite}.jsonl").read_text().splitlines()]
    parsed = [parse_prompt(r["prompt"]) for r in rows]
    wrong = [(r["id"], r["prompt"], got) for r, got in zip(rows, parsed) if got != Scene.from_dict(r["expect"])]
    print(f"{suite}: parse rate {1 - len(wrong) / len(rows):.1%} of {len(rows)} rows")
    assert len(rows) == 168 and wrong == []
    # the spell the studio derives is the row's own spell, character for character
    assert [complex_prompt(s) for s in parsed] == [r["complex_prompt"] for r in rows]


def test_everything_the_grammar_writes_reads_back():
    rng = np.random.default_rng(7)
    failed = []
    for scene in all_scenes():  # 480 scenes
        prompts = [simple_prompt(scene, rng, frames="train"), simple_prompt(scene, rng, frames="heldout"),
                   simple_prompt(scene, rng, frames="heldout", canonical=True), simple_prompt(scene),
                   complex_prompt(scene, rng), complex_prompt(scene)]
        failed += [(p, scene) for p in prompts if parse_prompt(p) != scene]
    assert failed == []


def test_case_punctuation_and_articles_do_not_matter():
    scene = Scene(1, "orange", "cat", "sitting", "grass")
    assert parse_prompt("An orange cat sitting on the grass.") == scene
    assert parse_prompt("  AN ORANGE CAT SITTING ON THE GRASS  ") == scene
    assert parse_prompt("on the grass, an orange cat is sitting") == scene  # "{Bg}, {num} {color} {kind} {be} {action}"
    assert parse_prompt("orange, 1 cat, sitting, grass background") == scene  # spell without style tags
    assert parse_prompt("sharp focus, grass background, sitting, 8k, orange, 1 cat") == scene


@pytest.mark.parametrize("prompt", [
    "three white kittens playing on a green carpet",         # unknown words: playing, carpet
    "two red cats sitting on the sofa",                       # unknown: sofa
    "two red cats sitting",                                   # no background
    "red cats sitting on the grass",                          # no count
    "two cats sitting on the grass",                          # no colour
    "two red sitting on the grass",                           # no kind
    "two red blue cats sitting on the grass",                 # two colours
    "two red cats sitting jumping on the grass",              # two actions
    "two red cats sitting on the grass under a clear sky",    # two backgrounds
    "a single red cats sitting on the grass",                 # count 1, plural noun
    "three red cat sitting on the grass",                     # count 3, singular noun
    "there is three red cats sitting on the grass",           # count 3, "is"
    "one robot standing on the grass, they are red",          # one robot, plural pronoun
    "two robots standing on the grass, it is red",            # two robots, singular pronoun
    "a person standing on the grass, it is red",              # a lone person is "the figure"
    "3 red cats sitting on the grass",                        # digits belong to spells, not sentences
    "cats red two grass the on sitting",                      # the words, in no frame
    "masterpiece, 3 robots, red, blue, jumping, white background",   # spell: two colours
    "masterpiece, 3 robots, red, jumping",                           # spell: no background
    "masterpiece, 3 robot, red, jumping, white background",          # spell: count 3, singular tag
    "masterpiece, 3 robots, red, red, jumping, white background",    # spell: a tag twice
    "masterpiece, 3 robots, red, jumping, white background, ,",      # spell: an empty tag
    "masterpiece, 6 robots, red, jumping, white background",         # spell: a count the world lacks
    "",
    "   ",
])
def test_what_the_grammar_cannot_write_is_refused(prompt):
    assert parse_prompt(prompt) is None


@pytest.mark.parametrize("value", [None, 3, ["two red cats"], b"two red cats sitting on the grass"])
def test_non_text_is_refused_not_an_error(value):
    assert parse_prompt(value) is None and parse_spell(value) is None
    with pytest.raises(TypeError, match="a prompt must be a string"):  # the low-level reader is strict
        parse_narrative(value)


def test_why_unparsed_names_the_reason():
    assert why_unparsed("two red cats sitting on the grass") is None
    assert why_unparsed("three white kittens playing on a green carpet") == \
        "the toy world does not know 'playing', 'carpet'"
    assert why_unparsed("two red cats sitting").startswith("it is not a sentence of the toy grammar, which names "
                                                            "one count, colour, kind, action and background")
    assert why_unparsed(" ") == "the prompt is empty"
