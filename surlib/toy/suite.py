"""Prompt rows of held-out toy scenes: the toy prompt suite, and the rows the base model is
measured on. Both are built here, from the test split (unseen combinations) by default.

* ``toy_suite_rows``: every scene of the split becomes one row with a narrative prompt;
  categories rotate so each gets a third of them, and the toy judge scores the row's category
  on the generated image (``assets/suites/toy.jsonl`` is this, written by ``write_toy_suite``).
* ``combination_rows``: one scene per combination (a background drawn for each) with its
  canonical spell and a sampled caption, for ``python -m eval.toy_base``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..names import CATEGORIES
from .prompts import complex_prompt, simple_prompt
from .scene import BACKGROUNDS, Scene, combos, scenes

SUITE_PATH = Path(__file__).resolve().parents[2] / "assets" / "suites" / "toy.jsonl"


def toy_suite_rows(split: str = "test", seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(scenes(split)))
    rows = []
    for i, j in enumerate(order):
        scene = scenes(split)[int(j)]
        rows.append({"id": f"toy-{split}-{i:04d}", "category": CATEGORIES[i % 3],
                     "prompt": simple_prompt(scene, rng),
                     "complex_prompt": complex_prompt(scene), "expect": scene.to_dict()})
    return rows


def combination_rows(split: str = "test", seed: int = 0) -> list[dict]:
    """One scene per combination of the split, with its canonical spell and a sampled caption."""
    rng = np.random.default_rng(seed)
    rows = []
    for n, c, k, a in combos(split):
        scene = Scene(n, c, k, a, BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))])
        rows.append({"scene": scene, "complex": complex_prompt(scene),
                     "simple": simple_prompt(scene, rng)})
    return rows


def write_toy_suite(path: str | Path = SUITE_PATH, split: str = "test", seed: int = 0) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in toy_suite_rows(split, seed)))
    return path


if __name__ == "__main__":
    print(write_toy_suite())
