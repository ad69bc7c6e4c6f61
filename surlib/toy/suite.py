"""The toy prompt suite: held-out scenes with narrative prompts, one category per scene.

Every test-split scene (unseen combinations) becomes one row; categories rotate so each gets a
third of them, and the toy judge scores the row's category on the generated image.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from . import world

CATEGORIES = ("counting", "color", "action")
SUITE_PATH = Path(__file__).resolve().parents[2] / "assets" / "suites" / "toy.jsonl"


def toy_suite_rows(split: str = "test", seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(world.scenes(split)))
    rows = []
    for i, j in enumerate(order):
        scene = world.scenes(split)[int(j)]
        rows.append({"id": f"toy-{split}-{i:04d}", "category": CATEGORIES[i % 3],
                     "prompt": world.simple_prompt(scene, rng),
                     "complex_prompt": world.complex_prompt(scene), "expect": scene.to_dict()})
    return rows


def write_toy_suite(path: str | Path = SUITE_PATH, split: str = "test", seed: int = 0) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in toy_suite_rows(split, seed)))
    return path


if __name__ == "__main__":
    print(write_toy_suite())
