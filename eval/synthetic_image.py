"""A natural-looking test image for BRISQUE tests and benchmarks: the repository ships no photos,
and BRISQUE's SVR was fitted to natural scenes, so pure noise would not exercise it."""

from __future__ import annotations

import numpy as np
import torch


def synthetic_natural_image(size: int = 256, seed: int = 0, alpha: float = 1.2) -> torch.Tensor:
    """(1, 3, size, size) in [0, 1]: 1/f^alpha noise (the power spectrum of natural scenes) with
    correlated colour channels, plus a few hard-edged discs (natural scenes have edges too).
    Blurring it or adding noise makes its BRISQUE score worse."""
    rng = np.random.default_rng(seed)
    fy, fx = np.fft.fftfreq(size)[:, None], np.fft.fftfreq(size)[None, :]
    f = np.sqrt(fx ** 2 + fy ** 2)
    f[0, 0] = 1.0
    shape = (size, size)
    base = rng.normal(size=shape) + 1j * rng.normal(size=shape)
    chans = [np.real(np.fft.ifft2((base + 0.3 * (rng.normal(size=shape) + 1j * rng.normal(size=shape))) / f ** alpha))
             for _ in range(3)]
    img = np.stack(chans)
    img = (img - img.mean()) / (img.std() * 4) + 0.5
    yy, xx = np.mgrid[:size, :size]
    for _ in range(4):
        cy, cx = rng.integers(0, size, 2)
        r = rng.integers(max(1, size // 10), max(2, size // 4))
        m = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
        img[:, m] = img[:, m] * 0.5 + rng.uniform(0, 0.5, 3)[:, None]
    return torch.from_numpy(np.clip(img, 0, 1)).float()[None]


__all__ = ["synthetic_natural_image"]
