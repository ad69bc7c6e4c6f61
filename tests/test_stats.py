"""Statistics against hand-computed cases (scipy's binomial test, one-sided t-tests, sign
patterns enumerated by hand)."""

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from eval.stats import (MCNEMAR_CAVEAT, accuracy_difference, accuracy_table, bootstrap_ratio, mcnemar_exact,
                        mcnemar_table, paired_quality, prompt_test, quality_table, sign_flip_test, summarize,
                        wilson_interval)


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
    assert all(np.isnan(bootstrap_ratio(np.ones(1), np.ones(1))))


def test_no_spread_gives_a_wilson_interval_over_prompts_not_zero_width():
    """5 prompts all right: not (1, 1) but Wilson with n = 5 prompts, whatever the seeds per prompt."""
    lo, hi = bootstrap_ratio(np.ones(5), np.ones(5))
    assert (lo, hi) == pytest.approx(wilson_interval(5, 5)) and hi == pytest.approx(1.0) and 0.5 < lo < 0.6
    assert bootstrap_ratio(4 * np.ones(5), 4 * np.ones(5)) == pytest.approx((lo, hi))  # 4 seeds: same clusters
    assert bootstrap_ratio(np.ones(5), np.ones(5), confidence=0.8)[0] > lo  # the confidence is used
    # a paired difference with no spread: d ± the Wilson upper bound of "0 of n prompts differ"
    u = wilson_interval(0, 10)[1]
    assert 0.2 < u < 0.3
    assert bootstrap_ratio(np.zeros(10), np.ones(10), kind="difference") == pytest.approx((-u, u))
    u56 = wilson_interval(0, 56)[1]  # 56 prompts all unchanged: within ±6.4 points, not ±25
    assert bootstrap_ratio(np.zeros(56), 4 * np.ones(56), kind="difference") == pytest.approx((-u56, u56))
    assert 0.06 < u56 < 0.07
    lo_d, hi_d = bootstrap_ratio(np.ones(10), np.ones(10), kind="difference")
    assert hi_d == pytest.approx(1.0) and lo_d == pytest.approx(1 - u)
    with pytest.raises(ValueError, match="kind must be 'proportion' or 'difference', got 'ratio'"):
        bootstrap_ratio(np.ones(3), np.ones(3), kind="ratio")


def test_sign_flip_test_exact_matches_enumerated_sign_patterns():
    d = np.array([0.5, 0.25, -0.25, 0.75, 0.5, 0.0, 1.0, 0.25])
    patterns = np.array(list(itertools.product([1, -1], repeat=len(d))))
    hand = np.mean(np.abs((patterns * d).mean(axis=1)) >= abs(d.mean()) - 1e-12)
    r = sign_flip_test(d)
    assert r["exact"] and r["resamples"] == 256 and r["p_value"] == pytest.approx(hand)
    assert sign_flip_test(np.ones(3))["p_value"] == pytest.approx(2 / 8)  # only all-plus and all-minus
    assert sign_flip_test(np.zeros(6))["p_value"] == 1.0
    assert sign_flip_test(np.array([0.5]))["p_value"] == 1.0


def test_sign_flip_test_random_flips_are_seeded_and_never_give_zero():
    rng = np.random.default_rng(2)
    d = rng.normal(0.05, 0.3, 40)
    a, b = sign_flip_test(d, n_flips=2000, seed=4), sign_flip_test(d, n_flips=2000, seed=4)
    assert a == b and not a["exact"] and a["resamples"] == 2000
    assert sign_flip_test(d, n_flips=2000, seed=5)["p_value"] != a["p_value"]
    # 25 prompts all +1: only the all-plus / all-minus patterns reach |T|, p = (1 + 0) / (1 + B)
    assert sign_flip_test(np.ones(25), n_flips=999)["p_value"] == pytest.approx(1 / 1000)
    with pytest.raises(ValueError, match="non-empty 1-d array of finite values"):
        sign_flip_test(np.array([0.1, np.nan]))


def test_prompt_test_treats_the_seeds_of_a_prompt_as_one_cluster():
    """Repeating every prompt's outcome over 4 seeds adds no evidence at the prompt level (same
    p-value), while McNemar on pairs sees 4 times the discordant pairs and a far smaller p."""
    outcomes = table_outcomes(6, 2, 7, 5)
    one = {r["category"]: r for r in prompt_test(paired_df(outcomes, seeds=1), n_boot=500)}
    four = {r["category"]: r for r in prompt_test(paired_df(outcomes, seeds=4), n_boot=500)}
    assert one["overall"]["p_value"] == pytest.approx(four["overall"]["p_value"])
    assert four["overall"]["prompts"] == 20 and four["overall"]["pairs"] == 80
    mc1 = mcnemar_table(paired_df(outcomes, seeds=1))[-1]["p_value"]
    mc4 = mcnemar_table(paired_df(outcomes, seeds=4))[-1]["p_value"]
    assert mc4 < 0.05 < mc1 and one["overall"]["p_value"] > 0.05
    r = four["overall"]
    assert r["mean_difference"] == pytest.approx(5 / 20) and r["ci_low"] < 0.25 < r["ci_high"]
    d = np.array([a - b for b, a in outcomes], float)
    assert r["wilcoxon_p"] == pytest.approx(st.wilcoxon(d).pvalue)
    assert r["conclusion"].startswith("difference not significant at alpha=0.05 (prompt-level sign-flip p=")


