"""Toy-world render speed (images/s), measured here rather than in a timed test.

    python bench/bench_render.py --n 2000
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from surlib.toy import render_batch, scenes  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=2000)
    args = p.parse_args()
    sc = scenes("train")
    rng = np.random.default_rng(0)
    batch = [sc[int(i)] for i in rng.integers(len(sc), size=args.n)]
    seeds = rng.integers(1 << 30, size=args.n)
    render_batch(batch[:100], seeds[:100])  # warm the sprite cache
    wall, cpu = time.perf_counter(), time.process_time()
    render_batch(batch, seeds)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"{args.n} renders: {args.n / wall:.0f} images/s wall, {args.n / cpu:.0f} images per CPU-second")


if __name__ == "__main__":
    main()
