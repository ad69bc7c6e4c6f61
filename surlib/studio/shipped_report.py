"""The evaluation report that ships with the repository: the toy adapter on the four toy suites.

A fresh install has no `runs/`, so the Eval tab shows this instead: ``assets/eval/report.md``
(text) and ``assets/eval/summaries.json`` (each suite's `eval.run` summary, trimmed to the
statistics and the provenance). No images are kept in git: the figures are drawn from the
summaries when the page asks for them (`figures`), with matplotlib.

Regenerate it with one command (about 20 minutes on two CPU cores; resumable):

    make eval-report          # = python -m surlib.studio.shipped_report

which runs (or resumes) ``python -m eval.run``'s evaluation of the toy preset for each toy suite
into ``runs/shipped-eval/<suite>`` and writes the two files. ``--runs 'runs/x/{suite}' --no-eval``
builds them from finished run folders instead; either way every run must have been made with
the weights in `assets/toy` (its recorded model hashes are compared with the files), so the
report always describes the adapter that ships.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import io
import json
import re
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from eval.report import VARIANT_COLORS, error_bars, pyplot

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_DIR = ROOT / "assets" / "eval"
REPORT_FILE = "report.md"
SUMMARIES_FILE = "summaries.json"
SUITES = ("toy", "toy_heldout", "toy_spells", "toy_canonical")
SUITE_NOTES = {
    "toy": "narrative prompts in the training sentence frames",
    "toy_heldout": "narrative prompts in sentence frames never used in training",
    "toy_spells": "the keyword spell itself, where the base model already works",
    "toy_canonical": "the spell's words (first synonyms) in the held-out frames",
}
COMMAND = "make eval-report"
# What of an `eval.run` summary the shipped copy keeps (the statistics, the run's identity).
SUMMARY_KEYS = ("prompt_test", "accuracy", "accuracy_difference", "mcnemar", "quality", "bootstrap",
                "sign_flip", "images", "expected_images", "complete")
CONFIG_KEYS = ("preset", "suite_name", "suite_sha256", "suite_rows_used", "categories_used", "seeds", "steps",
               "guidance", "judge", "quality", "margin", "quality_margins", "alpha", "n_boot", "n_flips",
               "boot_seed", "model_sha256", "date", "commit", "torch_version")


@dataclass
class ShippedReport:
    path: Path
    markdown: str
    summaries: dict[str, dict]
    generated_at: _dt.datetime


def trim_summary(summary: dict) -> dict:
    out = {k: summary[k] for k in SUMMARY_KEYS if k in summary}
    uw = summary.get("unknown_words")
    out["unknown_words"] = None if uw is None else {k: uw[k] for k in ("checked", "prompts_excluded",
                                                                       "prompts_checked") if k in uw}
    out["config"] = {k: summary.get("config", {}).get(k) for k in CONFIG_KEYS}
    return out


# ----------------------------------------------------------------------------- reading
def load_shipped(folder: str | Path = SHIPPED_DIR) -> ShippedReport | None:
    """The shipped report, or None when its files are missing or unreadable (logged by the caller)."""
    folder = Path(folder)
    try:
        text = (folder / REPORT_FILE).read_text(encoding="utf-8")
        data = json.loads((folder / SUMMARIES_FILE).read_text(encoding="utf-8"))
        when = _dt.datetime.fromisoformat(data["generated_at"])
        summaries = dict(data["suites"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return ShippedReport(folder / REPORT_FILE, text, summaries, when)


def _png(fig) -> "Image.Image":  # noqa: F821
    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    pyplot().close(fig)
    buf.seek(0)
    with Image.open(buf) as im:
        return im.convert("RGB")


def accuracy_figure(summaries: dict[str, dict]):
    """Accuracy per category, baseline and adapter, one panel per suite (95% CI over prompts)."""
    import numpy as np

    from surlib.names import VARIANTS

    plt = pyplot()
    names = list(summaries)
    fig, axes = plt.subplots(1, len(names), figsize=(2.9 * len(names), 3.3), sharey=True, squeeze=False)
    for ax, name in zip(axes[0], names):
        rows = summaries[name]["accuracy"]
        cats = list(dict.fromkeys(r["category"] for r in rows))
        x = np.arange(len(cats))
        for j, v in enumerate(VARIANTS):
            got = {r["category"]: r for r in rows if r["variant"] == v}
            y = np.array([got[c]["accuracy"] if c in got else np.nan for c in cats], float)
            lo = np.array([got[c].get("ci_low") if c in got else np.nan for c in cats], float)
            hi = np.array([got[c].get("ci_high") if c in got else np.nan for c in cats], float)
            err = error_bars(y, lo, hi)
            ax.bar(x + (j - 0.5) * 0.38, y, 0.38, yerr=err, capsize=2, label=v, color=VARIANT_COLORS[v])
        ax.set_xticks(x, cats, fontsize=7)
        ax.set_ylim(0, 1.05)
        ax.set_title(name, fontsize=9)
    axes[0][0].set_ylabel("accuracy (toy judge)")
    axes[0][0].legend(frameon=False, fontsize=7, loc="lower left")
    fig.suptitle("Accuracy per category, 95% bootstrap CI over prompts", fontsize=9)
    fig.tight_layout()
    return fig


def quality_figure(summaries: dict[str, dict]):
    """Each quality measure's mean paired difference (adapter − baseline) with its CI, against
    the equivalence margin fixed before the run: inside the band is what TOST calls equivalent."""
    plt = pyplot()
    measures = list(dict.fromkeys(m for s in summaries.values() for m in s.get("quality", {})))
    names = list(summaries)
    fig, axes = plt.subplots(1, max(1, len(measures)), figsize=(4.4 * max(1, len(measures)), 2.9), squeeze=False)
    for ax, m in zip(axes[0], measures):
        margin = None
        for i, name in enumerate(names):
            st = summaries[name].get("quality", {}).get(m) or {}
            d, ci = st.get("diff_mean"), st.get("diff_ci")
            margin = st.get("margin") or margin
            if d is None:
                continue
            err = [[d - ci[0]], [ci[1] - d]] if ci else None
            ax.errorbar([d], [i], xerr=err, fmt="o", color="#1f77b4", capsize=3)
        if margin:
            ax.axvspan(-margin, margin, color="#2ca02c", alpha=0.1)
            ax.set_xlim(-1.6 * margin, 1.6 * margin)
            ax.set_title(f"{m}: green = equivalence margin ±{margin:g}", fontsize=8)
        ax.axvline(0, color="k", lw=0.7)
        ax.set_yticks(range(len(names)), names, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel(f"{m}: adapter − baseline (lower is better)", fontsize=8)
    fig.suptitle("Image quality: mean paired difference, 95% CI", fontsize=9)
    fig.tight_layout()
    return fig


@lru_cache(maxsize=4)
def _figures_cached(key: str) -> tuple:
    summaries = dict(json.loads(key))
    return ((_png(accuracy_figure(summaries)), "accuracy per suite (drawn from summaries.json)"),
            (_png(quality_figure(summaries)), "image quality per suite (drawn from summaries.json)"))


def figures(report: ShippedReport) -> list[tuple]:
    """[(RGB image, caption)] drawn from the shipped summaries (kept in memory, once per content)."""
    return list(_figures_cached(json.dumps(list(report.summaries.items()))))


# ----------------------------------------------------------------------------- writing
_IMAGE_LINE = re.compile(r"^\s*!\[[^\]]*\]\([^)]*\)\s*$")


def suite_section(report_md: str, keep=None, drop=("Examples", "Method notes")) -> str:
    """An `eval.run` report.md as one section of the shipped report: headings one level down;
    no image links, sample images (the Examples section), per-machine timing or file list, since
    none of those ship. `keep` names the only ``##`` sections to keep (the title line goes with
    them unless it is None); `drop` those to leave out."""
    out, skipping = [], keep is not None
    for line in report_md.splitlines():
        if line.startswith("## "):
            title = line[3:].strip()
            skipping = title in drop if keep is None else title not in keep
        if skipping or _IMAGE_LINE.match(line) or line.startswith("| this invocation |") \
                or line.startswith("Files: `judgments.jsonl`"):
            continue
        out.append("#" + line if line.startswith("#") else line)
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip() + "\n"


def overview(summaries: dict[str, dict]) -> str:
    """One row per suite, narrow enough for the page: the prompt-level headline, accuracy per
    category, and the quality equivalence tests (`eval.compare` has the full table)."""
    from eval.compare import row
    from eval.formatting import MISSING, pct, pvalue
    from surlib.names import CATEGORIES, OVERALL

    rows = [row(name, s) for name, s in summaries.items()]
    measures = list(dict.fromkeys(m for r in rows for m in r["quality"]))
    sign = lambda x: MISSING if x is None else pct(x, sign=True, unit="")  # noqa: E731
    head = ["suite", "prompts × seeds", "Δ overall (pts) [95% CI]", "sign-flip p",
            *[f"{c}: base → adapter" for c in (*CATEGORIES, OVERALL)], *[f"{m} Δ (TOST)" for m in measures]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        ci = r["overall_ci"]
        cells = [f"`{r['run']}`", f"{r['prompts']} × {r['seeds']}",
                 f"**{sign(r['prompt_diff'])}** [{sign(ci[0]) if ci else MISSING}, {sign(ci[1]) if ci else MISSING}]",
                 pvalue(r["sign_flip_p"])]
        cells += [f"{pct(b, unit='')} → {pct(a, unit='')}" for b, a in (r[c] for c in (*CATEGORIES, OVERALL))]
        for m in measures:
            d, p, eq, margin = r["quality"].get(m, (None, None, None, None))
            cells.append(MISSING if d is None else f"{d:+.2f}" + (
                "" if p is None else f" ({'equivalent' if eq else 'not shown'} ±{margin:g}, p={pvalue(p)})"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def render(runs: dict[str, Path], summaries: dict[str, dict], generated_at: str) -> str:

    first = next(iter(summaries.values()))["config"]
    sha = (first.get("model_sha256") or {})
    seeds = first.get("seeds") or []
    lines = [
        "# Shipped evaluation: the toy SUR-adapter on the four toy suites\n",
        f"The adapter in `assets/toy/adapter` (sha256 `{str(sha.get('adapter'))[:12]}`) on the toy base model, "
        f"{first.get('suite_rows_used')} unseen scenes per suite × {len(seeds)} seeds, {first.get('steps')} steps, "
        f"guidance {first.get('guidance')}, toy judge; image quality by BRISQUE and the palette distance, "
        f"equivalence by TOST. Written {generated_at} by `{COMMAND}` "
        f"(`python -m surlib.studio.shipped_report`); the figures are drawn from `summaries.json`.\n",
        "| suite | prompts |\n|---|---|",
        *[f"| `{name}` | {SUITE_NOTES.get(name, '')} |" for name in summaries],
        "",
        "## Overview\n",
        "Δ = mean over prompts of (adapter − baseline accuracy), in points, with its 95% CI over prompts and "
        "the prompt-level sign-flip test; accuracies in %; image quality as the mean paired difference with "
        "the TOST equivalence test. Per suite below: the McNemar test, BRISQUE and palette details.\n",
        overview(summaries),
    ]
    for name, folder in runs.items():
        lines.append(f"\n## Suite `{name}`: {SUITE_NOTES.get(name, '')}\n")
        lines.append(suite_section((folder / "report.md").read_text(encoding="utf-8")).split("\n", 1)[1])
    notes = suite_section((next(iter(runs.values())) / "report.md").read_text(encoding="utf-8"),
                          keep=("Method notes",), drop=())
    lines.append("\n" + notes.replace("### Method notes", "## Method notes (every suite)", 1))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).rstrip() + "\n"


def check_weights(run: Path, summary: dict) -> None:
    """Refuse a run whose recorded model hashes are not those of the files in assets/toy."""
    from eval.config import EvalConfig, model_record

    cfg = summary.get("config", {})
    now = {role: m["sha256"] for role, m in
           model_record(EvalConfig(out=str(run), preset="toy", suite=cfg.get("suite_name") or "toy")).items()}
    then = cfg.get("model_sha256") or {}
    differ = sorted(role for role in now if then.get(role) != now[role])
    if differ:
        raise ValueError(f"{run} was made with other weights than the shipped ones ({', '.join(differ)} differ); "
                         f"rerun without --no-eval")


def build(runs_pattern: str = "runs/shipped-eval/{suite}", out: str | Path = SHIPPED_DIR,
          evaluate: bool = True, seeds: int = 4, suites=SUITES) -> Path:
    """Evaluate (or resume) each suite, then write report.md and summaries.json into `out`."""
    runs = {name: Path(runs_pattern.format(suite=name)) for name in suites}
    if evaluate:
        from eval.config import EvalConfig
        from eval.judges import make_judge
        from eval.runner import run_eval
        from surlib.presets import load_preset

        pipe = load_preset("toy")
        pipe.set_progress_bar_config(disable=True)
        judge = make_judge("toy", device="cpu")
        for name, folder in runs.items():
            print(f"evaluating {name} into {folder}", flush=True)
            run_eval(EvalConfig(out=str(folder), preset="toy", suite=name, seeds=seeds), pipe=pipe, judge=judge)
    summaries = {}
    for name, folder in runs.items():
        path = folder / "summary.json"
        if not path.is_file() or not (folder / "report.md").is_file():
            raise FileNotFoundError(f"{folder}: no finished eval.run (summary.json and report.md)")
        summary = json.loads(path.read_text())
        if not summary.get("complete"):
            raise ValueError(f"{folder}: the run is incomplete; rerun to finish it")
        check_weights(folder, summary)
        summaries[name] = trim_summary(summary)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    when = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    (out / SUMMARIES_FILE).write_text(json.dumps({"generated_at": when, "command": COMMAND, "suites": summaries},
                                                 indent=1, sort_keys=False) + "\n")
    (out / REPORT_FILE).write_text(render(runs, summaries, when), encoding="utf-8")
    return out / REPORT_FILE


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m surlib.studio.shipped_report", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", default="runs/shipped-eval/{suite}", help="run folder of each suite ({suite} is "
                                                                       "replaced; default: %(default)s)")
    p.add_argument("--out", default=str(SHIPPED_DIR), help="where report.md and summaries.json go (default: %(default)s)")
    p.add_argument("--seeds", type=int, default=4, help="seeds 0..N-1 per prompt (default: %(default)s)")
    p.add_argument("--no-eval", action="store_true", help="only build from the finished run folders")
    args = p.parse_args(argv)
    if "{suite}" not in args.runs:
        print("error: --runs must contain {suite}, e.g. runs/shipped-eval/{suite}", file=sys.stderr)
        return 2
    try:
        path = build(args.runs, args.out, evaluate=not args.no_eval, seeds=args.seeds)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
