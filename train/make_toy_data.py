"""Export toy-world data as a SURD-style HF imagefolder (PNGs + metadata.jsonl).

    python -m train.make_toy_data --split train --n 20000 --seed 0 --out data/toy/train

Each metadata row: file_name, text (simple prompt), prompt (complex prompt), count, color,
kind, action, background, split, seed. See surlib/toy/dataset.py.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from surlib.toy.dataset import export_imagefolder  # noqa: E402
from surlib.toy.scene import SPLITS  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", choices=list(SPLITS) + ["all"], default="train",
                    help="scene split to draw from ('all': every scene)")
    ap.add_argument("--n", type=int, default=20000, help="number of images")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, required=True, help="output folder")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    if args.n < 1:
        ap.error("--n must be >= 1")
    t0 = time.perf_counter()
    meta = export_imagefolder(args.out, None if args.split == "all" else args.split, args.n,
                              args.seed, progress=not args.quiet)
    print(f"wrote {args.n} images and {meta} in {time.perf_counter() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
