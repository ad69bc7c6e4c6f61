"""One table from several finished runs (an ablation, or one adapter on several suites): a row
per run with its suite, the prompt-level accuracy test (mean per-prompt difference, its CI,
sign-flip and Wilcoxon p), accuracy per category, McNemar as a secondary, and the quality
equivalence tests.

    python -m eval.compare runs/toy-eval/full runs/toy-eval/no-llm ... [--out table.md]
    python -m eval.compare runs/ada/toy runs/ada/toy_heldout runs/ada/toy_spells runs/ada/toy_canonical

Each argument is an `eval.run` output folder (its `summary.json`); the row is named after the
folder (with its parent when two folders share a name). Suite, seeds and sampling settings are
columns, so a table that mixes protocols says so.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from surlib.names import CATEGORIES, OVERALL

from .formatting import MISSING, pct, pvalue
from .stats import MCNEMAR_CAVEAT


def load_summary(run: str | Path) -> dict:
    path = Path(run) / "summary.json"
    if not path.exists():
        raise FileNotFoundError(f"{run}: no summary.json (is it a finished `eval.run` folder?)")
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); rerun `eval.run` on that folder") from None


def _suite(cfg: dict) -> str | None:
    name = cfg.get("suite_name") or cfg.get("suite")
    return None if name is None else Path(str(name)).stem if str(name).endswith(".jsonl") else str(name)


def row(name: str, s: dict) -> dict:
    acc = {(r["category"], r["variant"]): r["accuracy"] for r in s["accuracy"]}
    diff = {d["category"]: d for d in s["accuracy_difference"]}
    mc = {m["category"]: m for m in s["mcnemar"]}
    pt = {t["category"]: t for t in s.get("prompt_test") or []}  # absent in runs made before it existed
    cfg = s.get("config", {})
    out = {"run": name, "suite": _suite(cfg), "seeds": len(cfg.get("seeds", [])), "steps": cfg.get("steps"),
           "guidance": cfg.get("guidance"), "pairs": mc.get(OVERALL, {}).get("pairs"),
           "prompts": pt.get(OVERALL, diff.get(OVERALL, {})).get("prompts")}
    for c in (*CATEGORIES, OVERALL):
        out[c] = (acc.get((c, "baseline")), acc.get((c, "adapter")))
    cats = [diff[c]["difference"] for c in CATEGORIES if c in diff]
    out["mean_diff"] = sum(cats) / len(cats) if cats else None
    head = pt.get(OVERALL)
    out["prompt_diff"] = head["mean_difference"] if head else None
    src = head or diff.get(OVERALL)
    out["overall_ci"] = (src["ci_low"], src["ci_high"]) if src else None
    out["sign_flip_p"] = head["p_value"] if head else None
    out["wilcoxon_p"] = head["wilcoxon_p"] if head else None
    out["mcnemar_p"] = mc.get(OVERALL, {}).get("p_value")
    uw = s.get("unknown_words") or {}
    out["excluded"] = uw.get("prompts_excluded") if uw else None
    out["quality"] = {k: (v.get("diff_mean"), v.get("tost_p"), v.get("equivalent"), v.get("margin"))
                      for k, v in s.get("quality", {}).items()}
    return out


def _signed(x) -> str:
    return MISSING if x is None else pct(x, sign=True, unit="")


def markdown(rows: list[dict]) -> str:
    measures = sorted({k for r in rows for k in r["quality"]})
    excluded = any(r.get("excluded") for r in rows)
    head = ["run", "suite", "seeds", "steps", "prompts", "prompt-level Δ (pts, overall)", "95% CI",
            "sign-flip p", "Wilcoxon p", *[f"{c} base→adapter" for c in (*CATEGORIES, OVERALL)],
            "mean Δ (pts, 3 categories)", f"McNemar p (overall; {MCNEMAR_CAVEAT})",
            *(["prompts left out (unknown words)"] if excluded else []), *[f"{m} Δ (TOST)" for m in measures]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        ci = r["overall_ci"]
        cells = [r["run"], r.get("suite") or MISSING, str(r["seeds"]), str(r["steps"]),
                 MISSING if r.get("prompts") is None else str(r["prompts"]), _signed(r.get("prompt_diff")),
                 MISSING if ci is None else f"[{_signed(ci[0])}, {_signed(ci[1])}]",
                 pvalue(r.get("sign_flip_p")), pvalue(r.get("wilcoxon_p"))]
        cells += [f"{pct(b, unit='')} → {pct(a, unit='')}" for b, a in (r[c] for c in (*CATEGORIES, OVERALL))]
        cells.append(_signed(r["mean_diff"]))
        cells.append(pvalue(r["mcnemar_p"]))
        if excluded:
            cells.append(str(r.get("excluded") or 0))
        for m in measures:
            d, p, eq, margin = r["quality"].get(m, (None, None, None, None))
            if d is None:
                cells.append(MISSING)
            elif p is None:
                cells.append(f"{d:+.2f}")
            else:
                p_text = f"p={pvalue(p)}"
                verdict = f", equivalent ±{margin:g}" if eq else f", not shown ±{margin:g}"
                cells.append(f"{d:+.2f} ({p_text}{verdict})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run_names(runs: list[str]) -> list[str]:
    """Folder names, with the parent folder added where two runs share a name."""
    paths = [Path(r).resolve() for r in runs]
    names = [p.name for p in paths]
    return [f"{p.parent.name}/{p.name}" if names.count(p.name) > 1 else p.name for p in paths]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="eval.run output folders")
    p.add_argument("--out", help="also write the table here")
    args = p.parse_args(argv)
    try:
        rows = [row(name, load_summary(r)) for name, r in zip(run_names(args.runs), args.runs)]
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}")
        return 2
    text = markdown(rows)
    print(text, end="")
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
