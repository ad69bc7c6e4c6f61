"""The Results tab: the vote summary of `eval.stats.summarize_votes` as text, table and figure,
the per-image checks beside the judge's (`eval.agreement`), and the votes still needed
(`eval.power`).

The numbers are computed in eval/ (stats.py, agreement.py, power.py) and gathered by tally.py;
this module only decides how they are shown.
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
CHECK_COLUMNS = ["attribute", "variant", "human yes", "human no", "human unsure", "human accuracy",
                 "judge accuracy", "judged", "both judged", "agreement", "kappa"]
DASH = "—"  # no number: nothing judged (e.g. no automatic judge for real models), or undefined


def _num(v, digits: int = 3):
    return DASH if v is None or (isinstance(v, float) and math.isnan(v)) else round(float(v), digits)


def check_rows(summary: dict) -> list[list]:
    """The per-image checks table (CHECK_COLUMNS): human and judge accuracy per attribute and
    variant, agreement where both judged the same image; "—" where there is no number."""
    out = []
    for r in summary.get("checks") or []:
        variant = ADAPTER_LABEL if r["variant"] == "adapter" else r["variant"]
        out.append([r["attribute"], variant, r["human_yes"], r["human_no"], r["human_unsure"],
                    _num(r["human_accuracy"]), _num(r["judge_accuracy"]), r["judge_n"] or DASH,
                    r["both"] or DASH, _num(r["agreement"]), _num(r["kappa"])])
    return out


def power_markdown(summary: dict) -> list[str]:
    """The "votes still needed" table beside the Wilson interval."""
    rows = summary.get("power") or []
    if not rows:
        return []
    p = rows[0]
    lines = ["", f"#### Votes needed (power {p['power']:.0%}, two-sided α = {p['alpha']:g}, H0: 50%)", "",
             "| true win rate | decisive votes needed | more than now |", "|---:|---:|---:|"]
    lines += [f"| {pct(r['win_rate'])} | {r['needed']} | {r['more']} |" for r in rows]
    lines.append("\n*Normal approximation on the arcsine scale (statsmodels); the same for the mirror "
                 "rate below 50%.*")
    return lines


def your_votes_markdown(summary: dict) -> list[str]:
    if "your_votes" not in summary:
        return []
    who = "your Hugging Face account" if summary.get("voter_kind") == "account" else "your network address"
    return [f"**Your votes:** {summary['your_votes']} here ({summary['your_votes_all']} in all), "
            f"counted by {who}.", ""]


def summary_markdown(summary: dict, label: str = ADAPTER_LABEL) -> str:
    o = summary[OVERALL]
    mine = your_votes_markdown(summary)
    if summary["total_votes"] == 0:
        return "\n".join(mine + ["No votes yet. Cast some on the **Vote** tab, then refresh."])
    if o["votes"] == 0:
        return "\n".join(mine + [f"{summary['total_votes']} votes, none on an adapter-vs-baseline pair."])
    lines = mine + [
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
    lines += power_markdown(summary)
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
    CSV path, the numbers (JSON-safe, without the CSV path) and the per-image checks rows."""
    numbers = json_safe({k: v for k, v in summary.items() if k != "csv"})
    return (summary_markdown(summary), summary_figure(summary), category_rows(summary), summary["csv"],
            numbers, check_rows(summary))


__all__ = ["summary_markdown", "summary_figure", "category_rows", "check_rows", "power_markdown",
           "results_page", "CATEGORY_COLUMNS", "CHECK_COLUMNS", "SMALL_N", "DASH"]
