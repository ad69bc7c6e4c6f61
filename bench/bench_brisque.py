"""BRISQUE throughput at 512x512 on the CPU: piq.brisque vs the fast path of eval.brisque.

    python bench/bench_brisque.py                 # 2 threads, 24 images, both implementations
    python bench/bench_brisque.py --threads 1 --n 48 --size 512

Prints images/s from wall-clock time and from CPU time (on a shared machine the wall-clock figure
depends on the other jobs; CPU-time throughput is per core used), the machine load, and the
largest score difference between the two implementations. Target: >= 15 images/s at 512x512 on
2 CPU cores.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--n", type=int, default=24, help="images per timed pass")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2, help="timed passes; the best is reported")
    p.add_argument("--impl", choices=["both", "fast", "piq"], default="both")
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from eval.brisque import brisque
    from eval.synthetic_image import synthetic_natural_image

    # A batch of distinct natural-looking images (crops / flips of a few syntheses).
    base = [synthetic_natural_image(args.size, seed=s) for s in range(4)]
    imgs = [torch.flip(base[i % 4], dims=[3]) if (i // 4) % 2 else base[i % 4] for i in range(args.n)]
    x = torch.cat(imgs)
    impls = ["piq", "fast"] if args.impl == "both" else [args.impl]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"BRISQUE {args.n} images {args.size}x{args.size}, torch threads {args.threads}, "
          f"cpus {os.cpu_count()}, load average {load:.2f}")
    scores = {}
    for impl in impls:
        brisque(x[:2], impl=impl)  # warm-up (weights, lookup tables)
        best_wall = best_cpu = float("inf")
        for _ in range(args.repeats):
            w0, c0 = time.perf_counter(), time.process_time()
            scores[impl] = brisque(x, impl=impl)
            best_wall = min(best_wall, time.perf_counter() - w0)
            best_cpu = min(best_cpu, time.process_time() - c0)
        print(f"  {impl:5s}: {args.n / best_wall:6.1f} images/s wall  ({1000 * best_wall / args.n:6.1f} ms/image), "
              f"{args.n / best_cpu:6.1f} images/s per CPU-second")
    if len(scores) == 2:
        d = (scores["fast"] - scores["piq"]).abs().max().item()
        print(f"  max |fast - piq| = {d:.4f} BRISQUE points (scores {scores['piq'].min():.1f}..{scores['piq'].max():.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
