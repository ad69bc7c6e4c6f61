"""Input checks for image scorers: images of any common form -> float (N, 3, H, W) in [0, 1].

Mixing 0-255 and 0-1 data is the classic BRISQUE bug (scores stay plausible but mean nothing),
so the range is checked here, once, for every scorer, with an error that says which mix-up it
looks like.
"""

from __future__ import annotations

import math

import numpy as np
import torch

MIN_SIDE = 16  # BRISQUE downscales by 2 and fits 7x7 local statistics: smaller images are noise


def as_unit_batch(images) -> torch.Tensor:
    """Images -> float32 tensor (N, 3, H, W) in [0, 1], with clear errors for the wrong range.

    Accepts a list of PIL images or of uint8 arrays (H, W, 3), a uint8 array/tensor
    (N, H, W, 3), a float numpy array (N, H, W, 3) in [0, 1] (diffusers' ``output_type="np"``)
    or a float tensor (N, 3, H, W) in [0, 1]. uint8 data is divided by 255 here; float data must
    already be in [0, 1].
    """
    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError("no images given")
        arrays = [np.asarray(im.convert("RGB")) if hasattr(im, "convert") else np.asarray(im)
                  for im in images]
        shapes = {a.shape for a in arrays}
        if len(shapes) != 1:
            raise ValueError(f"images in one batch must share a size, got shapes {sorted(shapes)}")
        images = np.stack(arrays)
    if isinstance(images, np.ndarray):
        if images.ndim == 3:
            images = images[None]
        if images.ndim != 4 or images.shape[-1] not in (1, 3):
            raise ValueError(f"numpy images must be (N, H, W, 3) (channels last), got shape {images.shape}")
        if images.dtype == np.uint8:
            return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
        x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).permute(0, 3, 1, 2)
        return check_unit_batch(x)
    if torch.is_tensor(images):
        if images.dtype == torch.uint8:
            if images.ndim != 4 or images.shape[-1] not in (1, 3):
                raise ValueError(f"uint8 tensors must be (N, H, W, 3), got shape {tuple(images.shape)}")
            return images.permute(0, 3, 1, 2).float() / 255.0
        return check_unit_batch(images.float())
    raise TypeError(f"expected PIL images, numpy arrays or a torch tensor, got {type(images).__name__}")


def check_unit_batch(x: torch.Tensor) -> torch.Tensor:
    """Validate a float tensor (N, 3 or 1, H, W) in [0, 1]; returns it, raises ValueError otherwise."""
    if not torch.is_tensor(x) or not x.is_floating_point():
        raise ValueError("BRISQUE input must be a floating-point tensor (N, 3, H, W) in [0, 1]")
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"BRISQUE input must have shape (N, 3, H, W) (channels first), got {tuple(x.shape)}"
                         + ("; permute channels-last data with x.permute(0, 3, 1, 2)" if x.ndim == 4 and x.shape[-1] == 3 else ""))
    if x.shape[0] == 0:
        raise ValueError("no images given")
    if min(x.shape[-2:]) < MIN_SIDE:
        raise ValueError(f"BRISQUE needs images of at least {MIN_SIDE}x{MIN_SIDE} pixels, got {tuple(x.shape[-2:])}")
    lo, hi = (float(v) for v in torch.aminmax(x))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError("BRISQUE input contains NaN or infinite values")
    if hi > 1.0 + 1e-6:
        raise ValueError(
            f"BRISQUE input must be in [0, 1] (data_range=1.0), got values up to {hi:g}: this looks like "
            f"0-255 data; divide by 255 (or pass uint8 images, which are scaled for you)")
    if lo < -1e-6:
        raise ValueError(f"BRISQUE input must be in [0, 1], got values down to {lo:g}: this looks like "
                         f"[-1, 1] data; use (x + 1) / 2")
    return x


__all__ = ["as_unit_batch", "check_unit_batch", "MIN_SIDE"]
