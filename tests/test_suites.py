"""Suites: the shipped real-world suite's coverage, the toy schema, and validation errors."""

import json

import pytest

from eval.suites import SUITES_DIR, load_suite, parse_rows
from surlib.names import CATEGORIES


def _row(**kw):
    row = {"id": "r1", "category": "counting", "prompt": "Three cats on a sofa",
           "expect": {"object": "cat", "count": 3},
           "questions": [{"question": "How many cats are there?", "answers": ["3"], "kind": "number"}]}
    row.update(kw)
    return row


def _write(tmp_path, rows, name="s.jsonl"):
    p = tmp_path / name
    p.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return p


def test_real_suite_coverage():
    suite = load_suite("real", require_questions=True)
    s = suite.stats()
    assert all(s["per_category"][c] >= 30 for c in CATEGORIES), s["per_category"]
    assert set(range(1, 7)) <= set(s["counts"])
    assert len(s["colors"]) >= 10
    assert len(s["actions"]) >= 15
    assert len({r.prompt for r in suite}) == len(suite)  # no repeated prompts
    for r in suite:
        assert r.questions and r.object
        if r.category == "counting":
            assert r.questions[0].answers == (str(r.expect["count"]),)
        if r.category == "color":
            assert r.questions[0].kind == "color"


def test_paper_example_is_in_the_real_suite():
    prompts = {r.prompt for r in load_suite("real")}
    assert "Three fluffy white kittens playing with a ball of yarn on a green carpet" in prompts
    assert "A man riding a bicycle" in prompts


def test_toy_schema_rows_load(tmp_path):
    """Rows as the toy world's test split will produce them: expectation with count/color/kind/action,
    no VQA questions needed by the toy judge."""
    from surlib.toy.prompts import complex_prompt, simple_prompt
    from surlib.toy.scene import scenes as toy_scenes

    scenes = toy_scenes("test")[:6]
    rows = []
    for i, sc in enumerate(scenes):
        cat = CATEGORIES[i % 3]
        rows.append({"id": f"toy-{i:04d}", "category": cat, "prompt": simple_prompt(sc),
                     "complex_prompt": complex_prompt(sc), "expect": sc.to_dict()})
    suite = load_suite(_write(tmp_path, rows))
    assert len(suite) == 6 and suite.rows[0].object == scenes[0].kind
    assert suite.rows[1].target == scenes[1].color
    with pytest.raises(ValueError, match="VQA judge needs a 'questions' list"):
        suite.check_questions()


def test_shipped_toy_suite_if_present():
    path = SUITES_DIR / "toy.jsonl"
    if not path.is_file():
        pytest.skip("assets/suites/toy.jsonl is generated later from the toy world's test split")
    suite = load_suite(path)
    assert all(set(r.expect) >= {"count", "color", "action", "kind"} for r in suite)


@pytest.mark.parametrize("change,message", [
    (dict(category="shape"), "unknown category 'shape'; accepted: counting, color, action"),
    (dict(expect=None), "missing 'expect' for a counting row"),
    (dict(expect={"object": "cat"}), "needs 'count'"),
    (dict(expect={"count": 3}), "must name the object"),
    (dict(category="color", expect={"object": "car", "color": "chartreuse-ish"}), "known colours"),
    (dict(expect={"object": "cat", "count": "three"}), "integer >= 0"),
    (dict(prompt=""), "'prompt'"),
    (dict(id="bad id/x"), "'id' must be"),
    (dict(questions=[{"question": "How many?", "answers": []}]), "accepted 'answers'"),
    (dict(questions=[{"question": "How many?", "answers": ["3"], "kind": "count"}]), "unknown answer kind"),
    (dict(promt="typo"), "unknown key(s) ['promt']"),
])
def test_invalid_rows_name_the_line_and_the_rule(tmp_path, change, message):
    rows = [_row(id="ok-1"), _row(**change)]
    path = _write(tmp_path, rows)
    with pytest.raises(ValueError) as e:
        load_suite(path)
    text = str(e.value)
    assert f"{path}:2" in text, text
    assert message in text, text


def test_duplicate_id_and_bad_json(tmp_path):
    path = _write(tmp_path, [_row(id="a"), "{not json", _row(id="a")])
    with pytest.raises(ValueError) as e:
        load_suite(path)
    text = str(e.value)
    assert "2 problem(s)" in text
    assert f"{path}:2: not valid JSON" in text
    assert f"{path}:3: duplicate id 'a' (first on line 1)" in text


def test_missing_questions_for_vqa(tmp_path):
    path = _write(tmp_path, [_row(id="a"), _row(id="b", questions=None)])
    assert len(load_suite(path)) == 2  # fine without a VQA judge
    with pytest.raises(ValueError, match=r"missing on 1 row\(s\): b"):
        load_suite(path, require_questions=True)


def test_unknown_suite_lists_available():
    with pytest.raises(FileNotFoundError, match="real"):
        load_suite("no-such-suite")


def test_select_limits_per_category():
    suite = load_suite("real")
    small = suite.select(limit=2)
    assert [r.category for r in small].count("counting") == 2 and len(small) == 6
    assert all(r.category == "color" for r in suite.select(["color"]))
    with pytest.raises(ValueError, match="unknown categories"):
        suite.select(["colour"])


def test_comments_blank_lines_and_roundtrip(tmp_path):
    path = _write(tmp_path, ["# a comment", "", _row(id="a", meta={"source": "hand"})])
    suite = load_suite(path)
    again = parse_rows([json.dumps(r.to_dict()) for r in suite])
    assert again.sha256 == suite.sha256
    with pytest.raises(ValueError, match="no rows"):
        parse_rows(["# nothing"])
