"""Statistics against hand-computed cases (scipy's binomial test, one-sided t-tests)."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from eval.stats import (accuracy_difference, accuracy_table, bootstrap_ratio, mcnemar_exact, mcnemar_table,
                        paired_quality, quality_table, summarize)


def paired_df(outcomes, seeds=1, category="counting", start=0):
    """Rows for (baseline_correct, adapter_correct) outcomes, one prompt per outcome, repeated per seed."""
    rows = []
    for i, (b, a) in enumerate(outcomes):
        for s in range(seeds):
            rows.append({"prompt_id": f"{category}-{start + i}", "category": category, "seed": s,
                         "variant": "baseline", "correct": bool(b)})
            rows.append({"prompt_id": f"{category}-{start + i}", "category": category, "seed": s,
                         "variant": "adapter", "correct": bool(a)})
    return pd.DataFrame(rows)


def table_outcomes(both, base_only, adapter_only, neither):
    return [(1, 1)] * both + [(1, 0)] * base_only + [(0, 1)] * adapter_only + [(0, 0)] * neither


def test_mcnemar_exact_equals_binomial_test_on_discordant_pairs():
    df = paired_df(table_outcomes(10, 2, 9, 5))
    (m,) = [r for r in mcnemar_table(df) if r["category"] == "counting"]
    assert (m["both_correct"], m["baseline_only"], m["adapter_only"], m["both_wrong"]) == (10, 2, 9, 5)
    expected = st.binomtest(2, 11, 0.5).pvalue
    assert m["p_value"] == pytest.approx(expected, rel=1e-9)
    assert expected > 0.05 and "not significant" in m["conclusion"]


def test_mcnemar_significant_and_direction():
    assert mcnemar_exact(5, 1, 15, 3) == pytest.approx(st.binomtest(1, 16, 0.5).pvalue)
    df = paired_df(table_outcomes(5, 1, 15, 3))
    overall = [r for r in mcnemar_table(df) if r["category"] == "overall"][0]
    assert overall["p_value"] < 0.05 and overall["conclusion"].startswith("adapter more accurate")
    assert mcnemar_exact(4, 0, 0, 4) == 1.0  # no discordant pairs


def test_mcnemar_per_category_and_overall():
    df = pd.concat([paired_df(table_outcomes(3, 1, 4, 2), category="counting"),
                    paired_df(table_outcomes(2, 0, 3, 1), category="color")])
    res = {r["category"]: r for r in mcnemar_table(df)}
    assert set(res) == {"counting", "color", "overall"}
    assert (res["overall"]["baseline_only"], res["overall"]["adapter_only"]) == (1, 7)
    assert res["overall"]["p_value"] == pytest.approx(st.binomtest(1, 8, 0.5).pvalue)


def test_accuracy_table_counts():
    df = paired_df(table_outcomes(3, 1, 4, 2), seeds=2)
    acc = {(r["category"], r["variant"]): r for r in accuracy_table(df, n_boot=500)}
    b = acc[("counting", "baseline")]
    assert (b["prompts"], b["images"], b["correct"]) == (10, 20, 8)
    assert b["accuracy"] == pytest.approx(0.4)
    assert acc[("counting", "adapter")]["accuracy"] == pytest.approx(0.7)
    assert b["ci_low"] <= b["accuracy"] <= b["ci_high"]
    d = [r for r in accuracy_difference(df, n_boot=500) if r["category"] == "counting"][0]
    assert d["difference"] == pytest.approx(0.3) and d["pairs"] == 20 and d["prompts"] == 10


def test_bootstrap_resamples_prompts_not_images():
    """Seeds that agree within a prompt add no information: 4 identical seeds per prompt must give
    the same CI as one seed (resampling images would make it narrower)."""
    outcomes = table_outcomes(6, 3, 7, 4)
    one = {(r["category"], r["variant"]): r for r in accuracy_table(paired_df(outcomes, seeds=1), n_boot=1000, seed=3)}
    four = {(r["category"], r["variant"]): r for r in accuracy_table(paired_df(outcomes, seeds=4), n_boot=1000, seed=3)}
    for k in one:
        assert one[k]["accuracy"] == pytest.approx(four[k]["accuracy"])
        assert (one[k]["ci_low"], one[k]["ci_high"]) == pytest.approx((four[k]["ci_low"], four[k]["ci_high"]))
    assert four[("counting", "adapter")]["images"] == 4 * one[("counting", "adapter")]["images"]


def test_bootstrap_is_seeded_and_handles_degenerate_data():
    k, n = np.array([1, 0, 1, 1, 0, 1]), np.ones(6)
    assert bootstrap_ratio(k, n, 500, seed=1) == bootstrap_ratio(k, n, 500, seed=1)
    lo, hi = bootstrap_ratio(k, n, 2000, seed=1)
    assert 0 <= lo < 4 / 6 < hi <= 1
    assert bootstrap_ratio(np.ones(5), np.ones(5)) == (1.0, 1.0)
    assert all(np.isnan(bootstrap_ratio(np.ones(1), np.ones(1))))


def _scores(shift, n=60, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.normal(30, 8, n)
    return base, base + shift + rng.normal(0, 2, n)


def test_tost_equivalent_when_unshifted_and_not_when_shifted_by_10():
    b, a = _scores(0.0)
    same = paired_quality(b, a, margin=5)
    assert same["equivalent"] and same["tost_p"] < 0.05
    assert same["conclusion"].startswith(f"equivalent within ±5 (TOST p={same['tost_p']:.3g})")
    # TOST p by hand: the larger of the two one-sided t-test p-values on the differences
    d = a - b
    hand = max(st.ttest_1samp(d, -5, alternative="greater").pvalue, st.ttest_1samp(d, 5, alternative="less").pvalue)
    assert same["tost_p"] == pytest.approx(hand, rel=1e-6)

    b, a = _scores(10.0)
    shifted = paired_quality(b, a, margin=5)
    assert not shifted["equivalent"] and shifted["tost_p"] > 0.05
    assert shifted["conclusion"].startswith("not shown equivalent within ±5 (TOST p=")
    assert shifted["t_p"] < 0.05 and "statistically significant" in shifted["conclusion"]
    assert shifted["diff_mean"] == pytest.approx(np.mean(a - b))
    assert shifted["t_p"] == pytest.approx(st.ttest_rel(a, b).pvalue)
    assert shifted["wilcoxon_p"] == pytest.approx(st.wilcoxon(a, b).pvalue)


def test_no_significant_difference_is_never_claimed_from_a_t_test():
    """Small noisy sample: the t-test is not significant, and TOST cannot show equivalence either."""
    rng = np.random.default_rng(5)
    b = rng.normal(30, 10, 6)
    a = b + rng.normal(0, 12, 6)
    s = paired_quality(b, a, margin=5)
    assert s["t_p"] > 0.05 and not s["equivalent"]
    assert s["conclusion"].startswith("not shown equivalent")
    assert "no significant difference" not in s["conclusion"]


def test_quality_drops_nan_pairs_and_handles_constant_differences():
    s = paired_quality([1.0, 2.0, np.nan, 4.0], [1.0, 2.0, 3.0, 4.0], margin=5)
    assert s["pairs"] == 3 and s["dropped_pairs"] == 1
    assert s["diff_mean"] == 0 and s["equivalent"] and s["t_p"] == 1.0
    with pytest.raises(ValueError, match="positive"):
        paired_quality([1, 2, 3], [1, 2, 4], margin=0)


def test_quality_table_pairs_by_prompt_and_seed():
    b, a = _scores(0.0, n=12)
    rows = []
    for i in range(12):
        for v, x in (("adapter", a[i]), ("baseline", b[i])):  # order must not matter
            rows.append({"prompt_id": f"p{i // 3}", "category": "color", "seed": i % 3, "variant": v,
                         "correct": True, "brisque": x})
    rows[0]["category"] = rows[1]["category"] = "counting"  # categories must not cross with prompts
    rows[-1]["brisque"] = float("nan")
    df = pd.DataFrame(rows)
    s = quality_table(df, "brisque", margin=5)
    assert s["pairs"] == 11 and s["dropped_pairs"] == 1
    assert s["diff_mean"] == pytest.approx(np.mean((a - b)[:-1]))
    full = summarize(df, n_boot=200)
    assert set(full) >= {"accuracy", "accuracy_difference", "mcnemar", "quality", "bootstrap"}
    assert full["quality"]["brisque"]["margin"] == 5.0 and full["bootstrap"]["unit"] == "prompt"
