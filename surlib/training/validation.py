"""The validation grid: baseline | adapter images for fixed prompts and seeds, one row each."""

from __future__ import annotations

import copy
from pathlib import Path

LABEL_HEIGHT = 14  # pixels of white strip above each row for its prompt and seed


def _labelled(image, text: str):
    """`image` under a white strip carrying `text` (cut to what fits the width)."""
    from PIL import Image, ImageDraw

    w, h = image.size
    out = Image.new("RGB", (w, h + LABEL_HEIGHT), "white")
    ImageDraw.Draw(out).text((2, 1), text[: max(8, w // 6)], fill="black")
    out.paste(image, (0, LABEL_HEIGHT))
    return out


def validation_grid(sd, adapter, prompts, seeds, steps: int, guidance: float, path: str | Path):
    """A PNG of (baseline | adapter) rows for each prompt and seed, via SURPipeline.generate_pair."""
    from diffusers.utils import make_image_grid

    from ..pipeline import SURPipeline

    pipe = SURPipeline(sd, copy.deepcopy(adapter), name="validation")
    pipe.set_progress_bar_config(disable=True)
    # An SDXL VAE kept in fp32 under fp16 training (`Frozen.from_pipeline`) is given the UNet's
    # dtype meanwhile: the pipeline then decodes in fp32 itself (its `force_upcast` path).
    vae_dtype = sd.vae.dtype
    sd.vae.to(dtype=sd.unet.dtype)
    rows = []
    try:
        for prompt in prompts:
            for seed in seeds:
                pair = pipe.generate_pair(prompt, seed=int(seed), steps=steps, guidance=guidance)
                rows.append(_labelled(make_image_grid([pair.baseline, pair.adapter], rows=1, cols=2),
                                      f"{prompt} (seed {seed})"))
    finally:
        sd.vae.to(dtype=vae_dtype)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    make_image_grid(rows, rows=len(rows), cols=1).save(path)
    return path


__all__ = ["validation_grid"]
