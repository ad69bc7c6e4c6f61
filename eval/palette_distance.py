"""A quality measure the toy world can trust: how far an image's pixels sit from the colours a
clean render can have.

BRISQUE was fitted to natural photos and ranks toy renders backwards (a clean render scores
worse than its blurred or noisy copy), and the toy judge's features are blind to blur and
noise by design (it was trained to read degraded images). A clean toy render, though, is made
of a known palette: the six object colours and the four backgrounds (flat, gradient, two-tone),
mixed only along antialiased edges and under jump shadows. The score of an image is the mean,
over its pixels, of the RGB distance (0..1 per channel) to the nearest palette colour, times
100. Clean renders score low (edges only); noise raises every pixel, blur widens every edge,
colour shifts and artefacts move pixels off the palette. One number per image, so the runner's
paired t-test, Wilcoxon and TOST apply to it; `python -m eval.toy_quality_check` measures how
it and BRISQUE rank clean, blurred, noisy and VAE-decoded renders.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch


@lru_cache(maxsize=1)
def toy_palette() -> torch.Tensor:
    """(K, 3) float32 in [0, 1]: object colours and every background pixel colour."""
    from surlib.toy.render import COLOR_RGB, background
    from surlib.toy.scene import BACKGROUNDS

    colors = [np.asarray(list(COLOR_RGB.values()), np.float32)]
    colors += [np.unique(background(b).reshape(-1, 3), axis=0) for b in BACKGROUNDS]
    return torch.from_numpy(np.unique(np.concatenate(colors), axis=0) / 255.0).float()


def palette_distance(images, batch_size: int = 64) -> list[float]:
    """Per image: 100 x mean over pixels of min over the toy palette of the RGB distance.
    Images as the toy judge accepts them: (N, 64, 64, 3) / (64, 64, 3) uint8 or floats in
    [0, 1], PIL images, or a list of them."""
    from surlib.toy.judge import to_tensor

    x = to_tensor(images)
    pal = toy_palette()
    out = []
    for i in range(0, x.shape[0], batch_size):
        px = x[i:i + batch_size].permute(0, 2, 3, 1).reshape(-1, 3)
        # Exact distances: the matrix-product shortcut is off by ~1e-3 near zero.
        d = torch.cdist(px, pal, compute_mode="donot_use_mm_for_euclid_dist").min(dim=1).values
        out += (100.0 * d.view(-1, x.shape[-2] * x.shape[-1]).mean(dim=1)).tolist()
    return out
