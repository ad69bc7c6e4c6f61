"""What the Compare tab decides, without a browser: the spell behind a prompt (suite rows, the toy
grammar), the vocabulary hint, the eta check, and what reaches `generate_pair`."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from surlib.pipeline import Generation
from surlib.studio.prompts import SuitePrompt, load_suites
from surlib.studio.settings import AppConfig
from surlib.studio.spell import Spell, SpellBook
from surlib.studio.studio import Studio
from surlib.studio.vocabulary import UNKNOWN, highlight, hint_markdown, synonyms_markdown, vocabulary_markdown
from surlib.toy.parse import parse_prompt
from surlib.toy.prompts import unknown_words
from surlib.toy.scene import ACTIONS, BACKGROUNDS, COLORS, KINDS

ROOT = Path(__file__).resolve().parents[1]
TOY_SPELL = "masterpiece, 3 robots, red, jumping, white background, best quality"


# ----------------------------------------------------------------------------- spells
def test_suite_rows_keep_their_spell(tmp_path):
    (tmp_path / "real.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [
        {"id": "r1", "prompt": "A red apple on a table", "complex_prompt": "1 apple, red, table, 8k"},
        {"id": "s1", "simple": "a dog on a sofa", "prompt": "dog, sofa, best quality"},  # SURD's layout
        {"id": "n1", "prompt": "a lone tree"},
    ]))
    rows = load_suites(tmp_path)["real"]
    assert [(r.prompt, r.spell) for r in rows] == [("A red apple on a table", "1 apple, red, table, 8k"),
                                                   ("a dog on a sofa", "dog, sofa, best quality"),
                                                   ("a lone tree", None)]
    book = SpellBook({"real": rows}, toy_grammar=False)
    assert book.find("  a RED apple   on a table ") == Spell("1 apple, red, table, 8k", "suite real, row r1")
    assert book.find("a dog on a sofa").text == "dog, sofa, best quality"
    assert book.find("a lone tree") is None and book.find("three red robots jumping against a white wall") is None
    assert book.why_none("a lone tree") == ("No spell: this prompt is not in a suite, and outside the toy world "
                                            "there is no grammar to derive one, so only baseline and adapter "
                                            "are shown.")


def test_the_shipped_suites_give_every_prompt_its_spell():
    suites = load_suites(ROOT / "assets" / "suites")
    book = SpellBook(suites, toy_grammar=True)
    real = suites["real"]
    assert len(real) > 100 and all(book.find(r.prompt).text == r.spell for r in real)
    for name in ("toy", "toy_heldout", "toy_canonical"):
        for row in suites[name]:
            assert book.find(row.prompt).text == row.spell


def test_toy_grammar_spells_and_their_absence():
    book = SpellBook({}, toy_grammar=True)
    assert book.find("Three red robots jumping against a white wall.") == Spell(TOY_SPELL, "the toy grammar")
    assert book.find("three crimson androids leaping in front of a white wall") == Spell(TOY_SPELL, "the toy grammar")
    assert book.find("two red cats sitting") is None
    assert book.why_none("two red cats sitting").startswith(
        "No spell: it is not a sentence of the toy grammar, which names one count, colour, kind, action and background")
    assert book.why_none("three white kittens playing on a green carpet") == (
        "No spell: the toy world does not know 'playing', 'carpet', and the prompt is not in a suite, so only "
        "baseline and adapter are shown.")
    # a canonical spell is its own spell: no third image, and the note says why
    assert book.find(TOY_SPELL) is None and book.lookup(TOY_SPELL).text == TOY_SPELL
    assert book.why_none(TOY_SPELL).startswith("No third image: the prompt is its own spell")
    # a shuffled spell maps to the canonical one
    assert book.find("best quality, red, white background, 3 robots, jumping").text == TOY_SPELL
    assert book.why_none("") == "No spell: the prompt is empty." and book.find(None) is None


# ----------------------------------------------------------------------------- vocabulary hint
def test_highlight_marks_exactly_the_unknown_words():
    assert highlight("Three WHITE kittens playing on a green carpet!") == [
        ("Three WHITE kittens ", None), ("playing", UNKNOWN), (" on a green ", None), ("carpet", UNKNOWN), ("!", None)]
    assert highlight("three red robots jumping against a white wall") == [
        ("three red robots jumping against a white wall", None)]
    assert highlight("") == [] and highlight(None) == []
    text = "a sofa, a sofa: sofa_bed"
    assert "".join(t for t, _ in highlight(text)) == text  # nothing lost or added
    assert [t for t, label in highlight(text) if label] == ["sofa", "sofa", "sofa", "bed"]


def test_hint_text():
    assert hint_markdown("three white kittens playing on a green carpet") == (
        "2 words the toy model never saw: **playing**, **carpet**. It will most likely ignore them (the prompt "
        "is still generated as typed).")
    assert hint_markdown("a sofa").startswith("1 word the toy model never saw: **sofa**.")
    assert hint_markdown("two red cats sitting on the grass") == \
        "Every word of this prompt is in the toy world's vocabulary."


def test_vocabulary_lists_every_value():
    text = vocabulary_markdown()
    for word in (*COLORS, *KINDS, "one", "five", "standing", "jumping", "sitting", "lying down",
                 "against a white wall", "on a gray background", "under a clear sky", "on a grassy field"):
        assert word in text, word
    assert "*three red robots jumping against a white wall*" in text and f"*{TOY_SPELL}*" in text
    table = synonyms_markdown()
    assert table.count("\n") + 1 == 2 + 5 + len(COLORS) + len(ACTIONS) + len(BACKGROUNDS) + len(KINDS)
    assert "| kind | cat | cat/cats, kitty/kitties, kitten/kittens, feline/felines, tomcat/tomcats |" in table


def test_readme_first_example_prompt_works_on_the_default_model():
    readme = (ROOT / "README.md").read_text()
    first = " ".join(re.search(r'\("([^"]+)"\)', readme).group(1).split())  # the first ("example")
    assert first == "two red cats sitting on the grass"
    assert unknown_words(first) == [] and parse_prompt(first) is not None, first


# ----------------------------------------------------------------------------- the studio
class EtaPipe:
    """Stands in for SURPipeline (eta 0.1): records what each call asked for."""

    class adapter:
        class config:
            eta = 0.1

    def __init__(self):
        self.calls = []

    def generate_pair(self, prompt, seed=0, steps=25, guidance=7.5, negative_prompt=None, **kw):
        self.calls.append(kw)
        images = {"baseline": Image.new("RGB", (8, 8), (255, 0, 0)), "adapter": Image.new("RGB", (8, 8), (0, 0, 255))}
        if "spell" in kw:
            images["spell"] = Image.new("RGB", (8, 8), (0, 255, 0))
        return Generation(images=images, prompt=prompt, seed=seed, steps=steps, guidance=guidance,
                          negative_prompt=negative_prompt, timings={"total_s": 0.01})

    def set_progress_bar_config(self, **kw):
        pass


def _studio(tmp_path, preset="toy", pipe=None, suites_dir=None):
    cfg = AppConfig(preset=preset, data_dir=tmp_path / "data", runs_dir=tmp_path / "runs",
                    suites_dir=suites_dir or tmp_path / "no-suites", session_salt="salt")
    return Studio.from_config(cfg, pipe=pipe or EtaPipe())


def test_compare_passes_eta_and_spell_and_says_which_eta(tmp_path):
    studio = _studio(tmp_path)
    pipe = studio.quick_eval.pipe
    assert studio.default_eta == 0.1 and studio.toy_world
    gen = studio.compare("two cats", "", 3, 2, 4.0)
    assert pipe.calls[-1] == {}  # nothing asked, nothing passed: the plain pair
    gen.timings["wall_s"] = 1.2345
    assert studio.timing_markdown(gen) == ("Generated both images in **1.23 s** (one batched pass, seed 3, "
                                           "2 steps, guidance 4, adapter strength eta 0.1).")
    gen = studio.compare("two cats", "", 3, 2, 4.0, eta=0, spell=TOY_SPELL)
    assert pipe.calls[-1] == {"eta": 0.0, "spell": TOY_SPELL}
    gen.timings["wall_s"] = 0.5
    assert studio.timing_markdown(gen, 0.0) == ("Generated all three images in **0.50 s** (one batched pass, "
                                                "seed 3, 2 steps, guidance 4, adapter strength eta 0).")
    studio.compare("two cats", "", 3, 2, 4.0, eta="0.75")
    assert pipe.calls[-1] == {"eta": 0.75}
    gen.gate = 0.0
    assert studio.timing_markdown(gen, 0.0).endswith(
        " The adapter's gate is **closed** for this prompt: it reads as one the base already renders, so the "
        "adapter passed it unchanged and the two images are the same.")
    gen.gate = 0.9712
    assert studio.timing_markdown(gen, 0.0).endswith(
        " The adapter's gate is open (0.97; closed, it would pass the prompt unchanged).")
    studio.store.close()


@pytest.mark.parametrize("eta", [1.5, -0.1, "strong", float("nan"), True, [0.5]])
def test_a_bad_eta_is_a_clear_error(tmp_path, eta):
    studio = _studio(tmp_path)
    with pytest.raises(ValueError, match=re.escape(f"eta must be a number between 0 and 1, got {eta!r}")):
        studio.compare("two cats", "", 3, 2, 4.0, eta=eta)
    assert studio.quick_eval.pipe.calls == []
    studio.store.close()


def test_prompt_hint_toy_and_other_presets(tmp_path):
    toy = _studio(tmp_path / "toy")
    marks, text = toy.prompt_hint("three red robots jumping against a sofa")
    assert marks[-1] == ("sofa", UNKNOWN) and text.startswith("1 word the toy model never saw: **sofa**.")
    assert "No spell: the toy world does not know 'sofa'" in text
    marks, text = toy.prompt_hint("three red robots jumping against a white wall")
    assert text == ("Every word of this prompt is in the toy world's vocabulary.\n\n"
                    f"Spell `{TOY_SPELL}` (from the toy grammar): **Generate** also shows the base model given it.")
    assert toy.spell_markdown("three red robots jumping against a white wall") == (
        f"**Third image: the base model given the spell** `{TOY_SPELL}` (from the toy grammar): what the adapter "
        "aims to make of the plain prompt.")
    assert toy.spell_markdown("two red cats sitting").startswith("No spell: it is not a sentence of the toy grammar")
    assert toy.prompt_hint("")[1] == "Type a prompt: its words the toy model does not know will be marked."
    assert toy.prompt_hint("sofa " * 200) == ([], "The prompt is 1000 characters long; at most 500 are accepted.")
    tiny = _studio(tmp_path / "tiny", preset="tiny")
    assert not tiny.toy_world and tiny.prompt_hint("three red robots jumping against a sofa") == (
        [], "No spell: this prompt is not in a suite, and outside the toy world there is no grammar to derive "
            "one, so only baseline and adapter are shown.")
    assert tiny.spell_for("three red robots jumping against a white wall") is None  # no toy grammar for tiny
    assert "reads any prompt" in tiny.vocabulary_markdown()
    assert "What the toy model knows" in toy.vocabulary_markdown()
    for s in (toy, tiny):
        s.store.close()


def test_eta_zero_and_the_spell_on_a_real_pipeline(tmp_path, sd1_pipe):
    """One batched pass of three on a tiny SD pipeline: eta 0 gives the baseline pixel for pixel,
    and the third image is the base model given the spell (same noise: the spell's own baseline)."""
    studio = _studio(tmp_path, preset="tiny", pipe=sd1_pipe)
    assert studio.default_eta == 0.25
    gen = studio.compare("a cat", "", 5, 2, 5.0, eta=0, spell="a cat, masterpiece, best quality")
    assert set(gen.images) == {"baseline", "adapter", "spell"}
    base, ada, spell = (np.asarray(gen.images[k], np.int16) for k in ("baseline", "adapter", "spell"))
    assert base.shape == spell.shape and np.array_equal(base, ada)
    ref = np.asarray(sd1_pipe.generate_pair("a cat, masterpiece, best quality", seed=5, steps=2,
                                            guidance=5.0).baseline, np.int16)
    assert np.abs(spell - ref).max() <= 2 and np.abs(spell - base).max() > 10
    full = studio.compare("a cat", "", 5, 2, 5.0)  # the configured eta: the adapter image differs
    assert np.abs(np.asarray(full.adapter, np.int16) - np.asarray(full.baseline, np.int16)).max() > 10
    studio.store.close()
