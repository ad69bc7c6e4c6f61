"""BRISQUE (the paper's no-reference image-quality metric), batched and offline.

`brisque(x)` takes a float tensor (N, 3, H, W) in [0, 1] and returns N scores (lower is better).
Two implementations give the same numbers:

* ``impl="piq"``: `piq.brisque(x, data_range=1.0, reduction='none')` itself.
* ``impl="fast"`` (default): the same algorithm and constants, restructured, because the public
  API is too slow to score a whole suite on a CPU (`bench/bench_brisque.py`; figures in
  docs/evaluation.md). piq spends most of its time in a full 7x7 Gaussian convolution although
  the kernel is separable, in a MATLAB-style bicubic 2x downscale that computes every input
  position and then keeps every other one, and in a full RGB->YIQ matmul when only Y is used.
  The fast path blurs with 7 shifted multiply-adds per axis, gathers only the downscale taps it
  keeps, computes luma as a weighted channel sum, fuses the AGGD moments into a few norm
  reductions, and on the CPU scores one image per task (see `brisque`). Degenerate images (flat,
  e.g. a blacked-out safety-checker output) score NaN instead of stopping the run with an
  assertion.

The fast path reuses two private piq functions (the downscale weights and the feature scaling),
so that its numbers are piq's: piq is pinned to 0.8.x, and tests/test_quality.py fails when those
names move or the fast path drifts from `piq.brisque`. Weights: `eval.brisque_weights`.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .brisque_weights import ensure_brisque_weights, load_svr
from .image_batch import as_unit_batch, check_unit_batch

# Constants of the LIVE-trained BRISQUE SVR, as piq hard-codes them in `piq.brisque._score_svr`.
_SVR_GAMMA = 0.05
_SVR_RHO = -153.591
# The local-statistics window: piq's defaults, passed to it explicitly so both paths use one value.
KERNEL_SIZE = 7
KERNEL_SIGMA = 7 / 6


def brisque(x: torch.Tensor, impl: str = "fast", batch_size: int | None = None) -> torch.Tensor:
    """BRISQUE scores (N,) of a float tensor (N, 3, H, W) in [0, 1]; lower is better.

    ``impl="piq"`` calls `piq.brisque(x, data_range=1.0, reduction='none')`; ``impl="fast"``
    (default) is the same computation restructured (see the module docstring) and returns NaN
    for degenerate (flat) images where piq raises.

    On the CPU the fast path scores one image per task, each task single-threaded, with the
    images spread over `torch.get_num_threads()` worker threads: a 512x512 image's planes stay in
    cache, no per-operation thread barriers stall when the cores are shared with other jobs, and
    each score is independent of which images share its batch. Elsewhere (or with an explicit
    `batch_size`) images go in batches of `batch_size` (default 16)."""
    x = check_unit_batch(x)
    if impl not in ("fast", "piq"):
        raise ValueError(f"impl must be 'fast' or 'piq', got {impl!r}")
    weights = ensure_brisque_weights(install=impl == "piq")
    if impl == "fast" and x.device.type == "cpu" and batch_size is None:
        return _brisque_cpu(x, weights)
    batch_size = batch_size or 16
    out = []
    with torch.no_grad():
        for i in range(0, x.shape[0], batch_size):
            chunk = x[i:i + batch_size]
            if impl == "piq":
                import piq
                out.append(piq.brisque(chunk, kernel_size=KERNEL_SIZE, kernel_sigma=KERNEL_SIGMA, data_range=1.0,
                                       reduction="none"))
            else:
                out.append(_brisque_fast(chunk, weights))
    return torch.cat(out)


def _brisque_cpu(x: torch.Tensor, weights: Path) -> torch.Tensor:
    from concurrent.futures import ThreadPoolExecutor

    workers = max(1, min(torch.get_num_threads(), x.shape[0]))
    previous = torch.get_num_threads()

    def one(i: int) -> torch.Tensor:
        with torch.no_grad():
            return _brisque_fast(x[i:i + 1], weights)

    torch.set_num_threads(1)  # per-image work is single-threaded; parallelism is across images
    try:
        if workers == 1:
            scores = [one(i) for i in range(x.shape[0])]
        else:
            with ThreadPoolExecutor(workers, thread_name_prefix="brisque") as pool:
                scores = list(pool.map(one, range(x.shape[0])))
    finally:
        torch.set_num_threads(previous)
    return torch.cat(scores)


def brisque_scores(images, impl: str = "fast", batch_size: int | None = None) -> list[float]:
    """BRISQUE of PIL images / uint8 arrays / [0, 1] floats (see `as_unit_batch`), as floats.

    Images of different sizes are scored in groups of equal size."""
    if isinstance(images, (list, tuple)) and images:
        sizes = [np.asarray(im).shape if not hasattr(im, "size") or isinstance(im, np.ndarray)
                 else im.size for im in images]
        if len(set(sizes)) > 1:
            scores: list[float] = [float("nan")] * len(images)
            for size in set(sizes):
                idx = [i for i, s in enumerate(sizes) if s == size]
                for i, s in zip(idx, brisque_scores([images[i] for i in idx], impl, batch_size)):
                    scores[i] = s
            return scores
    x = as_unit_batch(images)
    return [float(v) for v in brisque(x, impl=impl, batch_size=batch_size)]


def _gauss1d(size: int = KERNEL_SIZE, sigma: float = KERNEL_SIGMA) -> torch.Tensor:
    c = torch.arange(size, dtype=torch.float32) - (size - 1) / 2.0
    g = torch.exp(-(c ** 2) / (2 * sigma ** 2))
    return g / g.sum()  # outer(g, g) is piq's normalised 2-D kernel


@lru_cache(maxsize=32)
def _resize_plan(n_in: int, n_out: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Source indices (n_out*k,) and weights (n_out, k) of piq's MATLAB-style antialiased bicubic
    resize along one axis, with MATLAB's symmetric padding folded into the indices."""
    from piq.functional.resize import get_weight

    scale = n_out / n_in
    k = 4
    aa = 1.0
    if scale < 1:
        aa = scale
        k = int(np.ceil(k / aa))
    k += 2
    pos = torch.linspace(0, n_out - 1, steps=n_out, dtype=torch.float32)
    pos = (pos + 0.5) / scale - 0.5
    base = pos.floor() - (k // 2) + 1
    weight = get_weight(pos - base, k, kernel="cubic", antialiasing_factor=aa)  # (k, n_out)
    idx = base.long()[:, None] + torch.arange(k)[None, :]                       # (n_out, k)
    idx = torch.where(idx < 0, -idx - 1, idx)
    idx = torch.where(idx >= n_in, 2 * n_in - 1 - idx, idx)
    return idx.reshape(-1), weight.t().contiguous()


def _half(x: torch.Tensor) -> torch.Tensor:
    """piq's ``imresize(x, sizes=(H // 2, W // 2))`` for (B, 1, H, W), gathering only the kept taps."""
    b, c, h, w = x.shape
    idx, wt = _resize_plan(h, h // 2)
    k = wt.shape[1]
    y = x.index_select(2, idx).view(b, c, h // 2, k, w)
    y = (y * wt.view(1, 1, h // 2, k, 1)).sum(3)
    idx, wt = _resize_plan(w, w // 2)
    y = y.index_select(3, idx).view(b, c, h // 2, w // 2, k)
    return (y * wt).sum(4)


@lru_cache(maxsize=8)
def _gamma_tables(dtype, device):
    """piq's lookup tables: candidate shape parameters and their GGD / AGGD moment ratios."""
    gamma = torch.arange(0.2, 10 + 0.001, 0.001, dtype=dtype, device=device)
    r_ggd = (torch.lgamma(1.0 / gamma) + torch.lgamma(3.0 / gamma) - 2 * torch.lgamma(2.0 / gamma)).exp()
    r_aggd = torch.exp(2 * torch.lgamma(2.0 / gamma) - torch.lgamma(1.0 / gamma) - torch.lgamma(3.0 / gamma))
    return gamma, r_ggd, r_aggd


def _blur(x: torch.Tensor, g: list[float]) -> torch.Tensor:
    """Separable 7-tap Gaussian with zero padding (= piq's 7x7 conv2d, padding 3) on (B, H, W),
    as shifted multiply-adds: on one CPU core this is faster than either conv2d back end."""
    r = len(g) // 2
    h, w = x.shape[-2:]
    xp = F.pad(x, (0, 0, r, r))
    y = xp[..., 0:h, :] * g[0]
    for k in range(1, len(g)):
        y.add_(xp[..., k:k + h, :], alpha=g[k])
    yp = F.pad(y, (r, r))
    z = yp[..., 0:w] * g[0]
    for k in range(1, len(g)):
        z.add_(yp[..., k:k + w], alpha=g[k])
    return z


def _nss(luma: torch.Tensor, tables) -> tuple[torch.Tensor, torch.Tensor]:
    """18 natural-scene features per image of (N, H, W) luma, plus a validity mask (N,)."""
    gamma, r_ggd, r_aggd = tables
    n, h, w = luma.shape
    hw = h * w
    g = _gauss1d().tolist()
    both = _blur(torch.cat([luma, luma * luma]), g)
    mu, ex2 = both[:n], both[n:]
    std = ex2.sub_(mu * mu).abs_().sqrt_().add_(1.0)
    m = (luma - mu).div_(std)  # MSCN coefficients (N, H, W)
    dims = (-1, -2)

    # GGD fit of the MSCN coefficients.
    sigma_sq = torch.linalg.vector_norm(m, 2, dim=dims) ** 2 / hw
    e_abs = torch.linalg.vector_norm(m, 1, dim=dims) / hw
    rho = sigma_sq / e_abs ** 2
    alpha = gamma[(rho[:, None] - r_ggd[None]).abs().argmin(-1)]
    valid = sigma_sq > 0

    # AGGD fits of the four neighbour products (with wrap-around, as torch.roll in piq).
    feats = []
    for shift in ((0, 1), (1, 0), (1, 1), (-1, 1)):
        p = torch.roll(m, shifts=shift, dims=(-2, -1)).mul_(m)
        neg = p.clamp(max=0.0)
        count_l = torch.count_nonzero(neg, dim=dims).to(p.dtype)
        count_r = torch.count_nonzero(p, dim=dims).to(p.dtype) - count_l
        sum_all = torch.linalg.vector_norm(p, 2, dim=dims) ** 2
        sum_l = torch.linalg.vector_norm(neg, 2, dim=dims) ** 2
        sum_r = sum_all - sum_l
        abs_sum = torch.linalg.vector_norm(p, 1, dim=dims)
        left = (sum_l / count_l).sqrt()
        right = (sum_r / count_r).sqrt()
        valid &= (count_l > 0) & (count_r > 0) & (left > 0) & (right > 0)
        r_hat = (abs_sum / hw) ** 2 / (sum_all / hw)
        g_hat = left / right
        r_norm = r_hat * (g_hat ** 3 + 1) * (g_hat + 1) / (g_hat ** 2 + 1) ** 2
        r_norm = torch.nan_to_num(r_norm, nan=1.0, posinf=1.0, neginf=1.0)
        a = gamma[(r_norm[:, None] - r_aggd[None]).abs().argmin(-1)]
        eta = (right - left) * torch.exp(torch.lgamma(2.0 / a) - (torch.lgamma(1.0 / a) + torch.lgamma(3.0 / a)) / 2)
        feats += [a, eta, left ** 2, right ** 2]
    return torch.stack([alpha, sigma_sq] + feats, 1), valid


def _brisque_fast(x: torch.Tensor, weights: Path) -> torch.Tensor:
    from piq.brisque import _scale_features

    if x.shape[1] == 3:  # luma as piq computes it: Y of YIQ, rounded like MATLAB's rgb2gray
        luma = torch.round((0.299 * 255) * x[:, 0] + (0.587 * 255) * x[:, 1] + (0.114 * 255) * x[:, 2])
    else:
        luma = x[:, 0] * 255.0
    tables = _gamma_tables(x.dtype, x.device)
    f1, v1 = _nss(luma, tables)
    f2, v2 = _nss(_half(luma[:, None])[:, 0], tables)
    feats = _scale_features(torch.cat([f1, f2], -1))
    sv_coef, sv = load_svr(str(weights))
    sv, sv_coef = sv.to(feats), sv_coef.to(feats)
    dist = torch.cdist(feats.double(), sv.double()).pow(2).to(feats.dtype)
    score = torch.exp(-_SVR_GAMMA * dist) @ sv_coef - _SVR_RHO
    valid = v1 & v2 & torch.isfinite(score)
    return torch.where(valid, score, torch.full_like(score, float("nan")))


__all__ = ["brisque", "brisque_scores"]
