"""The Results tab: the vote summary of `eval.stats.summarize_votes` as text, table and figure.

The numbers are computed in eval/stats.py (the project's one statistics module); this module
only decides how they are shown.
"""

from __future__ import annotations

import math

import numpy as np

from eval.formatting import pct, pvalue
from eval.records import json_safe

from ..names import OVERALL
from .studio import ADAPTER_LABEL

SMALL_N = 30  # below this many decisive votes the summary warns that the interval is wide

CATEGORY_COLUMNS = ["category", "votes", "decisive", "adapter_wins", "baseline_wins", "ties",
                    "both_bad", "win_rate", "ci_low", "ci_high", "p_value"]


def summary_markdown(summary: dict, label: str = ADAPTER_LABEL) -> str:
    o = summary[OVERALL]
    if summary["total_votes"] == 0:
        return "No votes yet. Cast some on the **Vote** tab, then refresh."
    if o["votes"] == 0:
        return f"{summary['total_votes']} votes, none on an adapter-vs-baseline pair."
    lines = [
        f"### {label} win rate: **{pct(o['win_rate'])}** "
        f"(95% Wilson interval {pct(o['ci_low'])} – {pct(o['ci_high'])})",
        f"over **{o['decisive']}** decisive votes ({label} {o['adapter_wins']}, "
        f"baseline {o['baseline_wins']}); sign test p = **{pvalue(o['p_value'])}** "
        "(exact two-sided binomial, H0: 50%).",
        "",
        f"Ties: {pct(o['tie_share'])} · both bad: {pct(o['both_bad_share'])} of {o['votes']} votes.",
    ]
    if o["decisive"] < SMALL_N:
        lines.append(f"\n*Fewer than {SMALL_N} decisive votes: the interval is wide; "
                     "a difference of a few points needs hundreds of votes.*")
    if summary.get("bradley_terry"):
        lines += ["", "#### Bradley-Terry ratings (Elo scale, 95% bootstrap interval, 100 rounds)", "",
                  "| system | rating | interval | votes |", "|---|---:|---:|---:|"]
        for r in summary["bradley_terry"]:
            lines.append(f"| {r['system']} | {r['rating']:.0f} | {r['low']:.0f} – {r['high']:.0f} | {r['votes']} |")
    return "\n".join(lines)


def category_rows(summary: dict) -> list[list]:
    """Per-category table rows (rounded; NaN as None) in CATEGORY_COLUMNS order."""
    out = []
    for c in summary["categories"]:
        row = []
        for k in CATEGORY_COLUMNS:
            v = c[k]
            row.append(round(v, 4) if isinstance(v, float) and not math.isnan(v) else
                       (None if isinstance(v, float) else v))
        out.append(row)
    return out


def summary_figure(summary: dict, label: str = ADAPTER_LABEL):
    """Matplotlib figure: outcome shares, and per-category win rates with Wilson intervals."""
    from matplotlib.figure import Figure  # not pyplot: thread-safe, nothing kept globally

    o = summary[OVERALL]
    cats = [c for c in summary["categories"] if c["decisive"] > 0]
    ncols = 2 if cats else 1
    fig = Figure(figsize=(5 * ncols + 1, 3.2))
    axes = fig.subplots(1, ncols, squeeze=False)
    ax = axes[0, 0]
    names = [f"{label}\nbetter", "baseline\nbetter", "tie", "both bad"]
    counts = [o["adapter_wins"], o["baseline_wins"], o["ties"], o["both_bad"]]
    ax.bar(names, counts, color=["#2b8cbe", "#a6bddb", "#bdbdbd", "#fdae6b"])
    ax.set_ylabel("votes")
    ax.set_title(f"{o['votes']} votes")
    if cats:
        ax = axes[0, 1]
        x = np.arange(len(cats))
        rates = np.array([c["win_rate"] for c in cats])
        err = np.array([[r - c["ci_low"] for r, c in zip(rates, cats)],
                        [c["ci_high"] - r for r, c in zip(rates, cats)]])
        ax.errorbar(x, rates, yerr=err, fmt="o", capsize=4, color="#2b8cbe")
        ax.axhline(0.5, ls="--", lw=1, color="grey")
        ax.set_xticks(x, [c["category"] for c in cats], rotation=30, ha="right")
        ax.set_ylim(0, 1)
        ax.set_ylabel(f"{label} win rate")
        ax.set_title("by category (95% Wilson)")
    fig.tight_layout()
    return fig


def results_page(summary: dict) -> tuple:
    """The Results tab's outputs from `Studio.results`: markdown, figure, category rows, the
    CSV path and the numbers (JSON-safe, without the CSV path)."""
    numbers = json_safe({k: v for k, v in summary.items() if k != "csv"})
    return (summary_markdown(summary), summary_figure(summary), category_rows(summary), summary["csv"],
            numbers)


__all__ = ["summary_markdown", "summary_figure", "category_rows", "results_page",
           "CATEGORY_COLUMNS", "SMALL_N"]
