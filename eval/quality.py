"""BRISQUE (the paper's no-reference image-quality metric), batched and offline.

`brisque(x)` takes a float tensor (N, 3, H, W) in [0, 1] and returns N scores (lower is better).
Two implementations give the same numbers:

* ``impl="piq"``: `piq.brisque(x, data_range=1.0, reduction='none')` itself.
* ``impl="fast"`` (default): the same algorithm and constants, restructured. piq spends most of
  its time in (1) a full 7x7 Gaussian convolution although the kernel is separable, (2) its
  MATLAB-style bicubic 2x downscale, which unfolds a 10-tap window at *every* input position and
  then keeps every other one, and (3) a full RGB->YIQ matmul on a permuted (channels-last) copy
  when only Y is used; with many images per call its working set also falls out of the cache.
  The fast path blurs with 7 shifted multiply-adds per axis, gathers only the downscale taps it
  keeps (same weights, from piq's own resize code), computes luma as a weighted channel sum,
  fuses the AGGD moments into a few norm reductions, and on the CPU scores one image per task
  (see `brisque`). Degenerate images (flat, e.g. a blacked-out safety-checker output) score NaN
  instead of stopping the run with an assertion. Scores agree with piq within about 0.02.

piq downloads its SVR weights on first use; offline we verify and use the copy in
``<repo>/../shared/brisque/`` (or ``$SUR_BRISQUE_WEIGHTS``), see `ensure_brisque_weights`.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

WEIGHTS_NAME = "brisque_svm_weights.pt"
WEIGHTS_SHA256 = "0e976ea2dcf746a966888565bc754484ec28f7318f60b5ac8080259033f27a37"
ENV_WEIGHTS = "SUR_BRISQUE_WEIGHTS"
MIN_SIDE = 16

_REPO = Path(__file__).resolve().parents[1]
DEFAULT_SHARED = _REPO.parent / "shared" / "brisque"

# Constants of the LIVE-trained BRISQUE SVR, as piq hard-codes them.
_SVR_GAMMA = 0.05
_SVR_RHO = -153.591


# --------------------------------------------------------------------------- weights

def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def hub_weights_path() -> Path:
    """Where piq (through torch.hub) looks for the SVR weights: $TORCH_HOME/hub/checkpoints/."""
    return Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_NAME


_VERIFIED: set[tuple[str, int, int]] = set()


def _check(path: Path, origin: str) -> Path:
    st = path.stat()
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    if key in _VERIFIED:
        return path
    digest = _sha256(path)
    if digest != WEIGHTS_SHA256:
        raise ValueError(f"BRISQUE weights at {path} ({origin}) have sha256 {digest}, expected "
                         f"{WEIGHTS_SHA256}: the file is corrupt or a different model; remove it")
    _VERIFIED.add(key)
    return path


def ensure_brisque_weights(shared: str | Path | None = None, install: bool = True) -> Path:
    """Path of verified BRISQUE SVR weights, installing them into torch hub's cache for piq.

    Looks at ``$SUR_BRISQUE_WEIGHTS`` (a file, or a folder holding ``brisque_svm_weights.pt``)
    when set, else torch hub's cache, else ``<repo>/../shared/brisque/``. A copy found outside the
    cache is checked against its sha256 and (``install=True``) copied into the cache, so that
    `piq.brisque` finds it without network. Raises FileNotFoundError naming every place tried.
    """
    cache = hub_weights_path()
    env = os.environ.get(ENV_WEIGHTS)
    if env:
        source = Path(env)
        if source.is_dir():
            source = source / WEIGHTS_NAME
        if not source.is_file():
            raise FileNotFoundError(f"${ENV_WEIGHTS} is set to {env!r} but there is no {WEIGHTS_NAME} there")
        origin = f"${ENV_WEIGHTS}"
    elif cache.is_file():
        return _check(cache, "torch hub cache")
    else:
        source = Path(shared) / WEIGHTS_NAME if shared is not None else DEFAULT_SHARED / WEIGHTS_NAME
        origin = "shared folder"
        if not source.is_file():
            raise FileNotFoundError(
                f"BRISQUE SVR weights not found: piq downloads them on first use, and this machine "
                f"is offline. Looked in torch hub's cache ({cache}) and in the shared folder "
                f"({source}). Copy {WEIGHTS_NAME} (sha256 {WEIGHTS_SHA256[:12]}...) into one of "
                f"them, or set ${ENV_WEIGHTS} to its path.")
    _check(source, origin)
    if install and not _is_verified_copy(cache):
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=cache.parent, prefix=".brisque-")
            os.close(fd)
            shutil.copyfile(source, tmp)
            os.replace(tmp, cache)
        except OSError:  # read-only cache: the fast path reads `source` directly
            return source
    return cache if install and cache.is_file() else source


def _is_verified_copy(path: Path) -> bool:
    try:
        _check(path, "")
        return True
    except (OSError, ValueError):
        return False


@lru_cache(maxsize=4)
def _svr(path: str) -> tuple[torch.Tensor, torch.Tensor]:
    sv_coef, sv = torch.load(path, map_location="cpu", weights_only=True)
    return sv_coef.float(), sv.float()


# --------------------------------------------------------------------------- inputs

def as_unit_batch(images) -> torch.Tensor:
    """Images -> float32 tensor (N, 3, H, W) in [0, 1], with clear errors for the wrong range.

    Accepts a list of PIL images or of uint8 arrays (H, W, 3), a uint8 array/tensor
    (N, H, W, 3), a float numpy array (N, H, W, 3) in [0, 1] (diffusers' ``output_type="np"``)
    or a float tensor (N, 3, H, W) in [0, 1]. uint8 data is divided by 255 here; float data must
    already be in [0, 1] (mixing 0-255 and 0-1 is the classic BRISQUE bug, so it is refused).
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


# --------------------------------------------------------------------------- BRISQUE

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
                out.append(piq.brisque(chunk, data_range=1.0, reduction="none"))
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


def _gauss1d(size: int = 7, sigma: float = 7 / 6) -> torch.Tensor:
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
    as shifted multiply-adds: on one CPU core this beats both conv2d back ends several times."""
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
    sv_coef, sv = _svr(str(weights))
    sv, sv_coef = sv.to(feats), sv_coef.to(feats)
    dist = torch.cdist(feats.double(), sv.double()).pow(2).to(feats.dtype)
    score = torch.exp(-_SVR_GAMMA * dist) @ sv_coef - _SVR_RHO
    valid = v1 & v2 & torch.isfinite(score)
    return torch.where(valid, score, torch.full_like(score, float("nan")))


def synthetic_natural_image(size: int = 256, seed: int = 0, alpha: float = 1.2) -> torch.Tensor:
    """A natural-looking test image (1, 3, size, size) in [0, 1], for tests and benchmarks (the
    repository ships no photos): 1/f^alpha noise with correlated colour channels, plus a few
    hard-edged discs. It scores about 15-25 on BRISQUE; blurring or adding noise raises that."""
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


__all__ = ["brisque", "brisque_scores", "as_unit_batch", "check_unit_batch", "ensure_brisque_weights",
           "hub_weights_path", "synthetic_natural_image", "WEIGHTS_SHA256", "ENV_WEIGHTS"]
