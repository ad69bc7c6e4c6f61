"""Statistics of the blind votes: adapter win rate, Wilson interval, sign test, Bradley-Terry.

Input everywhere is a list of vote dicts as `surlib.studio.votes.VoteStore.votes()` returns them
(fields used: choice, adapter_side, left_system, right_system, category).

* Adapter win rate = adapter wins / decisive votes (left/right votes on adapter-vs-baseline
  pairs); ties and "both bad" are reported as shares of all such votes, not folded in.
* 95% interval: Wilson score (`statsmodels.stats.proportion.proportion_confint(method="wilson")`),
  which behaves at small n and near 0/1 where the normal interval does not.
* Sign test: exact two-sided binomial test of H0 "adapter wins half the decisive votes"
  (`scipy.stats.binomtest`); ties are dropped, as a sign test does.
* Bradley-Terry (only when votes name more than two systems): maximum likelihood of
  P(i beats j) = 1 / (1 + 10**((R_j - R_i) / 400)) on the Elo scale, mean rating 1000; a tie or
  "both bad" counts as half a win each way; a tiny ridge keeps ratings finite for unbeaten
  systems. Intervals: 100 bootstrap resamples of the votes, 2.5/97.5 percentiles (as Chatbot
  Arena does).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from typing import Iterable, Sequence

import numpy as np

ALPHA = 0.05
ELO_SCALE = 400.0 / math.log(10.0)
SMALL_N = 30  # below this many decisive votes the summary warns that the interval is wide


# ----------------------------------------------------------------------------- basic tests
def wilson_interval(successes: int, n: int, alpha: float = ALPHA) -> tuple[float, float]:
    """Two-sided (1 - alpha) Wilson score interval of a proportion; (nan, nan) when n == 0."""
    if n <= 0:
        return (float("nan"), float("nan"))
    from statsmodels.stats.proportion import proportion_confint

    lo, hi = proportion_confint(successes, n, alpha=alpha, method="wilson")
    return float(lo), float(hi)


def sign_test(successes: int, n: int) -> float:
    """Exact two-sided binomial p-value of `successes` out of `n` under p = 0.5; nan when n == 0."""
    if n <= 0:
        return float("nan")
    from scipy.stats import binomtest

    return float(binomtest(successes, n, 0.5, alternative="two-sided").pvalue)


def adapter_outcome(vote: dict) -> str | None:
    """"adapter", "baseline", "tie" or "both_bad" for an adapter-vs-baseline vote; None otherwise."""
    side = vote.get("adapter_side")
    if side not in ("left", "right"):
        return None
    choice = vote.get("choice")
    if choice in ("tie", "both_bad"):
        return choice
    if choice in ("left", "right"):
        return "adapter" if choice == side else "baseline"
    return None


def _counts(votes: Iterable[dict]) -> dict:
    c = Counter(o for o in map(adapter_outcome, votes) if o is not None)
    wins, losses, ties, bad = c["adapter"], c["baseline"], c["tie"], c["both_bad"]
    n = wins + losses + ties + bad
    decisive = wins + losses
    lo, hi = wilson_interval(wins, decisive)
    return {
        "votes": n, "adapter_wins": wins, "baseline_wins": losses, "ties": ties, "both_bad": bad,
        "decisive": decisive,
        "win_rate": wins / decisive if decisive else float("nan"),
        "ci_low": lo, "ci_high": hi,
        "p_value": sign_test(wins, decisive),
        "tie_share": ties / n if n else float("nan"),
        "both_bad_share": bad / n if n else float("nan"),
    }


# ----------------------------------------------------------------------------- summary
def summarize(votes: Sequence[dict], bt_rounds: int = 100, seed: int = 0) -> dict:
    """Overall adapter win rate etc., per-category rows, and Bradley-Terry when > 2 systems."""
    votes = list(votes)
    overall = _counts(votes)
    by_cat: dict[str, list[dict]] = defaultdict(list)
    for v in votes:
        if adapter_outcome(v) is not None:
            by_cat[v.get("category") or ("typed by voter" if not v.get("prompt_id") else "uncategorised")].append(v)
    categories = [{"category": cat, **_counts(rows)} for cat, rows in sorted(by_cat.items())]
    systems = sorted({s for v in votes for s in (v.get("left_system"), v.get("right_system")) if s})
    bt = bootstrap_bradley_terry(votes, rounds=bt_rounds, seed=seed) if len(systems) > 2 else None
    return {"overall": overall, "categories": categories, "systems": systems,
            "bradley_terry": bt, "total_votes": len(votes), "alpha": ALPHA}


# ----------------------------------------------------------------------------- Bradley-Terry
def _bt_data(votes: Sequence[dict], systems: Sequence[str]):
    index = {s: i for i, s in enumerate(systems)}
    i_idx, j_idx, y = [], [], []
    for v in votes:
        a, b = v.get("left_system"), v.get("right_system")
        if a not in index or b not in index or a == b:
            continue
        score = {"left": 1.0, "right": 0.0, "tie": 0.5, "both_bad": 0.5}.get(v.get("choice"))
        if score is None:
            continue
        i_idx.append(index[a])
        j_idx.append(index[b])
        y.append(score)
    return np.array(i_idx, dtype=int), np.array(j_idx, dtype=int), np.array(y, dtype=float)


def _bt_fit(i_idx, j_idx, y, k: int, ridge: float = 1e-4, max_iter: int = 100) -> np.ndarray:
    """ML strengths (natural-log scale, mean 0) by damped Newton; votes are summed per ordered
    pair first, so a fit costs O(pairs) per iteration whatever the number of votes."""
    if len(y) == 0:
        return np.zeros(k)
    key = i_idx * k + j_idx
    wins = np.bincount(key, y, minlength=k * k)
    games = np.bincount(key, minlength=k * k).astype(float)
    used = games > 0
    a, b = np.divmod(np.flatnonzero(used), k)
    w, n = wins[used], games[used]

    def loss(beta):
        d = beta[a] - beta[b]
        # -[w log s(d) + (n - w) log s(-d)], computed stably
        return np.sum(w * np.logaddexp(0.0, -d) + (n - w) * np.logaddexp(0.0, d)) + 0.5 * ridge * beta @ beta

    beta = np.zeros(k)
    current = loss(beta)
    for _ in range(max_iter):
        d = beta[a] - beta[b]
        p = 1.0 / (1.0 + np.exp(-d))
        g_d = n * p - w
        grad = np.bincount(a, g_d, minlength=k) - np.bincount(b, g_d, minlength=k) + ridge * beta
        h = n * p * (1.0 - p)
        hess = ridge * np.eye(k)
        np.add.at(hess, (a, a), h)
        np.add.at(hess, (b, b), h)
        np.add.at(hess, (a, b), -h)
        np.add.at(hess, (b, a), -h)
        step = np.linalg.solve(hess, grad)
        t = 1.0
        while t > 1e-8:  # backtracking: Newton can overshoot when a system is unbeaten
            trial = beta - t * step
            value = loss(trial)
            if value <= current:
                break
            t *= 0.5
        beta, done = trial, current - value < 1e-12
        current = value
        if done or np.max(np.abs(t * step)) < 1e-9:
            break
    return beta - beta.mean()


def bradley_terry(votes: Sequence[dict], systems: Sequence[str] | None = None) -> dict[str, float]:
    """Bradley-Terry ratings on the Elo scale (mean 1000) from left/right/tie/both-bad votes."""
    systems = list(systems) if systems is not None else sorted(
        {s for v in votes for s in (v.get("left_system"), v.get("right_system")) if s})
    i_idx, j_idx, y = _bt_data(votes, systems)
    beta = _bt_fit(i_idx, j_idx, y, len(systems))
    return {s: float(1000.0 + ELO_SCALE * b) for s, b in zip(systems, beta)}


def bootstrap_bradley_terry(votes: Sequence[dict], rounds: int = 100, seed: int = 0,
                            alpha: float = ALPHA) -> list[dict]:
    """Ratings with bootstrap percentile intervals, best first: [{system, rating, low, high, votes}]."""
    votes = list(votes)
    systems = sorted({s for v in votes for s in (v.get("left_system"), v.get("right_system")) if s})
    if not systems:
        return []
    i_idx, j_idx, y = _bt_data(votes, systems)
    k = len(systems)
    point = _bt_fit(i_idx, j_idx, y, k)
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(rounds if len(y) else 0):
        pick = rng.integers(0, len(y), len(y))
        samples.append(_bt_fit(i_idx[pick], j_idx[pick], y[pick], k))
    samples = np.array(samples) if samples else np.tile(point, (1, 1))
    lo = np.percentile(samples, 100 * alpha / 2, axis=0)
    hi = np.percentile(samples, 100 * (1 - alpha / 2), axis=0)
    played = Counter()
    for a, b in zip(i_idx, j_idx):
        played[a] += 1
        played[b] += 1
    rows = [{"system": s, "rating": float(1000.0 + ELO_SCALE * point[n]), "low": float(1000.0 + ELO_SCALE * lo[n]),
             "high": float(1000.0 + ELO_SCALE * hi[n]), "votes": int(played[n])} for n, s in enumerate(systems)]
    return sorted(rows, key=lambda r: -r["rating"])


# ----------------------------------------------------------------------------- presentation
def _pct(x: float) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}%"


def _p(x: float) -> str:
    if x is None or math.isnan(x):
        return "n/a"
    return f"{x:.3g}" if x >= 1e-4 else "< 0.0001"


def summary_markdown(summary: dict, label: str = "SUR-adapter") -> str:
    o = summary["overall"]
    if summary["total_votes"] == 0:
        return "No votes yet. Cast some on the **Vote** tab, then refresh."
    if o["votes"] == 0:
        return f"{summary['total_votes']} votes, none on an adapter-vs-baseline pair."
    lines = [
        f"### {label} win rate: **{_pct(o['win_rate'])}** "
        f"(95% Wilson interval {_pct(o['ci_low'])} – {_pct(o['ci_high'])})",
        f"over **{o['decisive']}** decisive votes ({label} {o['adapter_wins']}, "
        f"baseline {o['baseline_wins']}); sign test p = **{_p(o['p_value'])}** "
        "(exact two-sided binomial, H0: 50%).",
        "",
        f"Ties: {_pct(o['tie_share'])} · both bad: {_pct(o['both_bad_share'])} of {o['votes']} votes.",
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


CATEGORY_COLUMNS = ["category", "votes", "decisive", "adapter_wins", "baseline_wins", "ties",
                    "both_bad", "win_rate", "ci_low", "ci_high", "p_value"]


def category_rows(summary: dict) -> list[list]:
    """Per-category table rows (rounded) in CATEGORY_COLUMNS order."""
    out = []
    for c in summary["categories"]:
        row = []
        for k in CATEGORY_COLUMNS:
            v = c[k]
            row.append(round(v, 4) if isinstance(v, float) and not math.isnan(v) else
                       (None if isinstance(v, float) else v))
        out.append(row)
    return out


def summary_figure(summary: dict, label: str = "SUR-adapter"):
    """Matplotlib figure: outcome shares, and per-category win rates with Wilson intervals."""
    from matplotlib.figure import Figure  # not pyplot: thread-safe, nothing kept globally

    o = summary["overall"]
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


__all__ = ["wilson_interval", "sign_test", "adapter_outcome", "summarize", "bradley_terry",
           "bootstrap_bradley_terry", "summary_markdown", "summary_figure", "category_rows",
           "CATEGORY_COLUMNS"]
