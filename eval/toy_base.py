"""How well the toy base model follows each prompt language, judged exactly.

    python -m eval.toy_base --seeds 4 --steps 20 --guidance 5

For every held-out (test-split) combination, one background drawn per combination, it
generates `seeds` images from the keyword spell and from a narrative caption (same seeds) and
lets the toy judge read count, color and action. This is the toy world's quality bar (spells
>= 85% per category) and the baseline the adapter must beat on captions.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from surlib.toy.judge import ToyJudge
from surlib.toy.scene import SPLITS
from surlib.toy.suite import combination_rows

ATTRIBUTES = ("count", "color", "action", "kind")


@torch.no_grad()
def evaluate(sd, judge: ToyJudge, rows, seeds: int = 4, steps: int = 20, guidance: float = 5.0,
             languages=("complex", "simple"), batch: int = 32) -> dict:
    """Accuracy per attribute for each prompt language; same seeds for every language.
    `rows`: `surlib.toy.suite.combination_rows` (scene, complex, simple)."""
    sd.set_progress_bar_config(disable=True)
    jobs = [(lang, r, s) for lang in languages for r in rows for s in range(seeds)]
    correct = {lang: {a: [] for a in ATTRIBUTES} for lang in languages}
    by_count = {lang: {} for lang in languages}
    for i in tqdm(range(0, len(jobs), batch), desc="toy base"):
        chunk = jobs[i:i + batch]
        gens = [torch.Generator().manual_seed(1000 + s) for _, _, s in chunk]
        images = sd([r[lang] for lang, r, _ in chunk], num_inference_steps=steps, guidance_scale=guidance,
                    generator=gens, output_type="np").images
        verdicts = judge.judge((images * 255).round().astype(np.uint8))
        for (lang, r, _), v in zip(chunk, verdicts):
            for a in ATTRIBUTES:
                correct[lang][a].append(v[a] == getattr(r["scene"], a))
            by_count[lang].setdefault(r["scene"].count, []).append(v["count"] == r["scene"].count)
    return {lang: {a: float(np.mean(v)) for a, v in per.items()} | {"n": len(per["count"])}
            | {"count_by_n": {str(n): float(np.mean(v)) for n, v in sorted(by_count[lang].items())}}
            for lang, per in correct.items()}


SAMPLERS = ("shipped", "ddim-trailing", "dpm++-trailing")


def use_sampler(sd, name: str) -> None:
    """Swap the pipeline's scheduler for a sampler comparison. The shipped one (DDIM, leading
    spacing, as trained) is what the bar reports; the others keep its noise schedule and target."""
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

    if name not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {name!r}")
    if name != "shipped":
        cls = DDIMScheduler if name == "ddim-trailing" else DPMSolverMultistepScheduler
        sd.scheduler = cls.from_config(sd.scheduler.config, timestep_spacing="trailing")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=4)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--guidance", type=float, default=5.0)
    p.add_argument("--split", default="test", choices=SPLITS,
                   help="held-out combinations (test), the split to tune settings on (validation)")
    p.add_argument("--sampler", default="shipped", choices=SAMPLERS,
                   help="the shipped scheduler, or another with trailing timesteps (a comparison)")
    p.add_argument("--limit", type=int, default=0, help="first N combinations only")
    p.add_argument("--out", default=None, help="write the result JSON here")
    p.add_argument("--model-dir", default=None,
                   help="folder with vae/, unet/, scheduler/ (default: the shipped assets/toy)")
    args = p.parse_args(argv)
    from surlib.toy.base_model import load_toy_sd
    from surlib.toy.traced_unet import TracedUNet

    rows = combination_rows(args.split)
    rows = rows[:args.limit] if args.limit else rows
    try:
        sd = load_toy_sd(args.model_dir) if args.model_dir else load_toy_sd()
    except FileNotFoundError as e:
        p.error(str(e))
    use_sampler(sd, args.sampler)
    sd.unet = TracedUNet(sd.unet)  # same images, faster on a CPU
    result = evaluate(sd, ToyJudge.load(), rows, args.seeds, args.steps, args.guidance)
    result["settings"] = vars(args) | {"combinations": len(rows)}
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
