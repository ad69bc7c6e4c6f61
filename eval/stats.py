"""Statistics of a paired baseline-vs-adapter evaluation (scipy / statsmodels, nothing hand-rolled).

Inputs are the per-image rows of a run as a pandas DataFrame with columns ``prompt_id``,
``category``, ``seed``, ``variant`` ("baseline" | "adapter"), ``correct`` (bool) and one column
per quality measure (``brisque``, ...). Baseline and adapter images of one (prompt, seed) share
their starting noise, so every comparison is paired on (prompt_id, seed).

* Accuracy per category and overall, per variant, with a 95% bootstrap CI that resamples
  PROMPTS (all seeds of a prompt move together: images of one prompt are not independent),
  seeded; plus the same bootstrap for the paired difference adapter - baseline.
* McNemar's exact test on the discordant (prompt, seed) pairs, per category and overall, with
  the 2x2 table reported.
* Quality (BRISQUE; lower is better): mean +- sd per variant, paired t-test, Wilcoxon
  signed-rank, and a paired TOST equivalence test with a margin fixed before the run. Only TOST
  can support "no meaningful difference"; a non-significant t-test cannot.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from scipy import stats as st
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.weightstats import ttost_paired

from surlib.names import CATEGORIES, OVERALL, VARIANTS


def _groups(df: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    cats = [c for c in CATEGORIES if (df["category"] == c).any()]
    extra = sorted(set(df["category"]) - set(CATEGORIES))
    return [(c, df[df["category"] == c]) for c in cats + extra] + [(OVERALL, df)]


def _check_columns(df: pd.DataFrame, cols) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"results lack column(s) {missing}; have {list(df.columns)}")


def bootstrap_ratio(k: np.ndarray, n: np.ndarray, n_boot: int = 2000, seed: int = 0,
                    confidence: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of sum(k) / sum(n), resampling the units (prompts) with replacement.

    ``k`` and ``n`` are per-prompt numerators and denominators (correct images, images). k may
    be negative (paired differences). Returns (nan, nan) with fewer than two prompts."""
    k = np.asarray(k, float)
    n = np.asarray(n, float)
    if len(k) < 2:
        return (math.nan, math.nan)
    if np.all(k / n == (k / n)[0]):  # no spread: every resample gives the same value
        v = float(k.sum() / n.sum())
        return (v, v)
    res = st.bootstrap((k, n), lambda a, b, axis=-1: a.sum(axis=axis) / b.sum(axis=axis), paired=True,
                       vectorized=True, n_resamples=n_boot, confidence_level=confidence,
                       method="percentile", rng=np.random.default_rng(seed))
    return (float(res.confidence_interval.low), float(res.confidence_interval.high))


def accuracy_table(df: pd.DataFrame, n_boot: int = 2000, seed: int = 0, confidence: float = 0.95) -> list[dict]:
    """One row per (category incl. "overall", variant): prompts, images, correct, accuracy, CI."""
    _check_columns(df, ["prompt_id", "category", "variant", "correct"])
    out = []
    for cat, g in _groups(df):
        for variant in VARIANTS:
            gv = g[g["variant"] == variant]
            if gv.empty:
                continue
            per = gv.groupby("prompt_id")["correct"].agg(["sum", "count"])
            lo, hi = bootstrap_ratio(per["sum"].to_numpy(), per["count"].to_numpy(), n_boot, seed, confidence)
            out.append({"category": cat, "variant": variant, "prompts": int(len(per)),
                        "images": int(per["count"].sum()), "correct": int(per["sum"].sum()),
                        "accuracy": float(per["sum"].sum() / per["count"].sum()),
                        "ci_low": lo, "ci_high": hi})
    return out


def wide_frame(df: pd.DataFrame, value: str) -> pd.DataFrame:
    """Frame indexed by (category, prompt_id, seed) with one column per variant of `value`
    (NaN where a variant is missing); only observed (prompt, seed) keys appear."""
    _check_columns(df, ["prompt_id", "category", "seed", "variant", value])
    keys = ["category", "prompt_id", "seed", "variant"]
    wide = df.drop_duplicates(subset=keys).set_index(keys)[value].unstack("variant")
    for v in VARIANTS:
        if v not in wide.columns:
            wide[v] = np.nan
    return wide[list(VARIANTS)]


