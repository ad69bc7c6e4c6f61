"""Toy-world data in the SURD layout, on disk or in memory.

On disk (``export_imagefolder``): an HF "imagefolder" like the SURD release - a folder of
``<id>.png`` files plus ``metadata.jsonl`` with one row per image::

    {"file_name": "000000.png", "text": <simple prompt>, "prompt": <complex prompt>,
     "canonical": <canonical caption>, "count": 3, "color": "red", "kind": "robot", "action": "jumping",
     "background": "white", "split": "train", "seed": 123456789}

``text`` / ``prompt`` are the SURD keys (simple caption / keyword spell). ``canonical`` is the
scene in a training frame with the first synonym of every table ("three red robots jumping
against a white wall"): a narrative the base already renders right, which the trainer's
``canonical_column`` uses as an identity row (do no harm on well-formed sentences). The rest
are the ground truth. The adapter trainer reads it with ``surlib.data`` and
``datasets.load_dataset("imagefolder", data_dir=...)`` loads it too, so the toy world has no
reader of its own.

In memory (for trainers that render on the fly): ``sample_rows(split, n, seed)`` draws rows
(scene, seed, simple and complex prompt) and ``rows_to_images(rows)`` renders them to a uint8
``(N, 64, 64, 3)`` array; ``sample_scenes`` is the scene-and-seed draw both share with the
base-model trainer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .prompts import complex_prompt, simple_prompt
from .render import render_batch
from .scene import Scene, scenes, split_of

__all__ = ["ToyRow", "sample_scenes", "sample_rows", "rows_to_images", "export_imagefolder",
           "METADATA_KEYS"]

METADATA_KEYS = ("file_name", "text", "prompt", "canonical", "count", "color", "kind", "action",
                 "background", "split", "seed")
"""Keys of every metadata.jsonl row, in order."""

_SEED_HIGH = 2 ** 31 - 1


@dataclass(frozen=True)
class ToyRow:
    """One sample: a scene, its render seed, its two prompts and its canonical caption."""

    scene: Scene
    seed: int
    simple: str
    complex: str
    canonical: str = ""

    @property
    def split(self) -> str:
        return split_of(self.scene)

    def to_metadata(self, file_name: str) -> dict:
        d = {"file_name": file_name, "text": self.simple, "prompt": self.complex, "canonical": self.canonical}
        d.update(self.scene.to_dict())
        d["split"] = self.split
        d["seed"] = int(self.seed)
        return d


def sample_scenes(pool: Sequence[Scene], n: int,
                  rng: np.random.Generator) -> tuple[list[Scene], np.ndarray]:
    """``n`` scenes drawn uniformly from ``pool`` and a render seed for each, from ``rng``
    (scene indices first, then seeds: the order the shipped models were trained with)."""
    idx = rng.integers(0, len(pool), size=n)
    return [pool[int(i)] for i in idx], rng.integers(0, _SEED_HIGH, size=n)


def sample_rows(split: str | None, n: int, seed: int = 0, *,
                pool: Sequence[Scene] | None = None,
                canonical: bool = False) -> list[ToyRow]:
    """Draw ``n`` rows uniformly from the scenes of ``split`` (``None``: every scene), each
    with a random render seed and randomly phrased prompts. Deterministic in the arguments.

    ``pool`` overrides the scene set; ``canonical=True`` uses the canonical prompt of each
    language instead of a sampled phrasing. Every row's ``canonical`` caption takes its training
    frame from a second generator, so adding it left the other columns as they were drawn."""
    if n < 0:
        raise ValueError("n must be >= 0")
    pool = list(pool) if pool is not None else scenes(split)
    if not pool:
        raise ValueError(f"no scenes in split {split!r}")
    rng = np.random.default_rng([int(seed), 0x70F])
    frames = np.random.default_rng([int(seed), 0xCA7])
    rows = []
    for sc, s in zip(*sample_scenes(pool, n, rng)):
        caption = simple_prompt(sc, frames, canonical=True)
        if canonical:
            rows.append(ToyRow(sc, int(s), simple_prompt(sc), complex_prompt(sc), caption))
        else:
            rows.append(ToyRow(sc, int(s), simple_prompt(sc, rng), complex_prompt(sc, rng), caption))
    return rows


def rows_to_images(rows: Sequence[ToyRow]) -> np.ndarray:
    """Render rows: uint8 ``(N, 64, 64, 3)``."""
    return render_batch([r.scene for r in rows], [r.seed for r in rows])


def export_imagefolder(out_dir: str | Path, split: str | None, n: int, seed: int = 0,
                       *, progress: bool = False) -> Path:
    """Write ``n`` rendered rows of ``split`` as PNGs plus ``metadata.jsonl`` into ``out_dir``
    (created; an existing metadata.jsonl is replaced). Returns the metadata path."""
    from PIL import Image

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = sample_rows(split, n, seed)
    width = max(6, len(str(max(n - 1, 0))))
    meta_path = out / "metadata.jsonl"
    tmp = out / "metadata.jsonl.tmp"
    chunk = 512
    with open(tmp, "w", encoding="utf-8") as f:
        for start in range(0, len(rows), chunk):
            part = rows[start:start + chunk]
            imgs = rows_to_images(part)
            for j, (row, img) in enumerate(zip(part, imgs)):
                name = f"{start + j:0{width}d}.png"
                Image.fromarray(img, "RGB").save(out / name, compress_level=1)
                f.write(json.dumps(row.to_metadata(name)) + "\n")
            if progress:
                print(f"{min(start + chunk, len(rows))}/{len(rows)}", flush=True)
    tmp.replace(meta_path)
    return meta_path