def test_prompt_test_averages_seeds_within_a_prompt():
    rows = []
    for i, (b_right, a_right) in enumerate([(0, 2), (1, 2), (0, 1), (2, 2), (0, 2), (1, 1), (0, 2), (0, 1)]):
        for s in range(2):
            key = {"prompt_id": f"p{i}", "category": "color", "seed": s}
            rows += [{**key, "variant": "baseline", "correct": s < b_right},
                     {**key, "variant": "adapter", "correct": s < a_right}]
    (color, overall) = prompt_test(pd.DataFrame(rows), n_boot=500)
    d = np.array([1, 0.5, 0.5, 0, 1, 0, 1, 0.5])
    assert color["mean_difference"] == pytest.approx(d.mean()) and color["prompts"] == 8
    assert color["exact"] and color["p_value"] == pytest.approx(sign_flip_test(d)["p_value"])
    assert color["p_value"] < 0.05 and color["conclusion"].startswith("adapter more accurate")
    assert overall["p_value"] == color["p_value"]


def test_mcnemar_rows_carry_their_caveat():
    assert all(m["caveat"] == MCNEMAR_CAVEAT for m in mcnemar_table(paired_df(table_outcomes(3, 1, 4, 2))))
    assert "independent" in MCNEMAR_CAVEAT


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
    with pytest.raises(ValueError, match="alpha must be between 0 and 1, got 5"):
        paired_quality([1, 2, 3], [1, 2, 4], alpha=5)


def test_t_interval_uses_alpha():
    b, a = _scores(1.0, n=20)
    d = a - b
    for alpha in (0.05, 0.2):
        ci = paired_quality(b, a, alpha=alpha)["diff_ci"]
        half = st.t.ppf(1 - alpha / 2, 19) * np.std(d, ddof=1) / np.sqrt(20)
        assert ci == pytest.approx([d.mean() - half, d.mean() + half])
    assert np.diff(paired_quality(b, a, alpha=0.2)["diff_ci"]) < np.diff(paired_quality(b, a)["diff_ci"])


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
    # the headline quality figures are on per-prompt means; the pair-level ones stay as a secondary
    q = full["quality"]["brisque"]
    assert q["pair_level"]["pairs"] == 11 and q["pair_level"]["diff_mean"] == pytest.approx(np.mean((a - b)[:-1]))
    d = a - b  # groups: (counting, p0) pair 0; (color, p0) 1-2; p1 3-5; p2 6-8; p3 9-10 (11 is NaN)
    per = [d[0], d[1:3].mean(), d[3:6].mean(), d[6:9].mean(), d[9:11].mean()]
    assert q["unit"] == "prompt" and q["pairs"] == 5 and q["dropped_pairs"] == 1
    assert q["diff_mean"] == pytest.approx(np.mean(per)) and q["diff_sd"] == pytest.approx(np.std(per, ddof=1))
    with pytest.raises(ValueError, match="level must be 'pair' or 'prompt', got 'image'"):
        quality_table(df, "brisque", level="image")


def test_quality_on_per_prompt_means():
    rows = []
    for i in range(6):
        for s in range(3):
            base = 20.0 + i + s
            rows += [{"prompt_id": f"p{i}", "category": "color", "seed": s, "variant": "baseline", "correct": True,
                      "brisque": base},
                     {"prompt_id": f"p{i}", "category": "color", "seed": s, "variant": "adapter", "correct": True,
                      "brisque": base + (i % 3) + 0.1 * s}]
    df = pd.DataFrame(rows)
    q = quality_table(df, "brisque", level="prompt")
    d = np.array([(i % 3) + 0.1 for i in range(6)])  # per-prompt mean difference (0 + 0.1 + 0.2) / 3 = 0.1
    assert q["pairs"] == 6 and q["diff_mean"] == pytest.approx(d.mean())
    assert q["diff_sd"] == pytest.approx(np.std(d, ddof=1))
    assert q["t_p"] == pytest.approx(st.ttest_1samp(d, 0).pvalue)
    assert quality_table(df, "brisque")["pairs"] == 18


def test_summarize_leaves_excluded_prompts_out_of_accuracy_only():
    df = paired_df(table_outcomes(3, 1, 4, 2), seeds=2).assign(brisque=30.0)
    df.loc[df["variant"] == "adapter", "brisque"] = 31.0
    full = summarize(df, n_boot=200, exclude_prompts=["counting-0", "counting-1"])
    (pt, _) = full["prompt_test"]
    assert pt["prompts"] == 8 and full["accuracy"][0]["prompts"] == 8 and full["mcnemar"][0]["pairs"] == 16
    assert full["quality"]["brisque"]["pairs"] == 10 and full["quality"]["brisque"]["pair_level"]["pairs"] == 20
    assert full["sign_flip"] == {"resamples": 100_000, "seed": 0, "unit": "prompt"}