def paired_frame(df: pd.DataFrame, value: str) -> pd.DataFrame:
    """`wide_frame` with only the complete pairs."""
    return wide_frame(df, value).dropna()


def accuracy_difference(df: pd.DataFrame, n_boot: int = 2000, seed: int = 0, confidence: float = 0.95) -> list[dict]:
    """Paired accuracy difference (adapter - baseline) per category and overall, bootstrap over prompts."""
    wide = paired_frame(df.assign(correct=df["correct"].astype(float)), "correct").reset_index()
    out = []
    for cat, g in _groups(wide):
        if g.empty:
            continue
        per = g.assign(d=g["adapter"] - g["baseline"]).groupby("prompt_id")["d"].agg(["sum", "count"])
        lo, hi = bootstrap_ratio(per["sum"].to_numpy(), per["count"].to_numpy(), n_boot, seed, confidence)
        out.append({"category": cat, "pairs": int(per["count"].sum()), "prompts": int(len(per)),
                    "difference": float(per["sum"].sum() / per["count"].sum()), "ci_low": lo, "ci_high": hi})
    return out


def mcnemar_exact(both: int, base_only: int, adapter_only: int, neither: int) -> float:
    """Exact McNemar p-value (two-sided binomial test on the discordant pairs) of a 2x2 table
    [[both right, baseline only], [adapter only, both wrong]]."""
    if base_only + adapter_only == 0:
        return 1.0
    return float(mcnemar([[both, base_only], [adapter_only, neither]], exact=True).pvalue)


def mcnemar_table(df: pd.DataFrame, alpha: float = 0.05) -> list[dict]:
    """McNemar's exact test per category and overall on (prompt, seed) pairs, with the table."""
    wide = paired_frame(df.assign(correct=df["correct"].astype(float)), "correct").reset_index()
    out = []
    for cat, g in _groups(wide):
        if g.empty:
            continue
        b, a = g["baseline"].astype(bool), g["adapter"].astype(bool)
        both, base_only = int((b & a).sum()), int((b & ~a).sum())
        adapter_only, neither = int((~b & a).sum()), int((~b & ~a).sum())
        p = mcnemar_exact(both, base_only, adapter_only, neither)
        if p < alpha:
            verdict = ("adapter more accurate" if adapter_only > base_only else "baseline more accurate")
            words = f"{verdict} (McNemar exact p={p:.3g})"
        else:
            words = f"difference not significant at alpha={alpha:g} (McNemar exact p={p:.3g})"
        out.append({"category": cat, "pairs": int(len(g)), "both_correct": both, "baseline_only": base_only,
                    "adapter_only": adapter_only, "both_wrong": neither, "p_value": p, "conclusion": words})
    return out


