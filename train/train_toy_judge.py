"""Train the toy-world judge (surlib.toy.judge.JudgeNet) and save it to assets/toy/.

    python -m train.train_toy_judge                 # defaults reproduce the shipped judge
    python -m train.train_toy_judge --steps 200 --out /tmp/judge.safetensors   # quick try

Reproducible: data are rendered on the fly from the *train* split with fixed seeds
(``sample_rows("train", batch, seed=step)``), degraded with a seeded torch Generator
(``surlib.toy.judge.degrade``), on one CPU thread. Validation-split renders are used for
progress reports only; the final report measures held-out *test*-split renders (combinations
never seen in training), clean and degraded, and writes the numbers into the config json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from surlib.toy.dataset import rows_to_images, sample_rows  # noqa: E402
from surlib.toy.judge import (  # noqa: E402
    DEFAULT_WEIGHTS,
    HEADS,
    JudgeNet,
    ToyJudge,
    degrade,
    judge_accuracy,
    to_tensor,
)

EVAL_SEED = 20231029


def _rel(p: Path) -> str:
    root = Path(__file__).resolve().parents[1]
    try:
        return str(p.resolve().relative_to(root))
    except ValueError:
        return str(p)


def labels(rows) -> dict[str, torch.Tensor]:
    return {k: torch.tensor([list(v).index(getattr(r.scene, k)) for r in rows])
            for k, v in HEADS.items()}


def evaluate(judge: ToyJudge, split: str, n: int, seed: int, degraded: bool) -> dict:
    rows = sample_rows(split, n, seed)
    imgs = rows_to_images(rows)
    if degraded:
        g = torch.Generator().manual_seed(seed + 1)
        x = degrade(to_tensor(imgs), g, strength=1.0, p=1.0)
        imgs = x.permute(0, 2, 3, 1).numpy()
    return judge_accuracy(judge, imgs, [r.scene for r in rows])


def fmt(m: dict) -> str:
    return " ".join(f"{k}={m[k]:.4f}" for k in (*HEADS, "all"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1400)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--eval-every", type=int, default=400)
    ap.add_argument("--eval-n", type=int, default=2000, help="test images for the final report")
    ap.add_argument("--out", type=Path, default=DEFAULT_WEIGHTS)
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    net = JudgeNet(widths=(16, 32, 64, 128), feat_dim=256)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.steps,
                                                pct_start=0.15)
    gen = torch.Generator().manual_seed(args.seed)
    judge = ToyJudge(net)
    t0, c0 = time.perf_counter(), time.process_time()
    run_loss = 0.0
    for step in range(args.steps):
        net.train()
        rows = sample_rows("train", args.batch, seed=args.seed * 10_000_019 + step)
        x = degrade(to_tensor(rows_to_images(rows)), gen, strength=1.0, p=0.85)
        y = labels(rows)
        out = net(x)
        loss = sum(F.cross_entropy(out[k], y[k], label_smoothing=0.02) for k in HEADS)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        run_loss += loss.item()
        if (step + 1) % 100 == 0:
            print(f"step {step + 1}/{args.steps} loss {run_loss / 100:.4f} "
                  f"{time.perf_counter() - t0:.0f}s wall {time.process_time() - c0:.0f}s cpu",
                  flush=True)
            run_loss = 0.0
        if (step + 1) % args.eval_every == 0 or step + 1 == args.steps:
            net.eval()
            m = evaluate(judge, "validation", 500, EVAL_SEED, degraded=True)
            print(f"  validation (degraded) {fmt(m)}", flush=True)
    train_s, train_cpu_s = time.perf_counter() - t0, time.process_time() - c0

    net.eval()
    metrics = {
        "test_clean": evaluate(judge, "test", args.eval_n, EVAL_SEED, degraded=False),
        "test_degraded": evaluate(judge, "test", args.eval_n, EVAL_SEED + 7, degraded=True),
        "validation_clean": evaluate(judge, "validation", args.eval_n, EVAL_SEED, False),
    }
    for k, m in metrics.items():
        print(f"{k}: {fmt(m)} (n={m['n']})")
    judge.save(args.out, extra_meta={
        "trained_with": {k: (_rel(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "train_seconds": round(train_s, 1),
        "train_cpu_seconds": round(train_cpu_s, 1),
        "metrics": metrics,
        "eval": f"sample_rows(split, {args.eval_n}, seed={EVAL_SEED}) renders; 'degraded' = "
                "surlib.toy.judge.degrade(strength=1, p=1) with a seeded generator",
    })
    print(f"saved {args.out} ({args.out.stat().st_size / 1e6:.2f} MB) after {train_s:.0f}s")
    print(json.dumps(metrics))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
