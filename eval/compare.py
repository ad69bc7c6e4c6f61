"""One table from several finished runs (e.g. an ablation): accuracy per category, the paired
difference, McNemar and the quality equivalence tests, a row per run.

    python -m eval.compare runs/toy-eval/full runs/toy-eval/no-llm ... [--out table.md]

Each argument is an `eval.run` output folder (its `summary.json`); the row is named after the
folder. Runs with different suites, seeds or sampling settings are listed with them, so a
table that mixes protocols says so.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from surlib.names import CATEGORIES, OVERALL

from .formatting import MISSING, pct, pvalue


def load_summary(run: str | Path) -> dict:
    path = Path(run) / "summary.json"
    if not path.exists():
        raise FileNotFoundError(f"{run}: no summary.json (is it a finished `eval.run` folder?)")
    return json.loads(path.read_text())


def row(name: str, s: dict) -> dict:
    acc = {(r["category"], r["variant"]): r["accuracy"] for r in s["accuracy"]}
    diff = {d["category"]: d for d in s["accuracy_difference"]}
    mc = {m["category"]: m for m in s["mcnemar"]}
    cfg = s.get("config", {})
    out = {"run": name, "seeds": len(cfg.get("seeds", [])), "steps": cfg.get("steps"),
           "guidance": cfg.get("guidance"), "pairs": mc.get(OVERALL, {}).get("pairs")}
    for c in (*CATEGORIES, OVERALL):
        out[c] = (acc.get((c, "baseline")), acc.get((c, "adapter")))
    cats = [diff[c]["difference"] for c in CATEGORIES if c in diff]
    out["mean_diff"] = sum(cats) / len(cats) if cats else None
    out["overall_ci"] = (diff[OVERALL]["ci_low"], diff[OVERALL]["ci_high"]) if OVERALL in diff else None
    out["mcnemar_p"] = mc.get(OVERALL, {}).get("p_value")
    out["quality"] = {k: (v.get("diff_mean"), v.get("tost_p"), v.get("equivalent"), v.get("margin"))
                      for k, v in s.get("quality", {}).items()}
    return out


def markdown(rows: list[dict]) -> str:
    measures = sorted({k for r in rows for k in r["quality"]})
    head = ["run", "seeds", "steps", *[f"{c} base→adapter" for c in (*CATEGORIES, OVERALL)],
            "mean Δ (pts, 3 categories)", "overall Δ 95% CI", "McNemar p (overall)",
            *[f"{m} Δ (TOST)" for m in measures]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["run"], str(r["seeds"]), str(r["steps"])]
        cells += [f"{pct(b, unit='')} → {pct(a, unit='')}" for b, a in (r[c] for c in (*CATEGORIES, OVERALL))]
        cells.append(pct(r["mean_diff"], sign=True, unit=""))
        ci = r["overall_ci"]
        cells.append(MISSING if ci is None else f"[{pct(ci[0], sign=True, unit='')}, {pct(ci[1], sign=True, unit='')}]")
        cells.append(pvalue(r["mcnemar_p"]))
        for m in measures:
            d, p, eq, margin = r["quality"].get(m, (None, None, None, None))
            if d is None:
                cells.append(MISSING)
            elif p is None:
                cells.append(f"{d:+.2f}")
            else:
                p_text = pvalue(p)
                p_text = f"p {p_text}" if p_text.startswith("<") else f"p={p_text}"  # "p < 0.0001"
                verdict = f", equivalent ±{margin:g}" if eq else f", not shown ±{margin:g}"
                cells.append(f"{d:+.2f} ({p_text}{verdict})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="eval.run output folders")
    p.add_argument("--out", help="also write the table here")
    args = p.parse_args(argv)
    try:
        rows = [row(Path(r).name, load_summary(r)) for r in args.runs]
    except FileNotFoundError as e:
        print(f"error: {e}")
        return 2
    text = markdown(rows)
    print(text, end="")
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