def paired_quality(baseline, adapter, margin: float | None = 5.0, alpha: float = 0.05,
                   lower_is_better: bool = True) -> dict:
    """Paired statistics of a quality score: per-variant mean/sd, the difference adapter - baseline
    (mean, sd, 95% t CI), paired t-test, Wilcoxon signed-rank and TOST within +-margin."""
    x0 = np.asarray(baseline, float)
    x1 = np.asarray(adapter, float)
    if x0.shape != x1.shape:
        raise ValueError(f"paired scores need equal lengths, got {x0.shape} and {x1.shape}")
    keep = np.isfinite(x0) & np.isfinite(x1)
    dropped = int((~keep).sum())
    x0, x1 = x0[keep], x1[keep]
    n = len(x0)
    out: dict = {"pairs": n, "dropped_pairs": dropped, "margin": margin, "alpha": alpha,
                 "lower_is_better": lower_is_better}
    if n == 0:
        out["conclusion"] = "no complete pairs"
        return out
    d = x1 - x0
    sd = lambda v: float(np.std(v, ddof=1)) if len(v) > 1 else math.nan  # noqa: E731
    out.update({
        "baseline_mean": float(x0.mean()), "baseline_sd": sd(x0),
        "adapter_mean": float(x1.mean()), "adapter_sd": sd(x1),
        "diff_mean": float(d.mean()), "diff_sd": sd(d),
    })
    if n < 2:
        out["conclusion"] = "too few pairs for tests (need at least 2)"
        return out
    spread = out["diff_sd"] > 0
    if spread:
        sem = out["diff_sd"] / math.sqrt(n)
        tcrit = st.t.ppf(0.975, n - 1)
        out["diff_ci"] = [float(d.mean() - tcrit * sem), float(d.mean() + tcrit * sem)]
        t = st.ttest_rel(x1, x0)
        out["t_stat"], out["t_p"] = float(t.statistic), float(t.pvalue)
    else:  # every pair differs by the same amount: no sampling variation to test against
        out["diff_ci"] = [float(d.mean()), float(d.mean())]
        out["t_stat"], out["t_p"] = math.nan, (1.0 if d.mean() == 0 else 0.0)
    if np.any(d != 0):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            w = st.wilcoxon(x1, x0)
        out["wilcoxon_stat"], out["wilcoxon_p"] = float(w.statistic), float(w.pvalue)
    else:
        out["wilcoxon_stat"], out["wilcoxon_p"] = 0.0, 1.0
    if margin is not None:
        if margin <= 0:
            raise ValueError(f"the equivalence margin must be positive, got {margin}")
        if spread:
            p, lower, upper = ttost_paired(x1, x0, -margin, margin)
            out["tost_p"] = float(p)
            out["tost_lower_p"], out["tost_upper_p"] = float(lower[1]), float(upper[1])
        else:
            out["tost_p"] = 0.0 if abs(d.mean()) < margin else 1.0
        out["equivalent"] = bool(out["tost_p"] < alpha)
    out["conclusion"] = quality_conclusion(out)
    return out


def quality_conclusion(s: dict) -> str:
    """The words of a paired quality comparison; equivalence is claimed only from TOST."""
    parts = []
    if s.get("margin") is not None and "tost_p" in s:
        m = s["margin"]
        if s["equivalent"]:
            parts.append(f"equivalent within ±{m:g} (TOST p={s['tost_p']:.3g})")
        else:
            parts.append(f"not shown equivalent within ±{m:g} (TOST p={s['tost_p']:.3g})")
    else:
        parts.append("no equivalence margin set, so equivalence is not tested")
    better = "lower" if s.get("lower_is_better", True) else "higher"
    diff = s["diff_mean"]
    sig = s["t_p"] < s["alpha"]
    side = "adapter lower" if diff < 0 else "adapter higher"
    if sig:
        parts.append(f"the mean difference adapter − baseline = {diff:+.2f} is statistically significant "
                     f"({side}; paired t p={s['t_p']:.3g}, Wilcoxon p={s['wilcoxon_p']:.3g}; {better} is better)")
    else:
        parts.append(f"mean difference adapter − baseline = {diff:+.2f} (paired t p={s['t_p']:.3g}, "
                     f"Wilcoxon p={s['wilcoxon_p']:.3g}; {better} is better)")
    return "; ".join(parts)


def quality_table(df: pd.DataFrame, column: str, margin: float | None = 5.0, alpha: float = 0.05,
                  lower_is_better: bool = True) -> dict:
    """`paired_quality` of a quality column over all (prompt, seed) pairs (rows with NaN are dropped)."""
    wide = wide_frame(df, column)
    return paired_quality(wide["baseline"].to_numpy(float), wide["adapter"].to_numpy(float), margin, alpha,
                          lower_is_better)


def summarize(df: pd.DataFrame, quality_columns: dict[str, dict] | None = None, n_boot: int = 2000,
              seed: int = 0, alpha: float = 0.05) -> dict:
    """All statistics of a run. `quality_columns` maps a column to its options
    (``margin``, ``lower_is_better``); default: BRISQUE with margin 5."""
    if quality_columns is None:
        quality_columns = {"brisque": {"margin": 5.0, "lower_is_better": True}}
    out = {
        "accuracy": accuracy_table(df, n_boot, seed, 1 - alpha),
        "accuracy_difference": accuracy_difference(df, n_boot, seed, 1 - alpha),
        "mcnemar": mcnemar_table(df, alpha),
        "quality": {},
        "bootstrap": {"resamples": n_boot, "seed": seed, "unit": "prompt", "method": "percentile",
                      "confidence": 1 - alpha},
    }
    for col, opts in quality_columns.items():
        if col in df.columns and df[col].notna().any():
            out["quality"][col] = quality_table(df, col, opts.get("margin"), alpha, opts.get("lower_is_better", True))
    return out


