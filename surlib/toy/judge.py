"""ToyJudge: reads count, colour, action and kind off 64x64 toy-world images.

A small multi-head CNN (``JudgeNet``) trained by
``train/train_toy_judge.py`` on renders of the *train* split with strong degradation
(``degrade``: blur, down/up-sampling, noise, low-frequency blotches, colour jitter, small
shifts and rescaling), so it also reads blurry/noisy generated images. Weights ship in
``assets/toy/judge.safetensors`` with ``judge.json`` (architecture, vocabularies, measured
accuracy); loading needs no network.

    from surlib.toy.judge import ToyJudge, judge_accuracy
    j = ToyJudge.load()
    j.judge(images)            # [{"count": 3, "color": "red", "action": "jumping",
                               #   "kind": "robot", "confidence": {...}}, ...]
    j.score(image, scene)      # {"count": True, "color": True, "action": False, "kind": True}
    judge_accuracy(j, images, scenes)   # {"count": <share right>, ..., "all": ..., "n": 500}

Images: a PIL image, a list of PIL images, or an array / tensor shaped (64, 64, 3) or
(N, 64, 64, 3), uint8 in 0..255 or float in 0..1 (channel-last RGB).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .render import IMAGE_SIZE
from .scene import ACTIONS, COLORS, COUNTS, KINDS, Scene

__all__ = ["JudgeNet", "ToyJudge", "judge_accuracy", "degrade", "to_tensor", "HEADS",
           "DEFAULT_WEIGHTS", "EXPECTED_SHAPE"]

HEADS: dict[str, tuple] = {"count": COUNTS, "color": COLORS, "action": ACTIONS, "kind": KINDS}
"""Output heads and their class vocabularies (class i of a head is ``HEADS[head][i]``)."""

DEFAULT_WEIGHTS = Path(__file__).resolve().parents[2] / "assets" / "toy" / "judge.safetensors"
EXPECTED_SHAPE = f"(N, {IMAGE_SIZE}, {IMAGE_SIZE}, 3) or ({IMAGE_SIZE}, {IMAGE_SIZE}, 3)"


# --------------------------------------------------------------------------- model

class JudgeNet(nn.Module):
    """Conv net 64x64x3 -> penultimate ``feat_dim`` features -> one linear head per attribute."""

    def __init__(self, widths: Sequence[int] = (16, 32, 64, 128), feat_dim: int = 256,
                 dropout: float = 0.2):
        super().__init__()
        self.config = {"widths": list(widths), "feat_dim": int(feat_dim), "dropout": dropout}
        layers: list[nn.Module] = []
        c_in = 3
        for i, c in enumerate(widths):
            layers += [nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c),
                       nn.ReLU(inplace=True)]
            if i == len(widths) - 1:
                layers += [nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c),
                           nn.ReLU(inplace=True)]
            layers.append(nn.MaxPool2d(2))
            c_in = c
        self.body = nn.Sequential(*layers)
        side = IMAGE_SIZE // 2 ** len(widths)
        self.fc = nn.Linear(c_in * side * side, feat_dim)
        self.drop = nn.Dropout(dropout)
        self.heads = nn.ModuleDict({k: nn.Linear(feat_dim, len(v)) for k, v in HEADS.items()})

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """x: float (N, 3, 64, 64) in [0, 1] -> (N, feat_dim) post-ReLU features."""
        h = self.body((x - 0.5) / 0.25)
        return F.relu(self.fc(h.flatten(1)))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.drop(self.features(x))
        return {k: head(f) for k, head in self.heads.items()}


# --------------------------------------------------------------------------- input handling

def to_tensor(images) -> torch.Tensor:
    """Images (see module doc) -> float32 tensor (N, 3, 64, 64) in [0, 1].

    Raises ValueError naming the expected shape for anything else."""
    from PIL import Image

    if isinstance(images, Image.Image):
        images = [images]
    if isinstance(images, (list, tuple)):
        if len(images) == 0:
            return torch.zeros((0, 3, IMAGE_SIZE, IMAGE_SIZE))
        arrs = []
        for im in images:
            if isinstance(im, Image.Image):
                im = np.asarray(im.convert("RGB"))
            elif isinstance(im, torch.Tensor):
                im = im.detach().cpu().numpy()
            im = np.asarray(im)
            if im.shape != (IMAGE_SIZE, IMAGE_SIZE, 3):
                raise ValueError(f"each image must be {IMAGE_SIZE}x{IMAGE_SIZE} RGB, shape "
                                 f"({IMAGE_SIZE}, {IMAGE_SIZE}, 3); got {im.shape}")
            arrs.append(im)
        dtypes = {a.dtype for a in arrs}
        if len(dtypes) > 1:
            raise ValueError(f"mixed image dtypes {dtypes}")
        images = np.stack(arrs)
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().numpy()
    arr = np.asarray(images)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE, 3):
        raise ValueError(f"images must have shape {EXPECTED_SHAPE} (channel-last RGB); "
                         f"got {tuple(np.shape(images))}")
    if arr.dtype == np.uint8:
        x = torch.from_numpy(np.ascontiguousarray(arr)).float().div_(255.0)
    elif np.issubdtype(arr.dtype, np.integer):
        x = torch.from_numpy(np.clip(arr, 0, 255).astype(np.float32)).div_(255.0)
    elif np.issubdtype(arr.dtype, np.floating):
        x = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)).clamp_(0.0, 1.0)
    else:
        raise ValueError(f"images must be integer (0..255) or float (0..1); got {arr.dtype}")
    return x.permute(0, 3, 1, 2).contiguous()


# --------------------------------------------------------------------------- degradation

def _gauss_kernels(sigmas: torch.Tensor, radius: int) -> torch.Tensor:
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    s = sigmas.clamp_min(1e-3)[:, None]
    k = torch.exp(-0.5 * (t[None] / s) ** 2)
    k = torch.where(sigmas[:, None] < 0.05, (t[None] == 0).float(), k)
    return k / k.sum(1, keepdim=True)


def blur(x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """Per-sample separable Gaussian blur of (N, C, H, W) with std ``sigmas`` (N,) pixels."""
    n, c, h, w = x.shape
    r = max(1, int(math.ceil(2.5 * float(sigmas.max()))))
    k = _gauss_kernels(sigmas, r).repeat_interleave(c, 0)  # (N*C, 2r+1)
    y = x.reshape(1, n * c, h, w)
    y = F.conv2d(F.pad(y, (r, r, 0, 0), mode="replicate"), k[:, None, None, :], groups=n * c)
    y = F.conv2d(F.pad(y, (0, 0, r, r), mode="replicate"), k[:, None, :, None], groups=n * c)
    return y.reshape(n, c, h, w)


def degrade(x: torch.Tensor, generator: torch.Generator | None = None,
            strength: float = 1.0, p: float = 0.9) -> torch.Tensor:
    """Random degradations imitating a small diffusion model behind a VAE.

    x: float (N, 3, 64, 64) in [0, 1]. Per sample (each with probability ``p`` of being
    degraded at all): small affine jitter (shift <= 2 px, scale 0.94-1.06), Gaussian blur
    sigma 0-1.5 px, 2x down/up-sampling (smoothing), colour jitter (gain, offset, contrast,
    saturation), low-frequency blotches and pixel noise. ``strength`` scales the magnitudes.
    Deterministic given ``generator``."""
    g = generator
    n = x.shape[0]
    dev = x.device

    def U(lo, hi, *shape):
        return torch.rand(*(shape or (n,)), generator=g) * (hi - lo) + lo

    on = (torch.rand(n, generator=g) < p).float()
    s = strength

    # affine jitter (translate / scale), border padding
    scale = 1.0 + U(-0.06, 0.06) * s * on
    tx = U(-2, 2) * s * on * 2 / IMAGE_SIZE
    ty = U(-2, 2) * s * on * 2 / IMAGE_SIZE
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = scale
    theta[:, 1, 1] = scale
    theta[:, 0, 2] = tx
    theta[:, 1, 2] = ty
    grid = F.affine_grid(theta.to(dev), list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    # blur
    sig = U(0.0, 1.5) * s * on * (torch.rand(n, generator=g) < 0.8).float()
    x = blur(x, sig.to(dev))

    # 2x down/up smoothing ("JPEG / latent" smoothing)
    m = ((torch.rand(n, generator=g) < 0.3).float() * on).to(dev)[:, None, None, None]
    if m.any():
        du = F.interpolate(F.avg_pool2d(x, 2), scale_factor=2, mode="bilinear",
                           align_corners=False)
        x = m * du + (1 - m) * x

    # colour jitter
    gain = 1.0 + U(-0.08, 0.08, n, 3) * s * on[:, None]
    off = U(-0.05, 0.05, n, 1) * s * on[:, None]
    x = x * gain.to(dev)[..., None, None] + off.to(dev)[..., None, None]
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    con = (1.0 + U(-0.15, 0.1) * s * on).to(dev)[:, None, None, None]
    x = (x - mean) * con + mean
    gray = x.mean(dim=1, keepdim=True)
    sat = (1.0 + U(-0.2, 0.15) * s * on).to(dev)[:, None, None, None]
    x = (x - gray) * sat + gray

    # low-frequency blotches
    lf = torch.randn(n, 3, 8, 8, generator=g) * U(0, 0.04)[:, None, None, None] * s
    lf = F.interpolate(lf.to(dev), size=x.shape[-2:], mode="bicubic", align_corners=False)
    x = x + lf * on.to(dev)[:, None, None, None]

    # pixel noise
    ns = (U(0, 0.06) * s * on).to(dev)[:, None, None, None]
    x = x + torch.randn(x.shape, generator=g).to(dev) * ns
    return x.clamp(0.0, 1.0)


# --------------------------------------------------------------------------- judge

class ToyJudge:
    """Wraps a trained JudgeNet. Always runs in eval mode, without gradients."""

    def __init__(self, net: JudgeNet, meta: dict | None = None, device: str | torch.device = "cpu"):
        self.net = net.to(device).eval()
        self.device = torch.device(device)
        self.meta = dict(meta or {})

    @classmethod
    def load(cls, path: str | Path | None = None, device: str | torch.device = "cpu") -> "ToyJudge":
        """Load weights (default ``assets/toy/judge.safetensors``) and the config json beside
        them (same stem, ``.json``). No network."""
        from safetensors.torch import load_file

        p = Path(path) if path is not None else DEFAULT_WEIGHTS
        if not p.exists():
            raise FileNotFoundError(f"judge weights not found at {p}; "
                                    "train them with `python -m train.train_toy_judge`")
        cfg_path = p.with_suffix(".json")
        meta = json.loads(cfg_path.read_text()) if cfg_path.exists() else {}
        arch = meta.get("arch", {})
        net = JudgeNet(widths=arch.get("widths", (16, 32, 64, 128)),
                       feat_dim=arch.get("feat_dim", 256))
        for head, vocab in meta.get("heads", {}).items():
            if head in HEADS and list(vocab) != [v for v in HEADS[head]]:
                raise ValueError(f"judge {p} was trained with {head} vocabulary {vocab}, "
                                 f"but the world has {list(HEADS[head])}")
        net.load_state_dict(load_file(str(p)))
        return cls(net, meta, device)

    def save(self, path: str | Path, extra_meta: dict | None = None) -> None:
        """Write ``path`` (safetensors) and the config json beside it."""
        from safetensors.torch import save_file

        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        sd = {k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}
        save_file(sd, str(p), metadata={"format": "pt", "model": "surlib.toy.JudgeNet"})
        meta = dict(self.meta)
        meta.update(extra_meta or {})
        meta["arch"] = self.net.config
        meta["heads"] = {k: list(v) for k, v in HEADS.items()}
        p.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")

    @torch.no_grad()
    def logits(self, images, batch_size: int = 256) -> dict[str, torch.Tensor]:
        x = to_tensor(images)
        outs: dict[str, list[torch.Tensor]] = {k: [] for k in HEADS}
        for i in range(0, x.shape[0], batch_size):
            o = self.net(x[i:i + batch_size].to(self.device))
            for k in HEADS:
                outs[k].append(o[k].float().cpu())
        return {k: (torch.cat(v) if v else torch.zeros(0, len(HEADS[k]))) for k, v in outs.items()}

    def judge(self, images) -> list[dict]:
        """Predicted ``count`` (int), ``color``, ``action``, ``kind`` per image, plus
        ``confidence`` (softmax probability of each prediction)."""
        lg = self.logits(images)
        n = next(iter(lg.values())).shape[0]
        probs = {k: v.softmax(-1) for k, v in lg.items()}
        out = []
        for i in range(n):
            d: dict = {}
            conf = {}
            for k, vocab in HEADS.items():
                j = int(probs[k][i].argmax())
                d[k] = vocab[j]
                conf[k] = float(probs[k][i, j])
            d["confidence"] = conf
            out.append(d)
        return out

    def score(self, image, scene: Scene) -> dict[str, bool]:
        """Whether one image shows the scene's count, color, action and kind."""
        pred = self.judge(image)
        if len(pred) != 1:
            raise ValueError(f"score() takes one image; got {len(pred)}")
        p = pred[0]
        return {"count": p["count"] == scene.count, "color": p["color"] == scene.color,
                "action": p["action"] == scene.action, "kind": p["kind"] == scene.kind}


def judge_accuracy(judge: ToyJudge, images, scenes: Sequence[Scene]) -> dict:
    """Per-attribute accuracy of ``judge`` on ``images`` labelled by ``scenes``:
    ``{"count", "color", "action", "kind", "all" (all four right), "n"}``."""
    preds = judge.judge(images)
    if len(preds) != len(scenes):
        raise ValueError(f"got {len(preds)} images but {len(scenes)} scenes")
    n = len(preds)
    if n == 0:
        raise ValueError("no images")
    hits = {k: 0 for k in HEADS}
    all_ok = 0
    for p, s in zip(preds, scenes):
        ok = {k: p[k] == getattr(s, k) for k in HEADS}
        for k, v in ok.items():
            hits[k] += int(v)
        all_ok += int(all(ok.values()))
    out = {k: hits[k] / n for k in HEADS}
    out["all"] = all_ok / n
    out["n"] = n
    return out
