"""The images of a run: generated in baseline/adapter pairs, saved as PNGs, reused on resume.

Both images of a (prompt, seed) come from one `generate_pairs` call with the same starting
noise, so every comparison is paired. Pairs are generated `gen_batch` at a time (batching fills
a GPU, and on a CPU it pays at few steps; `bench/bench_eval_suite.py`). PNGs are written
atomically, so a PNG on disk is always whole and a resumed run can reuse it instead of
generating it again.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

from surlib.names import VARIANTS

if TYPE_CHECKING:
    from .config import EvalConfig


def image_path(out: Path, row_id: str, seed: int, variant: str) -> Path:
    return out / "images" / f"{row_id}_s{seed}_{variant}.png"


def batched(items: Sequence, n: int) -> Iterable[Sequence]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


def _save_png(image, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    image.save(tmp, format="PNG")
    os.replace(tmp, path)


def _load_png(path: Path):
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (OSError, ValueError):
        return None


def load_pipeline(cfg: EvalConfig, device=None):
    """The SURPipeline of a config: a named preset, or --base with --adapter."""
    from surlib import SURPipeline, load_preset

    if cfg.preset is not None:
        pipe = load_preset(cfg.preset, **({"adapter": cfg.adapter} if cfg.adapter else {}),
                           **({"device": device} if device is not None else {}))
    else:
        pipe = SURPipeline.from_pretrained(cfg.base, adapter=cfg.adapter, device=device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def chunk_images(get_pipe: Callable, cfg: EvalConfig, out: Path, chunk) -> list[tuple]:
    """For each (row, seed): ({variant: PIL image}, {variant: nsfw flag}, seconds or None). Saved
    PNGs are reused when both are readable (a resumed run); the other pairs are generated
    `gen_batch` at a time with `generate_pairs` and saved atomically. `get_pipe` is called only
    when something has to be generated."""
    results: list = [None] * len(chunk)
    missing = []
    for i, (row, seed) in enumerate(chunk):
        files = {v: image_path(out, row.id, seed, v) for v in VARIANTS}
        images = {v: _load_png(f) for v, f in files.items() if f.is_file()}
        if len(images) == len(VARIANTS) and all(im is not None for im in images.values()):
            results[i] = (images, {}, None)
        else:
            missing.append(i)
    for group in batched(missing, cfg.gen_batch):
        t0 = time.perf_counter()
        gens = get_pipe().generate_pairs(
            [chunk[i][0].prompt for i in group], [chunk[i][1] for i in group], steps=cfg.steps,
            guidance=cfg.guidance, negative_prompt=cfg.negative_prompt, height=cfg.height, width=cfg.width,
            output_type="pil")
        secs = (time.perf_counter() - t0) / len(group)
        for i, g in zip(group, gens):
            row, seed = chunk[i]
            for v in VARIANTS:
                _save_png(g.images[v], image_path(out, row.id, seed, v))
            results[i] = (dict(g.images), dict(g.nsfw), secs)
    return results


__all__ = ["image_path", "batched", "load_pipeline", "chunk_images"]
