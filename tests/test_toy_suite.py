import json
import re

import pytest

from eval.suites import load_suite, resolve_suite_path
from surlib.toy import prompts as P
from surlib.toy.prompts import complex_prompt, unknown_words
from surlib.toy.scene import Scene, split_of
from surlib.toy.suite import (SUITE_PATH, SUITES_DIR, TOY_SUITES, main, stale_suites, suite_rows,
                              suite_text, toy_suite_rows)


def test_shipped_toy_suite_is_reproducible_and_held_out():
    shipped = [json.loads(line) for line in SUITE_PATH.read_text().splitlines()]
    assert shipped == toy_suite_rows() == suite_rows("toy")
    assert SUITE_PATH.read_text() == suite_text("toy")  # byte for byte: the shipped models' suite
    assert all(split_of(Scene.from_dict(r["expect"])) == "test" for r in shipped)
    counts = {c: sum(r["category"] == c for r in shipped) for c in ("counting", "color", "action")}
    assert min(counts.values()) >= 20, counts


def test_the_four_suites_are_shipped_up_to_date():
    assert list(TOY_SUITES) == ["toy", "toy_heldout", "toy_spells", "toy_canonical"]
    assert stale_suites() == []
    for name in TOY_SUITES:
        assert (SUITES_DIR / f"{name}.jsonl").read_text() == suite_text(name)


@pytest.mark.parametrize("name", list(TOY_SUITES))
def test_each_suite_loads_by_name_and_pairs_with_toy(name):
    assert resolve_suite_path(name) == SUITES_DIR / f"{name}.jsonl"
    suite = load_suite(name)
    base = suite_rows("toy")
    assert len(suite) == len(base) == 168 and suite.name == name
    prefix = name.replace("_", "-")
    ids = [r.id for r in suite]
    assert len(set(ids)) == len(ids) and ids[0] == f"{prefix}-test-0000" and ids[-1] == f"{prefix}-test-0167"
    for row, ref in zip(suite, base):  # same scenes, order, categories and spells as toy.jsonl
        assert row.category == ref["category"] and row.expect == ref["expect"]
        scene = Scene.from_dict(row.expect)
        assert row.complex_prompt == complex_prompt(scene) == ref["complex_prompt"]
        assert unknown_words(row.prompt) == [], row.prompt
    assert all(set(r) == {"id", "category", "prompt", "complex_prompt", "expect"} for r in suite_rows(name))
    assert suite.stats()["per_category"] == {"counting": 56, "color": 56, "action": 56}


def _frame_regex(template: str) -> re.Pattern:
    parts = re.split(r"(\{\w+\})", template)
    return re.compile("".join(".+" if re.fullmatch(r"\{\w+\}", p) else re.escape(p) for p in parts) + "$")


def _matches_any(prompt: str, templates) -> bool:
    return any(_frame_regex(t).match(prompt) for t in templates)


def test_suite_prompts_use_their_frames_and_words():
    toy, held, spells, canon = (suite_rows(n) for n in TOY_SUITES)
    assert all(_matches_any(r["prompt"], P.SIMPLE_TEMPLATES) for r in toy)
    assert all(_matches_any(r["prompt"], P.HELDOUT_TEMPLATES) for r in held + canon)
    assert all(r["prompt"] == r["complex_prompt"] for r in spells)
    assert len({r["prompt"] for r in held}) > 150  # synonyms are sampled
    assert not {r["prompt"] for r in held} & {r["prompt"] for r in toy}
    used = {t for t in P.HELDOUT_TEMPLATES for r in held if _frame_regex(t).match(r["prompt"])}
    assert used == set(P.HELDOUT_TEMPLATES)
    for r in canon:  # the first synonym of every table
        s = Scene.from_dict(r["expect"])
        for phrase in (P.NUMBER_WORDS[s.count][0], P.COLOR_WORDS[s.color][0],
                       P.KIND_WORDS[s.kind][0][s.count > 1], P.ACTION_WORDS[s.action][0],
                       P.BACKGROUND_WORDS[s.background][0]):
            assert re.search(rf"\b{phrase}\b", r["prompt"], re.IGNORECASE), (phrase, r["prompt"])
    all_ids = [r["id"] for rows in (toy, held, spells, canon) for r in rows]
    assert len(set(all_ids)) == 4 * 168


def test_suite_command_writes_and_checks(tmp_path, capsys):
    assert main(["--check", "--out", str(tmp_path)]) == 1
    assert "stale toy suites" in capsys.readouterr().out
    assert main(["--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{n}.jsonl" for n in TOY_SUITES)
    assert (tmp_path / "toy.jsonl").read_bytes() == SUITE_PATH.read_bytes()
    assert main(["--check", "--out", str(tmp_path)]) == 0
    (tmp_path / "toy_spells.jsonl").write_text("{}\n")
    assert stale_suites(tmp_path) == ["toy_spells"]


def test_unknown_suite_name_is_refused():
    with pytest.raises(ValueError, match="unknown toy suite 'toy_real'; accepted: toy, toy_heldout, "
                                         "toy_spells, toy_canonical"):
        suite_rows("toy_real")
