"""Figures and a self-contained ``report.md`` for an evaluation run (matplotlib, Agg backend)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from surlib.names import OVERALL, VARIANTS

from .formatting import MISSING, number, pct, pvalue
from .stats import wide_frame

VARIANT_COLORS = {"baseline": "#7f7f7f", "adapter": "#1f77b4"}


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def accuracy_figure(summary: dict, path: Path) -> None:
    plt = _plt()
    acc = pd.DataFrame(summary["accuracy"])
    cats = list(dict.fromkeys(acc["category"]))
    x = np.arange(len(cats))
    w = 0.38
    fig, ax = plt.subplots(figsize=(1.6 + 1.5 * len(cats), 3.6))
    for j, v in enumerate(VARIANTS):
        sub = acc[acc["variant"] == v].set_index("category").reindex(cats)
        y = sub["accuracy"].to_numpy(float)
        lo = np.nan_to_num(y - sub["ci_low"].to_numpy(float), nan=0.0)
        hi = np.nan_to_num(sub["ci_high"].to_numpy(float) - y, nan=0.0)
        ax.bar(x + (j - 0.5) * w, y, w, yerr=[lo, hi], capsize=3, label=v, color=VARIANT_COLORS[v])
    ax.set_xticks(x, cats)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("accuracy")
    ax.set_title("Accuracy per category (95% bootstrap CI over prompts)", fontsize=9)
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def quality_figure(df: pd.DataFrame, column: str, stats: dict, path: Path) -> None:
    """Histograms of a quality score per variant, and of the paired differences with the TOST margin."""
    plt = _plt()
    wide = wide_frame(df, column)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.4))
    vals = [wide[v].dropna().to_numpy(float) for v in VARIANTS]
    allv = np.concatenate(vals) if vals else np.array([])
    bins = np.histogram_bin_edges(allv, bins=min(30, max(5, len(allv) // 4))) if allv.size else 10
    for v in VARIANTS:
        if wide[v].notna().any():
            a1.hist(wide[v].dropna(), bins=bins, alpha=0.55, label=f"{v} (mean {np.nanmean(wide[v]):.1f})",
                    color=VARIANT_COLORS[v])
    a1.set_xlabel(column)
    a1.set_ylabel("images")
    a1.set_title(f"{column} per variant", fontsize=9)
    a1.legend(frameon=False, fontsize=8)
    d = (wide["adapter"] - wide["baseline"]).dropna().to_numpy(float)
    if len(d):
        a2.hist(d, bins=min(30, max(5, len(d) // 3)), color="#9467bd", alpha=0.8)
        a2.axvline(0, color="k", lw=0.8)
        a2.axvline(d.mean(), color="#d62728", lw=1.5, label=f"mean {d.mean():+.2f}")
        m = stats.get("margin")
        if m:
            for s in (-m, m):
                a2.axvline(s, color="#2ca02c", ls="--", lw=1)
            a2.axvspan(-m, m, color="#2ca02c", alpha=0.07, label=f"equivalence margin ±{m:g}")
        a2.legend(frameon=False, fontsize=8)
    a2.set_xlabel(f"{column}: adapter − baseline (same prompt and seed)")
    a2.set_title("paired differences", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(out: Path, summary: dict, df: pd.DataFrame) -> Path:
    """Write figures/ and report.md into `out`; returns the report's path."""
    out = Path(out)
    figs = out / "figures"
    figs.mkdir(parents=True, exist_ok=True)
    accuracy_figure(summary, figs / "accuracy.png")
    for col, st in summary["quality"].items():
        quality_figure(df, col, st, figs / f"{col}.png")
    text = render_report(summary, df)
    path = out / "report.md"
    path.write_text(text, encoding="utf-8")
    return path