__all__ = ["accuracy_table", "accuracy_difference", "bootstrap_ratio", "mcnemar_exact", "mcnemar_table",
           "paired_frame", "wide_frame", "paired_quality", "quality_conclusion", "quality_table", "summarize"]


# ---- preference: blind votes
# Statistics of the studio's blind votes (surlib.studio; the page that shows them is
# surlib/studio/results.py). Input is a list of vote dicts as
# `surlib.studio.votes.VoteStore.votes()` returns them (fields used: choice, adapter_side,
# left_system, right_system, category, prompt_id).
#
# * Adapter win rate = adapter wins / decisive votes (left/right votes on adapter-vs-baseline
#   pairs); ties and "both bad" are reported as shares of all such votes, not folded in.
# * 95% interval: Wilson score, which behaves at small n and near 0/1 where the normal
#   interval does not.
# * Sign test: exact two-sided binomial test of H0 "adapter wins half the decisive votes";
#   ties are dropped, as a sign test does.
# * Bradley-Terry (only when votes name more than two systems): P(i beats j) =
#   1 / (1 + 10**((R_j - R_i) / 400)) on the Elo scale, mean rating 1000, fitted as a
#   binomial GLM with logit link on the votes summed per ordered pair; a tie or "both bad"
#   counts as half a win each way; a tiny ridge keeps ratings finite for unbeaten systems and
#   pins the mean (the likelihood alone does not see a common shift). Intervals: bootstrap
#   resamples of the votes, 2.5/97.5 percentiles (as Chatbot Arena does).

from collections import Counter, defaultdict  # noqa: E402

from statsmodels.genmod.families import Binomial  # noqa: E402
from statsmodels.genmod.generalized_linear_model import GLM  # noqa: E402
from statsmodels.stats.proportion import proportion_confint  # noqa: E402

ELO_SCALE = 400.0 / math.log(10.0)
ELO_MEAN = 1000.0
BT_RIDGE = 1e-4
_BT_SCORE = {"left": 1.0, "right": 0.0, "tie": 0.5, "both_bad": 0.5}


