"""Does a quality measure rank toy images the right way? Clean renders against their blurred,
noisy and VAE round-tripped versions, for BRISQUE and the toy palette distance.

    python -m eval.toy_quality_check --n 200 [--out runs/toy_quality_check.json]

For each degradation it prints the mean score and the share of images scored worse than their
own clean version (1.0 = the measure always notices; 0.5 = chance). Both measures are "lower is
better". This is how we decided that BRISQUE alone is not informative in the toy world.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch


def degradations(x: torch.Tensor, seed: int = 0) -> dict[str, torch.Tensor]:
    """x: (N, 3, 64, 64) in [0, 1] -> named degraded copies (same images, same order)."""
    from torchvision.transforms.functional import gaussian_blur

    g = torch.Generator().manual_seed(seed)
    noisy = lambda s: (x + s * torch.randn(x.shape, generator=g)).clamp(0, 1)  # noqa: E731
    return {"clean": x, "blur sigma 1": gaussian_blur(x, 5, 1.0), "blur sigma 2": gaussian_blur(x, 9, 2.0),
            "noise sd 0.05": noisy(0.05), "noise sd 0.15": noisy(0.15)}


def vae_round_trip(x: torch.Tensor) -> torch.Tensor:
    from diffusers import AutoencoderKL

    from surlib.toy.base_model import ASSETS

    vae = AutoencoderKL.from_pretrained(ASSETS / "vae").eval()
    with torch.no_grad():
        rec = vae.decode(vae.encode(x * 2 - 1).latent_dist.mean).sample
    return ((rec + 1) / 2).clamp(0, 1)


def check(n: int = 200, seed: int = 0, vae: bool = True) -> dict:
    from surlib.toy.dataset import rows_to_images, sample_rows

    from .brisque import brisque_scores
    from .palette_distance import palette_distance

    x = torch.from_numpy(rows_to_images(sample_rows("test", n, seed))).permute(0, 3, 1, 2).float() / 255
    sets = degradations(x, seed)
    if vae:
        sets["VAE round trip"] = vae_round_trip(x)
    measures = {"brisque": lambda t: np.asarray(brisque_scores(t)),
                "palette_distance": lambda t: np.asarray(palette_distance(_u8(t)))}
    out = {}
    for name, fn in measures.items():
        scores = {k: fn(v) for k, v in sets.items()}
        out[name] = {k: {"mean": float(s.mean()), "sd": float(s.std()),
                         "worse_than_clean": float(np.mean(s > scores["clean"]))}
                     for k, s in scores.items()}
    return out


def _u8(t: torch.Tensor) -> np.ndarray:
    return (t.permute(0, 2, 3, 1) * 255).round().byte().numpy()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out")
    args = p.parse_args(argv)
    res = check(args.n, args.seed)
    print(f"{'':16}" + "".join(f"{m:>34}" for m in res))
    for k in next(iter(res.values())):
        print(f"{k:16}" + "".join(f"{r[k]['mean']:12.3f} ± {r[k]['sd']:<7.3f} worse {r[k]['worse_than_clean']:4.2f}"
                                  for r in res.values()))
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