def render_report(summary: dict, df: pd.DataFrame) -> str:
    cfg = summary.get("config", {})
    model = cfg.get("preset") or f"{cfg.get('base')} + {cfg.get('adapter')}"
    L: list[str] = []
    L.append(f"# SUR-adapter evaluation: {cfg.get('suite_name', cfg.get('suite'))} suite, {model}\n")
    if not summary.get("complete", True):
        L.append(f"> **Incomplete run**: {summary['images']} of {summary['expected_images']} images judged; "
                 f"rerun the same command to finish it.\n")

    # Conclusions first.
    L.append("## Conclusions\n")
    for m in summary["mcnemar"]:
        L.append(f"- **{m['category']}** accuracy: {m['conclusion']}; discordant pairs: adapter-only right "
                 f"{m['adapter_only']}, baseline-only right {m['baseline_only']}.")
    for col, st in summary["quality"].items():
        if "conclusion" in st:
            L.append(f"- **{col}**: {st['conclusion']}.")
    L.append("")

    # Configuration.
    L.append("## Run\n")
    L.append("| setting | value |\n|---|---|")
    seeds = cfg.get("seeds") or []
    rows = [
        ("preset", cfg.get("preset")), ("base model", cfg.get("model_base") or cfg.get("base")),
        ("adapter", cfg.get("model_adapter") or cfg.get("adapter")),
        ("suite", f"{cfg.get('suite_name')} ({cfg.get('suite_rows_used')} prompts; sha256 "
                  f"{str(cfg.get('suite_sha256'))[:12]})"),
        ("categories", ", ".join(cfg.get("categories_used") or [])),
        ("seeds", f"{len(seeds)} ({', '.join(map(str, seeds[:8]))}{', …' if len(seeds) > 8 else ''})"),
        ("steps", cfg.get("steps")), ("guidance", cfg.get("guidance")),
        ("size", f"{cfg.get('height') or 'default'} x {cfg.get('width') or 'default'}"),
        ("negative prompt", cfg.get("negative_prompt")), ("judge", cfg.get("judge")),
        ("quality measures", ", ".join(cfg.get("quality") or [])),
        ("BRISQUE equivalence margin (fixed before the run)", f"±{cfg.get('margin')}"),
        ("date", cfg.get("date")), ("commit", cfg.get("commit") or "unknown (not a git checkout)"),
        ("images judged", f"{summary.get('images')} of {summary.get('expected_images')}"),
    ]
    t = summary.get("timings") or {}
    if t:
        rows.append(("this invocation", f"{t.get('wall_s', 0):.1f} s wall; {t.get('pairs_generated', 0)} pairs "
                                        f"generated in {t.get('generate_s', 0):.1f} s; judge {t.get('judge_s', 0):.1f} s; "
                                        f"quality {t.get('quality_s', 0):.1f} s"))
    for k, v in rows:
        if v is not None and v != "":
            L.append(f"| {k} | {v} |")
    L.append("")

    # Accuracy.
    acc = pd.DataFrame(summary["accuracy"])
    diff = {d["category"]: d for d in summary["accuracy_difference"]}
    L.append("## Accuracy\n")
    L.append("Share of images the judge scored right; 95% CI from a bootstrap that resamples prompts "
             f"({summary['bootstrap']['resamples']} resamples, seed {summary['bootstrap']['seed']}).\n")
    L.append("| category | prompts | images per variant | baseline | adapter | adapter − baseline |")
    L.append("|---|---:|---:|---|---|---|")
    for cat in dict.fromkeys(acc["category"]):
        sub = acc[acc["category"] == cat].set_index("variant")
        cells = []
        for v in VARIANTS:
            if v in sub.index:
                r = sub.loc[v]
                cells.append(f"{pct(r['accuracy'])} [{pct(r['ci_low'])}, {pct(r['ci_high'])}]")
            else:
                cells.append(MISSING)
        d = diff.get(cat)
        dtxt = MISSING if not d else pct(d["difference"], sign=True, unit=" pt")
        if d and not math.isnan(d["ci_low"]):
            dtxt += f" [{pct(d['ci_low'], sign=True, unit='')}, {pct(d['ci_high'], sign=True, unit='')}]"
        first = sub.iloc[0]
        name = f"**{cat}**" if cat == OVERALL else cat
        L.append(f"| {name} | {first['prompts']} | {first['images']} | {cells[0]} | {cells[1]} | {dtxt} |")
    L.append("\n![accuracy per category](figures/accuracy.png)\n")

    L.append("### Paired comparison (McNemar's exact test)\n")
    L.append("Pairs are (prompt, seed): both images share prompt and starting noise. The exact test is a "
             "binomial test on the discordant pairs.\n")
    L.append("| category | pairs | both right | baseline only | adapter only | both wrong | exact p | conclusion |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---|")
    for m in summary["mcnemar"]:
        L.append(f"| {m['category']} | {m['pairs']} | {m['both_correct']} | {m['baseline_only']} | "
                 f"{m['adapter_only']} | {m['both_wrong']} | {pvalue(m['p_value'])} | {m['conclusion']} |")
    L.append("")

    # Quality.
    for col, st in summary["quality"].items():
        L.append(f"## Image quality: {col} ({'lower' if st.get('lower_is_better', True) else 'higher'} is better)\n")
        if st.get("pairs", 0) == 0:
            L.append("No complete pairs.\n")
            continue
        L.append("| | baseline | adapter | adapter − baseline |\n|---|---|---|---|")
        L.append(f"| mean ± sd | {number(st.get('baseline_mean'), 2)} ± {number(st.get('baseline_sd'), 2)} | "
                 f"{number(st.get('adapter_mean'), 2)} ± {number(st.get('adapter_sd'), 2)} | "
                 f"{number(st.get('diff_mean'), 2)} ± {number(st.get('diff_sd'), 2)} |")
        ci = st.get("diff_ci")
        if ci:
            L.append(f"| 95% CI of the mean difference | | | [{number(ci[0], 2)}, {number(ci[1], 2)}] |")
        L.append("")
        L.append("| test | statistic | p |\n|---|---:|---:|")
        L.append(f"| paired t-test | {number(st.get('t_stat'), 3)} | {pvalue(st.get('t_p'))} |")
        L.append(f"| Wilcoxon signed-rank | {number(st.get('wilcoxon_stat'), 1)} | {pvalue(st.get('wilcoxon_p'))} |")
        if "tost_p" in st:
            L.append(f"| TOST (paired, margin ±{st['margin']:g}) | | {pvalue(st['tost_p'])} |")
        L.append("")
        L.append(f"**Conclusion:** {st.get('conclusion', '')}. Pairs: {st['pairs']}"
                 + (f" ({st['dropped_pairs']} dropped: a score was missing or NaN, e.g. a flat image)"
                    if st.get("dropped_pairs") else "") + ".\n")
        L.append(f"![{col} distributions and paired differences](figures/{col}.png)\n")

    # Examples.
    L.append("## Examples\n")
    L.append("| prompt | baseline | adapter |\n|---|---|---|")
    first_seed = df["seed"].min()
    ex = df[df["seed"] == first_seed]
    for cat in dict.fromkeys(ex["category"]):
        for pid in list(dict.fromkeys(ex[ex["category"] == cat]["prompt_id"]))[:2]:
            pair = ex[ex["prompt_id"] == pid].set_index("variant")
            if not all(v in pair.index for v in VARIANTS):
                continue
            cells = []
            for v in VARIANTS:
                r = pair.loc[v]
                mark = "✓" if r["correct"] else "✗"
                cells.append(f"![{v}]({r['image']}) <br>{mark} “{str(r['answer'])[:40]}”")
            prompt = str(pair.iloc[0]["prompt"]).replace("|", "/")
            L.append(f"| {cat}: {prompt} (seed {first_seed}) | {cells[0]} | {cells[1]} |")
    L.append("")

    L.append("## Method notes\n")
    L.append("- Baseline and adapter images of a (prompt, seed) come from one batched denoising pass with "
             "identical starting noise, so every comparison is paired.")
    L.append("- Accuracy CIs resample prompts, not images: seeds of one prompt are not independent. McNemar's "
             "test treats each (prompt, seed) pair as one observation.")
    L.append("- Equivalence of image quality is claimed only from the TOST test with the margin fixed before "
             "the run; a non-significant t-test is not evidence of equal quality.")
    L.append("- BRISQUE is the paper's metric; it correlates only weakly with human judgments of generated images.")
    nsfw = int(df["nsfw"].fillna(False).astype(bool).sum()) if "nsfw" in df else 0
    if nsfw:
        L.append(f"- {nsfw} image(s) were flagged by the safety checker (blacked out); they count as judged.")
    L.append("\nFiles: `judgments.jsonl` (one row per image), `results.csv`, `summary.json`, `images/`, `figures/`.\n")
    return "\n".join(L)


__all__ = ["write_report", "render_report", "accuracy_figure", "quality_figure"]
