"""Figures and a self-contained ``report.md`` for an evaluation run (matplotlib, Agg backend)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from surlib.names import OVERALL, VARIANTS

from .formatting import MISSING, number, pct, pvalue
from .stats import MCNEMAR_CAVEAT, wide_frame

VARIANT_COLORS = {"baseline": "#7f7f7f", "adapter": "#1f77b4"}


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend (servers and CI have no display)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def error_bars(y: np.ndarray, low: np.ndarray, high: np.ndarray) -> list[np.ndarray]:
    """[below, above] distances of a CI for matplotlib's `yerr`: 0 where unknown, and clipped at
    0, because a bound computed in floating point can land a hair past its value (2.8e-17 above
    a 0% score) and matplotlib refuses negative error bars."""
    return [np.clip(np.nan_to_num(y - low, nan=0.0), 0.0, None),
            np.clip(np.nan_to_num(high - y, nan=0.0), 0.0, None)]


def accuracy_figure(summary: dict, path: Path) -> None:
    plt = pyplot()
    acc = pd.DataFrame(summary["accuracy"])
    cats = list(dict.fromkeys(acc["category"]))
    x = np.arange(len(cats))
    w = 0.38
    fig, ax = plt.subplots(figsize=(1.6 + 1.5 * len(cats), 3.6))
    for j, v in enumerate(VARIANTS):
        sub = acc[acc["variant"] == v].set_index("category").reindex(cats)
        y = sub["accuracy"].to_numpy(float)
        err = error_bars(y, sub["ci_low"].to_numpy(float), sub["ci_high"].to_numpy(float))
        ax.bar(x + (j - 0.5) * w, y, w, yerr=err, capsize=3, label=v, color=VARIANT_COLORS[v])
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
    plt = pyplot()
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


def _ci(row: dict) -> str:
    if row.get("ci_low") is None or math.isnan(row["ci_low"]):
        return MISSING
    return f"[{pct(row['ci_low'], sign=True, unit='')}, {pct(row['ci_high'], sign=True, unit='')}]"


def _unit(st: dict) -> str:
    return "per-prompt means" if st.get("unit") == "prompt" else "(prompt, seed) pairs"


def render_report(summary: dict, df: pd.DataFrame) -> str:
    cfg = summary.get("config", {})
    model = cfg.get("preset") or f"{cfg.get('base')} + {cfg.get('adapter')}"
    L: list[str] = []
    L.append(f"# SUR-adapter evaluation: {cfg.get('suite_name', cfg.get('suite'))} suite, {model}\n")
    if not summary.get("complete", True):
        L.append(f"> **Incomplete run**: {summary['images']} of {summary['expected_images']} images judged; "
                 f"rerun the same command to finish it.\n")

    # Conclusions first: the prompt-level test leads, McNemar on pairs is secondary.
    L.append("## Conclusions\n")
    for t in summary.get("prompt_test", []):
        L.append(f"- **{t['category']}** accuracy: {t['conclusion']}; mean per-prompt difference "
                 f"{pct(t['mean_difference'], sign=True, unit=' pt')} {_ci(t)}.")
    for col, st in summary["quality"].items():
        if "conclusion" in st:
            L.append(f"- **{col}** ({_unit(st)}): {st['conclusion']}.")
    uw = summary.get("unknown_words")
    if uw and uw.get("prompts_excluded"):
        L.append(f"- {uw['prompts_excluded']} of {uw['prompts_checked']} prompts have words the toy world never "
                 f"uses and are left out of the accuracy statistics (see *Prompts outside the toy vocabulary*).")
    L.append(f"- McNemar on (prompt, seed) pairs ({MCNEMAR_CAVEAT}): " + "; ".join(
        f"{m['category']} {m['conclusion']}" for m in summary["mcnemar"]) + ".")
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
        ("model sha256", "; ".join(f"{k} {str(v)[:12]}" for k, v in (cfg.get("model_sha256") or {}).items()
                                   if v) or None),
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

    if summary.get("prompt_test"):
        flips = summary.get("sign_flip") or {}
        L.append("### Prompt-level test (the headline)\n")
        L.append("The prompt is the unit: d = adapter accuracy − baseline accuracy over the prompt's seeds. "
                 f"Two-sided sign-flip permutation test of mean(d) (exact when every sign pattern fits in "
                 f"{flips.get('resamples', MISSING)} random flips, seed {flips.get('seed', MISSING)}); Wilcoxon "
                 "signed-rank on d as a second check; 95% bootstrap CI over prompts.\n")
        L.append("| category | prompts | mean d | 95% CI | sign-flip p | Wilcoxon p | conclusion |")
        L.append("|---|---:|---|---|---:|---:|---|")
        for t in summary["prompt_test"]:
            L.append(f"| {t['category']} | {t['prompts']} | {pct(t['mean_difference'], sign=True, unit=' pt')} | "
                     f"{_ci(t)} | {pvalue(t['p_value'])}{' (exact)' if t.get('exact') else ''} | "
                     f"{pvalue(t['wilcoxon_p'])} | {t['conclusion']} |")
        L.append("")

    L.append(f"### McNemar's exact test ({MCNEMAR_CAVEAT})\n")
    L.append("Pairs are (prompt, seed): both images share prompt and starting noise. The exact test is a "
             "binomial test on the discordant pairs; seeds of one prompt are not independent, so its p-value "
             "overstates the evidence when a prompt's seeds agree.\n")
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
            L.append(f"| {100 * (1 - st.get('alpha', 0.05)):g}% t CI of the mean difference | | | "
                     f"[{number(ci[0], 2)}, {number(ci[1], 2)}] |")
        L.append("")
        L.append("| test | statistic | p |\n|---|---:|---:|")
        L.append(f"| paired t-test | {number(st.get('t_stat'), 3)} | {pvalue(st.get('t_p'))} |")
        L.append(f"| Wilcoxon signed-rank | {number(st.get('wilcoxon_stat'), 1)} | {pvalue(st.get('wilcoxon_p'))} |")
        if "tost_p" in st:
            L.append(f"| TOST (paired, margin ±{st['margin']:g}) | | {pvalue(st['tost_p'])} |")
        L.append("")
        count = f"Prompts: {st['pairs']} (per-prompt means over seeds)" if st.get("unit") == "prompt" \
            else f"Pairs: {st['pairs']}"
        L.append(f"**Conclusion** ({_unit(st)}): {st.get('conclusion', '')}. {count}"
                 + (f" ({st['dropped_pairs']} (prompt, seed) pairs dropped: a score was missing or NaN, e.g. a "
                    "flat image)" if st.get("dropped_pairs") else "") + ".\n")
        pl = st.get("pair_level") or {}
        if pl.get("pairs", 0) >= 2:
            L.append(f"Secondary, (prompt, seed) pairs as independent: {pl['pairs']} pairs, mean difference "
                     f"{number(pl.get('diff_mean'), 2)}, paired t p={pvalue(pl.get('t_p'))}, Wilcoxon "
                     f"p={pvalue(pl.get('wilcoxon_p'))}"
                     + (f", TOST p={pvalue(pl['tost_p'])}" if "tost_p" in pl else "") + ".\n")
        L.append(f"![{col} distributions and paired differences](figures/{col}.png)\n")

    if uw and uw.get("prompts_excluded"):
        L.append("## Prompts outside the toy vocabulary\n")
        L.append(f"{uw['prompts_excluded']} of {uw['prompts_checked']} prompts ({uw['images_excluded']} images) use "
                 "words the toy world's grammar never uses; the toy judge would score images of words no toy "
                 "model was trained on, so they are left out of the accuracy statistics (their images still "
                 "count for quality, and their rows are in `judgments.jsonl` with `unknown_words`).\n")
        L.append("| prompt | unknown words |\n|---|---|")
        for pid, words in list(uw["prompts"].items())[:20]:
            L.append(f"| {pid} | {', '.join(words)} |")
        if len(uw["prompts"]) > 20:
            L.append(f"| … | {len(uw['prompts']) - 20} more in summary.json |")
        L.append("")

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
    L.append("- The prompt is the unit of every headline test: accuracy CIs and the sign-flip test resample or "
             "flip prompts, not images, because seeds of one prompt are not independent. McNemar's test treats "
             "each (prompt, seed) pair as one observation and is reported as a secondary line.")
    L.append("- Where every prompt has the same accuracy (e.g. 100%) the bootstrap has no spread; the CI shown "
             "is then a Wilson interval with n = the number of prompts (for a difference, d ± the Wilson upper bound of 0 of n), "
             "not a zero-width one.")
    L.append("- Equivalence of image quality is claimed only from the TOST test with the margin fixed before "
             "the run; a non-significant t-test is not evidence of equal quality.")
    L.append("- BRISQUE is the paper's metric; it correlates only weakly with human judgments of generated images.")
    nsfw = int(df["nsfw"].fillna(False).astype(bool).sum()) if "nsfw" in df else 0
    if nsfw:
        L.append(f"- {nsfw} image(s) were flagged by the safety checker (blacked out); they count as judged.")
    L.append("\nFiles: `judgments.jsonl` (one row per image), `results.csv`, `summary.json`, `images/`, `figures/`.\n")
    return "\n".join(L)


__all__ = ["write_report", "render_report", "accuracy_figure", "quality_figure"]
