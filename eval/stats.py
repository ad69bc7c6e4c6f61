"""Statistics of a paired baseline-vs-adapter evaluation (scipy / statsmodels, nothing hand-rolled).

Input: a run's per-image rows (``prompt_id``, ``category``, ``seed``, ``variant``, ``correct``, a
column per quality measure); both images of a (prompt, seed) share their starting noise. The
prompt is the unit: its seeds share its words, so they are one cluster, and pairs taken as
independent overstate the evidence. Headline accuracy test (`prompt_test`): per-prompt
differences, sign-flip permutation test, Wilcoxon, bootstrap CI over prompts; McNemar on pairs
is secondary. Quality: t, Wilcoxon and TOST (the only support for "no meaningful difference",
margin fixed before the run) on per-prompt means, and on pairs as a secondary."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from scipy import stats as st
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.weightstats import ttost_paired

from surlib.names import CATEGORIES, OVERALL, VARIANTS

MCNEMAR_CAVEAT = "secondary: treats (prompt, seed) pairs as independent"
N_FLIPS = 100_000  # random sign patterns of the prompt-level test (exact below 2**17 patterns)


def _groups(df: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    cats = [c for c in CATEGORIES if (df["category"] == c).any()]
    extra = sorted(set(df["category"]) - set(CATEGORIES))
    return [(c, df[df["category"] == c]) for c in cats + extra] + [(OVERALL, df)]


def _check_columns(df: pd.DataFrame, cols) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"results lack column(s) {missing}; have {list(df.columns)}")


def bootstrap_ratio(k: np.ndarray, n: np.ndarray, n_boot: int = 2000, seed: int = 0,
                    confidence: float = 0.95, kind: str = "proportion") -> tuple[float, float]:
    """Percentile bootstrap CI of sum(k) / sum(n), resampling the units (prompts) with replacement.

    ``k``, ``n``: per-prompt numerators and denominators; ``kind`` "difference" when k are paired
    differences. (nan, nan) with fewer than two prompts. With no spread (every prompt the same
    ratio, e.g. 100%) the bootstrap's zero-width interval would claim a certainty few prompts
    cannot give: then it is the Wilson interval with n = the number of prompts of the proportion;
    for a difference, v ± the Wilson upper bound of "0 of n prompts differ" (conservative)."""
    if kind not in ("proportion", "difference"):
        raise ValueError(f"bootstrap_ratio kind must be 'proportion' or 'difference', got {kind!r}")
    k, n = np.asarray(k, float), np.asarray(n, float)
    if len(k) < 2:  # no interval from one cluster
        return (math.nan, math.nan)
    if np.all(k / n == (k / n)[0]):
        v, m = float(k.sum() / n.sum()), len(k)
        if kind == "proportion":
            return wilson_interval(v * m, m, 1 - confidence)
        u = wilson_interval(0, m, 1 - confidence)[1]
        return (max(-1.0, v - u), min(1.0, v + u))
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
                        "accuracy": float(per["sum"].sum() / per["count"].sum()), "ci_low": lo, "ci_high": hi})
    return out


def wide_frame(df: pd.DataFrame, value: str) -> pd.DataFrame:
    """Frame indexed by (category, prompt_id, seed) with one column per variant of `value`
    (NaN where a variant is missing); only observed (prompt, seed) keys appear."""
    _check_columns(df, ["prompt_id", "category", "seed", "variant", value])
    keys = ["category", "prompt_id", "seed", "variant"]
    return df.drop_duplicates(subset=keys).set_index(keys)[value].unstack("variant").reindex(columns=list(VARIANTS))


def _correct_pairs(df: pd.DataFrame) -> pd.DataFrame:
    """Complete (prompt, seed) pairs of verdicts as floats, one row per pair."""
    return wide_frame(df.assign(correct=df["correct"].astype(float)), "correct").dropna().reset_index()


def accuracy_difference(df: pd.DataFrame, n_boot: int = 2000, seed: int = 0, confidence: float = 0.95) -> list[dict]:
    """Paired accuracy difference (adapter - baseline) per category and overall, bootstrap over prompts."""
    out = []
    for cat, g in _groups(_correct_pairs(df)):
        if g.empty:
            continue
        per = g.assign(d=g["adapter"] - g["baseline"]).groupby("prompt_id")["d"].agg(["sum", "count"])
        lo, hi = bootstrap_ratio(per["sum"].to_numpy(), per["count"].to_numpy(), n_boot, seed, confidence,
                                 kind="difference")
        out.append({"category": cat, "pairs": int(per["count"].sum()), "prompts": int(len(per)),
                    "difference": float(per["sum"].sum() / per["count"].sum()), "ci_low": lo, "ci_high": hi})
    return out


def _wilcoxon(d) -> tuple[float, float]:
    """Wilcoxon signed-rank (statistic, p) of differences; (0, 1) when all are zero."""
    if not np.any(d):
        return (0.0, 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        w = st.wilcoxon(d)
    return (float(w.statistic), float(w.pvalue))


def sign_flip_test(d, n_flips: int = N_FLIPS, seed: int = 0) -> dict:
    """Two-sided sign-flip permutation test of H0 "mean(d) = 0, d symmetric about 0" on one
    value per cluster (scipy's one-sample permutation test): p = share of sign patterns with
    |mean| >= the observed |mean|, over all 2**n patterns when that many fit in `n_flips`, else
    (1 + count) / (1 + n_flips) over seeded random patterns."""
    d = np.asarray(d, float)
    if d.ndim != 1 or len(d) == 0 or not np.all(np.isfinite(d)):
        raise ValueError(f"sign_flip_test needs a non-empty 1-d array of finite values, got shape {d.shape}")
    exact = 2 ** len(d) <= n_flips
    if len(d) == 1:  # scipy wants two values; both sign patterns of one give the same |mean|
        return {"p_value": 1.0, "exact": exact, "resamples": 2}
    res = st.permutation_test((d,), lambda x, axis=-1: np.abs(np.mean(x, axis=axis)), vectorized=True,
                              permutation_type="samples", n_resamples=n_flips, alternative="greater",
                              batch=10_000, rng=np.random.default_rng(seed))
    return {"p_value": float(res.pvalue), "exact": exact, "resamples": int(len(res.null_distribution))}


def prompt_test(df: pd.DataFrame, n_flips: int = N_FLIPS, n_boot: int = 2000, seed: int = 0,
                alpha: float = 0.05) -> list[dict]:
    """The headline accuracy test per category and overall, with prompts as the unit (see the
    module docstring): mean per-prompt difference, its bootstrap CI, sign-flip and Wilcoxon p."""
    out = []
    for cat, g in _groups(_correct_pairs(df)):
        if g.empty:
            continue
        d = g.assign(d=g["adapter"] - g["baseline"]).groupby("prompt_id")["d"].mean().to_numpy()
        lo, hi = bootstrap_ratio(d, np.ones_like(d), n_boot, seed, 1 - alpha, kind="difference")
        flip = sign_flip_test(d, n_flips, seed)
        wil = _wilcoxon(d)[1] if len(d) > 1 else math.nan
        p, mean = flip["p_value"], float(d.mean())
        head = ("adapter more accurate" if mean > 0 else "baseline more accurate") if p < alpha else \
            f"difference not significant at alpha={alpha:g}"
        out.append({"category": cat, "prompts": int(len(d)), "pairs": int(len(g)), "mean_difference": mean,
                    "ci_low": lo, "ci_high": hi, "wilcoxon_p": wil, **flip, "conclusion":
                    f"{head} (prompt-level sign-flip p={p:.3g}, Wilcoxon p={wil:.3g}, {len(d)} prompts)"})
    return out


def mcnemar_exact(both: int, base_only: int, adapter_only: int, neither: int) -> float:
    """Exact McNemar p-value (two-sided binomial test on the discordant pairs) of a 2x2 table
    [[both right, baseline only], [adapter only, both wrong]]."""
    if base_only + adapter_only == 0:
        return 1.0
    return float(mcnemar([[both, base_only], [adapter_only, neither]], exact=True).pvalue)


def mcnemar_table(df: pd.DataFrame, alpha: float = 0.05) -> list[dict]:
    """McNemar's exact test per category and overall on (prompt, seed) pairs (`MCNEMAR_CAVEAT`)."""
    out = []
    for cat, g in _groups(_correct_pairs(df)):
        if g.empty:
            continue
        b, a = g["baseline"].astype(bool), g["adapter"].astype(bool)
        both, base_only = int((b & a).sum()), int((b & ~a).sum())
        adapter_only, neither = int((~b & a).sum()), int((~b & ~a).sum())
        p = mcnemar_exact(both, base_only, adapter_only, neither)
        head = ("adapter more accurate" if adapter_only > base_only else "baseline more accurate") if p < alpha \
            else f"difference not significant at alpha={alpha:g}"
        out.append({"category": cat, "pairs": int(len(g)), "both_correct": both, "baseline_only": base_only,
                    "adapter_only": adapter_only, "both_wrong": neither, "p_value": p,
                    "conclusion": f"{head} (McNemar exact p={p:.3g})", "caveat": MCNEMAR_CAVEAT})
    return out


def paired_quality(baseline, adapter, margin: float | None = 5.0, alpha: float = 0.05,
                   lower_is_better: bool = True) -> dict:
    """Paired statistics of a quality score: per-variant mean/sd, the difference adapter - baseline
    (mean, sd, (1 - alpha) t CI), paired t-test, Wilcoxon signed-rank and TOST within +-margin."""
    x0, x1 = np.asarray(baseline, float), np.asarray(adapter, float)
    if x0.shape != x1.shape:
        raise ValueError(f"paired scores need equal lengths, got {x0.shape} and {x1.shape}")
    if margin is not None and margin <= 0:
        raise ValueError(f"the equivalence margin must be positive, got {margin}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}")
    keep = np.isfinite(x0) & np.isfinite(x1)
    x0, x1, n = x0[keep], x1[keep], int(keep.sum())
    out: dict = {"pairs": n, "dropped_pairs": int((~keep).sum()), "margin": margin, "alpha": alpha,
                 "lower_is_better": lower_is_better}
    if n == 0:
        return {**out, "conclusion": "no complete pairs"}
    d = x1 - x0
    sd = lambda v: float(np.std(v, ddof=1)) if len(v) > 1 else math.nan  # noqa: E731
    out.update({"baseline_mean": float(x0.mean()), "baseline_sd": sd(x0), "adapter_mean": float(x1.mean()),
                "adapter_sd": sd(x1), "diff_mean": float(d.mean()), "diff_sd": sd(d)})
    if n < 2:
        return {**out, "conclusion": "too few pairs for tests (need at least 2)"}
    spread = out["diff_sd"] > 0
    if spread:
        half = st.t.ppf(1 - alpha / 2, n - 1) * out["diff_sd"] / math.sqrt(n)
        out["diff_ci"] = [float(d.mean() - half), float(d.mean() + half)]
        t = st.ttest_rel(x1, x0)
        out["t_stat"], out["t_p"] = float(t.statistic), float(t.pvalue)
    else:  # every pair differs by the same amount: no sampling variation to test against
        out.update(diff_ci=[float(d.mean())] * 2, t_stat=math.nan, t_p=1.0 if d.mean() == 0 else 0.0)
    out["wilcoxon_stat"], out["wilcoxon_p"] = _wilcoxon(d)
    if margin is not None:
        if spread:
            p, lower, upper = ttost_paired(x1, x0, -margin, margin)
            out.update(tost_p=float(p), tost_lower_p=float(lower[1]), tost_upper_p=float(upper[1]))
        else:
            out["tost_p"] = 0.0 if abs(d.mean()) < margin else 1.0
        out["equivalent"] = bool(out["tost_p"] < alpha)
    out["conclusion"] = quality_conclusion(out)
    return out


def quality_conclusion(s: dict) -> str:
    """The words of a paired quality comparison; equivalence is claimed only from TOST."""
    m = s.get("margin")
    if m is not None and "tost_p" in s:
        parts = [f"{'' if s['equivalent'] else 'not shown '}equivalent within ±{m:g} (TOST p={s['tost_p']:.3g})"]
    else:
        parts = ["no equivalence margin set, so equivalence is not tested"]
    better = "lower" if s.get("lower_is_better", True) else "higher"
    diff, tests = s["diff_mean"], f"paired t p={s['t_p']:.3g}, Wilcoxon p={s['wilcoxon_p']:.3g}"
    if s["t_p"] < s["alpha"]:
        side = "adapter lower" if diff < 0 else "adapter higher"
        return "; ".join(parts + [f"the mean difference adapter − baseline = {diff:+.2f} is statistically "
                                  f"significant ({side}; {tests}; {better} is better)"])
    return "; ".join(parts + [f"mean difference adapter − baseline = {diff:+.2f} ({tests}; {better} is better)"])


def quality_table(df: pd.DataFrame, column: str, margin: float | None = 5.0, alpha: float = 0.05,
                  lower_is_better: bool = True, level: str = "pair") -> dict:
    """`paired_quality` of a column over complete (prompt, seed) pairs (level "pair"), or over
    per-prompt means of those pairs (level "prompt": ``pairs`` then counts prompts)."""
    if level not in ("pair", "prompt"):
        raise ValueError(f"level must be 'pair' or 'prompt', got {level!r}")
    wide = wide_frame(df, column)
    full = wide.dropna()
    if level == "prompt":
        full = full.groupby(level=["category", "prompt_id"]).mean()
    out = paired_quality(full["baseline"].to_numpy(float), full["adapter"].to_numpy(float), margin, alpha,
                         lower_is_better)
    return {**out, "unit": level, "dropped_pairs": int(len(wide) - len(wide.dropna()))}


def summarize(df: pd.DataFrame, quality_columns: dict[str, dict] | None = None, n_boot: int = 2000,
              seed: int = 0, alpha: float = 0.05, n_flips: int = N_FLIPS, exclude_prompts=()) -> dict:
    """All statistics of a run. `quality_columns` maps a column to its options
    (``margin``, ``lower_is_better``); default: BRISQUE with margin 5. ``quality[col]`` is the
    prompt-level analysis, ``quality[col]["pair_level"]`` the (prompt, seed) one. Prompts in
    `exclude_prompts` are left out of the accuracy statistics only (their images' quality counts)."""
    if quality_columns is None:
        quality_columns = {"brisque": {"margin": 5.0, "lower_is_better": True}}
    acc = df[~df["prompt_id"].astype(str).isin(set(map(str, exclude_prompts)))]
    out = {"prompt_test": prompt_test(acc, n_flips, n_boot, seed, alpha),
           "accuracy": accuracy_table(acc, n_boot, seed, 1 - alpha),
           "accuracy_difference": accuracy_difference(acc, n_boot, seed, 1 - alpha),
           "mcnemar": mcnemar_table(acc, alpha), "quality": {},
           "bootstrap": {"resamples": n_boot, "seed": seed, "unit": "prompt", "method": "percentile",
                         "confidence": 1 - alpha},
           "sign_flip": {"resamples": n_flips, "seed": seed, "unit": "prompt"}}
    for col, opts in quality_columns.items():
        if col in df.columns and df[col].notna().any():
            args = (df, col, opts.get("margin"), alpha, opts.get("lower_is_better", True))
            out["quality"][col] = {**quality_table(*args, level="prompt"), "pair_level": quality_table(*args)}
    return out


__all__ = ["MCNEMAR_CAVEAT", "N_FLIPS", "accuracy_table", "accuracy_difference", "bootstrap_ratio",
           "sign_flip_test", "prompt_test", "mcnemar_exact", "mcnemar_table", "wide_frame",
           "paired_quality", "quality_conclusion", "quality_table", "summarize"]


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
