"""How long does the toy evaluation take end to end, and does batched generation help?

    python bench/bench_eval_suite.py                 # gen_batch 1 vs 8 on a subset, then the full suite
    python bench/bench_eval_suite.py --no-full       # the side-by-side part only (a few minutes)

Part 1 runs `eval.run` on the toy preset twice in this process (after one small warm-up run), on the same subset
(`--limit` prompts per category, all seeds), once with gen_batch 1 and once with gen_batch 8,
each from an empty run folder (model load, generation, judging, BRISQUE, statistics, report),
and prints both wall times and their ratio. Part 2 runs the whole toy suite once with the
project defaults (`python -m eval.run --preset toy`), timed end to end. Goal (issue 4): the
full toy suite (3 categories, 4 seeds, both variants) in <= 10 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

GOAL_MINUTES = 10.0


def timed_run(argv: list[str]) -> float:
    from eval import run

    t0 = time.perf_counter()
    rc = run.main(argv + ["--no-progress"])
    seconds = time.perf_counter() - t0
    if rc != 0:
        raise SystemExit(f"eval.run {' '.join(argv)} failed with exit code {rc}")
    return seconds


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--limit", type=int, default=4, help="prompts per category in part 1")
    p.add_argument("--seeds", type=int, default=4)
    p.add_argument("--no-full", action="store_true", help="skip part 2 (the full suite)")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--json", default="bench/out/bench_eval_suite.json")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    result = {"machine": platform.platform(), "threads": torch.get_num_threads(), "seeds": args.seeds}
    with tempfile.TemporaryDirectory() as tmp:
        # Warm-up: imports, kernel selection and first-use caches would otherwise bill the first run.
        timed_run(["--preset", "toy", "--out", f"{tmp}/warmup", "--seeds", "1", "--limit", "1"])
        times = {}
        for gb in (1, 8):
            secs = timed_run(["--preset", "toy", "--out", f"{tmp}/gb{gb}", "--seeds", str(args.seeds),
                                 "--limit", str(args.limit), "--gen-batch", str(gb)])
            times[gb] = secs
            print(f"subset ({args.limit} prompts x 3 categories x {args.seeds} seeds x 2 variants), "
                  f"gen_batch {gb}: {secs:.1f} s")
        result["subset"] = {"limit": args.limit, "gen_batch_1_s": times[1], "gen_batch_8_s": times[8],
                            "ratio_8_over_1": times[8] / times[1]}
        print(f"gen_batch 8 / gen_batch 1 = {times[8] / times[1]:.2f}")
        if not args.no_full:
            secs = timed_run(["--preset", "toy", "--out", f"{tmp}/full", "--seeds", str(args.seeds)])
            cfg = json.loads((Path(tmp) / "full" / "run_config.json").read_text())
            result["full"] = {"seconds": secs, "minutes": secs / 60, "goal_minutes": GOAL_MINUTES,
                              "steps": cfg.get("steps"), "guidance": cfg.get("guidance"),
                              "gen_batch": cfg.get("gen_batch")}
            print(f"full toy suite, end to end: {secs / 60:.1f} min (goal <= {GOAL_MINUTES:.0f} min; "
                  f"steps {cfg.get('steps')}, guidance {cfg.get('guidance')})")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
