import json

from surlib.toy.scene import Scene, split_of
from surlib.toy.suite import SUITE_PATH, toy_suite_rows


def test_shipped_toy_suite_is_reproducible_and_held_out():
    shipped = [json.loads(line) for line in SUITE_PATH.read_text().splitlines()]
    assert shipped == toy_suite_rows()
    assert all(split_of(Scene.from_dict(r["expect"])) == "test" for r in shipped)
    counts = {c: sum(r["category"] == c for r in shipped) for c in ("counting", "color", "action")}
    assert min(counts.values()) >= 20, counts
