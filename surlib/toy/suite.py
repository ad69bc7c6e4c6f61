"""Prompt rows of held-out toy scenes: the four toy prompt suites, and the rows the base model
is measured on. Both are built here, from the test split (unseen combinations) by default.

* ``suite_rows(name)``: every scene of the split becomes one row; categories rotate so each
  gets a third of them, and the toy judge scores the row's category on the generated image.
  All four suites share the scenes, their order and the categories, so they pair row by row
  and differ only in the prompt (``TOY_SUITES``):

  - ``toy``: sampled synonyms in the training frames (``assets/suites/toy.jsonl``);
  - ``toy_heldout``: sampled synonyms in the held-out frames;
  - ``toy_spells``: the canonical spell itself;
  - ``toy_canonical``: the first synonym of every table in the held-out frames.

  ``write_toy_suites`` (``python -m surlib.toy.suite``) writes them all; ``--check`` only
  compares the shipped files with what the code produces.
* ``combination_rows``: one scene per combination (a background drawn for each) with its
  canonical spell and a sampled caption, for ``python -m eval.toy_base``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ..names import CATEGORIES, SUITES_DIR
from .prompts import complex_prompt, simple_prompt
from .scene import BACKGROUNDS, Scene, combos, scenes

SUITE_PATH = SUITES_DIR / "toy.jsonl"


def _sampled(frames: str):
    return lambda scene, rng: simple_prompt(scene, rng, frames=frames)


# Suite name -> the prompt of a scene, given the suite's Generator (drawn after the scene order).
TOY_SUITES = {
    "toy": _sampled("train"),
    "toy_heldout": _sampled("heldout"),
    "toy_spells": lambda scene, rng: complex_prompt(scene),
    "toy_canonical": lambda scene, rng: simple_prompt(scene, rng, frames="heldout", canonical=True),
}


def suite_rows(name: str = "toy", split: str = "test", seed: int = 0) -> list[dict]:
    """The rows of toy suite ``name`` (one of ``TOY_SUITES``) over the scenes of ``split``.
    Ids are ``<name with '-' for '_'>-<split>-<index>`` (``toy-test-0000``,
    ``toy-heldout-test-0000``), unique within a suite and distinct across suites."""
    if name not in TOY_SUITES:
        raise ValueError(f"unknown toy suite {name!r}; accepted: {', '.join(TOY_SUITES)}")
    prompt_of = TOY_SUITES[name]
    pool = scenes(split)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(pool))
    prefix = name.replace("_", "-")
    rows = []
    for i, j in enumerate(order):
        scene = pool[int(j)]
        rows.append({"id": f"{prefix}-{split}-{i:04d}", "category": CATEGORIES[i % 3],
                     "prompt": prompt_of(scene, rng),
                     "complex_prompt": complex_prompt(scene), "expect": scene.to_dict()})
    return rows


def toy_suite_rows(split: str = "test", seed: int = 0) -> list[dict]:
    """The in-distribution suite ``toy`` (``assets/suites/toy.jsonl``)."""
    return suite_rows("toy", split, seed)


def combination_rows(split: str = "test", seed: int = 0) -> list[dict]:
    """One scene per combination of the split, with its canonical spell and a sampled caption."""
    rng = np.random.default_rng(seed)
    rows = []
    for n, c, k, a in combos(split):
        scene = Scene(n, c, k, a, BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))])
        rows.append({"scene": scene, "complex": complex_prompt(scene),
                     "simple": simple_prompt(scene, rng)})
    return rows


def suite_text(name: str = "toy", split: str = "test", seed: int = 0) -> str:
    """A toy suite as JSONL text, exactly as it is shipped."""
    return "".join(json.dumps(r) + "\n" for r in suite_rows(name, split, seed))


def write_toy_suite(path: str | Path = SUITE_PATH, split: str = "test", seed: int = 0,
                    name: str = "toy") -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(suite_text(name, split, seed))
    return path


def write_toy_suites(folder: str | Path = SUITES_DIR, split: str = "test", seed: int = 0) -> list[Path]:
    """Write every suite of ``TOY_SUITES`` as ``<folder>/<name>.jsonl``."""
    return [write_toy_suite(Path(folder) / f"{name}.jsonl", split, seed, name) for name in TOY_SUITES]


def stale_suites(folder: str | Path = SUITES_DIR, split: str = "test", seed: int = 0) -> list[str]:
    """Names of the toy suites whose file under ``folder`` is missing or differs from the code's."""
    out = []
    for name in TOY_SUITES:
        path = Path(folder) / f"{name}.jsonl"
        if not path.is_file() or path.read_text() != suite_text(name, split, seed):
            out.append(name)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m surlib.toy.suite", description=(
        f"Write the toy suites ({', '.join(TOY_SUITES)}) as <out>/<name>.jsonl."))
    ap.add_argument("--out", default=str(SUITES_DIR), help="folder of the suite files")
    ap.add_argument("--check", action="store_true",
                    help="write nothing; exit 1 when a file is missing or differs from the code's")
    args = ap.parse_args(argv)
    if args.check:
        stale = stale_suites(args.out)
        print("toy suites up to date" if not stale else
              f"stale toy suites in {args.out}: {', '.join(stale)} (run python -m surlib.toy.suite)")
        return 1 if stale else 0
    for path in write_toy_suites(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