def wilson_interval(successes: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Two-sided (1 - alpha) Wilson score interval of a proportion; (nan, nan) when n == 0."""
    if n <= 0:
        return (math.nan, math.nan)
    lo, hi = proportion_confint(successes, n, alpha=alpha, method="wilson")
    return float(lo), float(hi)


def sign_test(successes: int, n: int) -> float:
    """Exact two-sided binomial p-value of `successes` out of `n` under p = 0.5; nan when n == 0."""
    if n <= 0:
        return math.nan
    return float(st.binomtest(successes, n, 0.5, alternative="two-sided").pvalue)


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


def vote_counts(votes, alpha: float = 0.05) -> dict:
    """Outcome counts, win rate with its Wilson interval, sign test and shares of one vote group."""
    c = Counter(o for o in map(adapter_outcome, votes) if o is not None)
    wins, losses, ties, bad = c["adapter"], c["baseline"], c["tie"], c["both_bad"]
    n = wins + losses + ties + bad
    decisive = wins + losses
    lo, hi = wilson_interval(wins, decisive, alpha)
    return {
        "votes": n, "adapter_wins": wins, "baseline_wins": losses, "ties": ties, "both_bad": bad,
        "decisive": decisive,
        "win_rate": wins / decisive if decisive else math.nan,
        "ci_low": lo, "ci_high": hi,
        "p_value": sign_test(wins, decisive),
        "tie_share": ties / n if n else math.nan,
        "both_bad_share": bad / n if n else math.nan,
    }


def _vote_systems(votes) -> list[str]:
    return sorted({s for v in votes for s in (v.get("left_system"), v.get("right_system")) if s})


def summarize_votes(votes, bt_rounds: int = 100, seed: int = 0, alpha: float = 0.05) -> dict:
    """Overall adapter win rate etc., per-category rows, and Bradley-Terry when > 2 systems."""
    votes = list(votes)
    by_cat: dict[str, list[dict]] = defaultdict(list)
    for v in votes:
        if adapter_outcome(v) is not None:
            by_cat[v.get("category") or ("typed by voter" if not v.get("prompt_id") else "uncategorised")].append(v)
    categories = [{"category": cat, **vote_counts(rows, alpha)} for cat, rows in sorted(by_cat.items())]
    systems = _vote_systems(votes)
    bt = bootstrap_bradley_terry(votes, bt_rounds, seed, alpha) if len(systems) > 2 else None
    return {OVERALL: vote_counts(votes, alpha), "categories": categories, "systems": systems,
            "bradley_terry": bt, "total_votes": len(votes), "alpha": alpha}


def _bt_data(votes, systems):
    """(left index, right index, left's score) of every vote between two known, distinct systems."""
    index = {s: i for i, s in enumerate(systems)}
    rows = [(index[v.get("left_system")], index[v.get("right_system")], _BT_SCORE[v.get("choice")])
            for v in votes
            if v.get("left_system") in index and v.get("right_system") in index
            and v.get("left_system") != v.get("right_system") and v.get("choice") in _BT_SCORE]
    if not rows:
        return np.zeros(0, dtype=int), np.zeros(0, dtype=int), np.zeros(0)
    i_idx, j_idx, y = zip(*rows)
    return np.array(i_idx, dtype=int), np.array(j_idx, dtype=int), np.array(y, dtype=float)


def _bt_fit(i_idx, j_idx, y, k: int) -> np.ndarray:
    """Strengths (natural-log scale, mean 0) by a ridge-penalised binomial GLM. Votes are summed
    per ordered pair first, so a fit costs O(pairs) whatever the number of votes."""
    if len(y) == 0:
        return np.zeros(k)
    key = i_idx * k + j_idx
    wins = np.bincount(key, y, minlength=k * k)
    games = np.bincount(key, minlength=k * k).astype(float)
    used = np.flatnonzero(games > 0)
    a, b = np.divmod(used, k)
    design = np.zeros((len(used), k))
    design[np.arange(len(used)), a] = 1.0
    design[np.arange(len(used)), b] = -1.0
    w, n = wins[used], games[used]
    model = GLM(np.column_stack([w, n - w]), design, family=Binomial())
    # statsmodels minimises -loglike / nobs + alpha |beta|^2 / 2: alpha = ridge / nobs is the
    # ridge on the summed log-likelihood.
    beta = np.asarray(model.fit_regularized(alpha=BT_RIDGE / len(used), L1_wt=0.0).params)
    return beta - beta.mean()


def _elo(beta) -> np.ndarray:
    return ELO_MEAN + ELO_SCALE * np.asarray(beta)


def bradley_terry(votes, systems=None) -> dict[str, float]:
    """Bradley-Terry ratings on the Elo scale (mean 1000) from left/right/tie/both-bad votes."""
    systems = list(systems) if systems is not None else _vote_systems(votes)
    i_idx, j_idx, y = _bt_data(votes, systems)
    return {s: float(r) for s, r in zip(systems, _elo(_bt_fit(i_idx, j_idx, y, len(systems))))}


def bootstrap_bradley_terry(votes, rounds: int = 100, seed: int = 0, alpha: float = 0.05) -> list[dict]:
    """Ratings with bootstrap percentile intervals, best first: [{system, rating, low, high, votes}]."""
    votes = list(votes)
    systems = _vote_systems(votes)
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
    samples = np.array(samples) if samples else point[None, :]
    lo = np.percentile(samples, 100 * alpha / 2, axis=0)
    hi = np.percentile(samples, 100 * (1 - alpha / 2), axis=0)
    played = np.bincount(i_idx, minlength=k) + np.bincount(j_idx, minlength=k)
    rows = [{"system": s, "rating": float(r), "low": float(lo_), "high": float(hi_), "votes": int(p)}
            for s, r, lo_, hi_, p in zip(systems, _elo(point), _elo(lo), _elo(hi), played)]
    return sorted(rows, key=lambda r: -r["rating"])


__all__ += ["wilson_interval", "sign_test", "adapter_outcome", "vote_counts", "summarize_votes",
            "bradley_terry", "bootstrap_bradley_terry"]
