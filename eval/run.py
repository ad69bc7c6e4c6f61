"""Command line for `eval.runner.run_eval`.

    python -m eval.run --preset toy --suite toy --seeds 4 --out runs/toy-eval
    python -m eval.run --base stable-diffusion-v1-5/stable-diffusion-v1-5 --adapter runs/adapter \
        --suite real --out runs/sd15
    python -m eval.run --preset sd15 --adapter runs/adapter --judge clip-color --limit 5 --out runs/quick
    accelerate launch -m eval.run --preset sd15 --adapter runs/adapter --out runs/multi   # several GPUs

Rerunning the same command resumes an interrupted run. Defaults come from
``eval/configs/default.yaml`` (or ``--config``); flags override them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "default.yaml"


def _seeds(text: str):
    text = text.strip()
    if "," in text or "-" in text[1:]:
        out = []
        for part in text.split(","):
            part = part.strip()
            if "-" in part[1:]:
                a, b = part.split("-", 1)
                out += list(range(int(a), int(b) + 1))
            elif part:
                out.append(int(part))
        return out
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError("--seeds N needs N >= 1 (seeds 0..N-1), or a list like 0,1,7")
    return n


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m eval.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    model = p.add_argument_group("model (a preset, or --base with --adapter)")
    model.add_argument("--preset", help="a surlib preset name (tiny, toy, sd15, sd21, ...)")
    model.add_argument("--base", help="Stable Diffusion base: a folder or hub id")
    model.add_argument("--adapter", help="SUR-adapter folder or hub id (with --base; optional with a preset)")
    p.add_argument("--suite", help="suite name under assets/suites/ (real, toy) or a .jsonl path "
                                   "(default: toy for the toy preset, else real)")
    p.add_argument("--out", required=True, help="run folder (rerun the same command to resume)")
    p.add_argument("--seeds", type=_seeds, help="N (seeds 0..N-1) or a list: 0,1,5 or 0-7")
    p.add_argument("--steps", type=int)
    p.add_argument("--guidance", type=float)
    p.add_argument("--height", type=int)
    p.add_argument("--width", type=int)
    p.add_argument("--negative-prompt")
    p.add_argument("--judge", help="toy | vqa | clip-color (default: toy for the toy preset, else vqa)")
    p.add_argument("--judge-model", help="model id or folder of the vqa / clip-color judge (weights file of the toy judge)")
    p.add_argument("--limit", type=int, help="at most this many prompts per category (quick runs)")
    p.add_argument("--categories", help="comma-separated subset of counting,color,action")
    p.add_argument("--quality", action="append",
                   help="extra quality measure, by its registered name (eval.measures.register_quality; "
                        "repeatable); BRISQUE is always included")
    p.add_argument("--margin", type=float, help="BRISQUE equivalence margin for TOST (fix it before the run)")
    p.add_argument("--n-boot", type=int, help="bootstrap resamples")
    p.add_argument("--n-flips", type=int, help="random sign patterns of the prompt-level test (exact enumeration "
                                               "when all 2^prompts patterns fit)")
    p.add_argument("--chunk", type=int, help="(prompt, seed) pairs judged and scored per batch")
    p.add_argument("--gen-batch", type=int, help="(prompt, seed) pairs generated per denoising batch")
    p.add_argument("--device", help="cuda, cuda:1, cpu ... (default: accelerate's device)")
    p.add_argument("--config", default=str(DEFAULT_CONFIG), help="YAML defaults (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def config_from_args(args: argparse.Namespace):
    import yaml

    from .config import EvalConfig

    defaults = yaml.safe_load(Path(args.config).read_text()) or {}
    judge_defaults = defaults.pop("judge_kwargs", {}) or {}
    known = set(EvalConfig.__dataclass_fields__)
    unknown = set(defaults) - known
    if unknown:
        raise SystemExit(f"{args.config}: unknown setting(s) {sorted(unknown)}; known: {sorted(known)}")
    values = dict(defaults)
    for key in ("preset", "base", "adapter", "suite", "seeds", "steps", "guidance", "height", "width",
                "negative_prompt", "judge", "limit", "margin", "n_boot", "n_flips", "chunk", "gen_batch",
                "device"):
        v = getattr(args, key)
        if v is not None:
            values[key] = v
    if args.categories:
        values["categories"] = [c.strip() for c in args.categories.split(",") if c.strip()]
    if args.quality:
        values["quality"] = list(dict.fromkeys(["brisque"] + args.quality))
    values["progress"] = not args.no_progress
    values["out"] = args.out
    cfg = EvalConfig(**values)
    kwargs = dict(judge_defaults.get(cfg.judge) or {})
    if args.judge_model:
        kwargs["path" if cfg.judge == "toy" else "model_id"] = args.judge_model
    cfg.judge_kwargs = kwargs
    return cfg


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from .runner import run_eval

    try:
        cfg = config_from_args(args)
        summary = run_eval(cfg)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if summary is not None:  # main process
        print(f"report: {Path(cfg.out) / 'report.md'}")
        for t in summary["prompt_test"]:
            print(f"  {t['category']}: {t['conclusion']}")
        for m in summary["mcnemar"]:
            print(f"  {m['category']} (McNemar, {m['caveat']}): {m['conclusion']}")
        uw = summary.get("unknown_words")
        if uw and uw["prompts_excluded"]:
            print(f"  {uw['prompts_excluded']} prompt(s) with words outside the toy vocabulary were left out "
                  f"of the accuracy statistics (listed in the report)")
        for col, st in summary["quality"].items():
            print(f"  {col}: {st.get('conclusion', '')}")
        print(json.dumps({a["category"] + "/" + a["variant"]: round(a["accuracy"], 3) for a in summary["accuracy"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
