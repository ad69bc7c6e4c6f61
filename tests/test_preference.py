"""Vote statistics (eval.stats): Wilson interval, sign test, summary, Bradley-Terry with bootstrap;
and how the Results tab shows them (surlib.studio.results)."""

import math

import numpy as np
import pytest

from eval.stats import (
    adapter_outcome,
    bootstrap_bradley_terry,
    bradley_terry,
    sign_test,
    summarize_votes,
    wilson_interval,
)
from surlib.studio.results import category_rows, summary_figure, summary_markdown


def _bar_heights(ax):
    return [p.get_height() for p in ax.patches]


def _wilson_by_hand(k, n, z=1.959963984540054):
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


@pytest.mark.parametrize("k,n", [(8, 10), (0, 5), (5, 5), (37, 60), (1, 1)])
def test_wilson_interval_matches_formula(k, n):
    lo, hi = wilson_interval(k, n)
    exp_lo, exp_hi = _wilson_by_hand(k, n)
    assert lo == pytest.approx(exp_lo, abs=1e-9) and hi == pytest.approx(exp_hi, abs=1e-9)
    assert 0.0 <= lo <= k / n <= hi <= 1.0


def test_wilson_and_sign_test_empty():
    assert all(math.isnan(x) for x in wilson_interval(0, 0))
    assert math.isnan(sign_test(0, 0))


def test_sign_test_exact_values():
    assert sign_test(9, 10) == pytest.approx(22 / 1024)  # 2 * P(X >= 9), X ~ Bin(10, 1/2)
    assert sign_test(5, 10) == pytest.approx(1.0)
    assert sign_test(0, 1) == pytest.approx(1.0)


def _vote(choice, adapter_side="left", category=None, prompt_id="p", left=None, right=None):
    if left is None:
        left = "m:sur-adapter" if adapter_side == "left" else "m:baseline"
        right = "m:baseline" if adapter_side == "left" else "m:sur-adapter"
    return {"choice": choice, "adapter_side": adapter_side, "category": category, "prompt_id": prompt_id,
            "left_system": left, "right_system": right}


def test_adapter_outcome():
    assert adapter_outcome(_vote("left", "left")) == "adapter"
    assert adapter_outcome(_vote("right", "left")) == "baseline"
    assert adapter_outcome(_vote("left", "right")) == "baseline"
    assert adapter_outcome(_vote("right", "right")) == "adapter"
    assert adapter_outcome(_vote("tie", "right")) == "tie"
    assert adapter_outcome(_vote("both_bad", "left")) == "both_bad"
    assert adapter_outcome(_vote("left", None, left="a", right="b")) is None


def test_summarize_counts_shares_and_categories():
    votes = ([_vote("left", "left", "count")] * 6 + [_vote("left", "right", "count")] * 2
             + [_vote("right", "right", "color")] * 3 + [_vote("tie", "left", "color")] * 2
             + [_vote("both_bad", "right", None, prompt_id=None)])
    s = summarize_votes(votes)
    o = s["overall"]
    assert (o["adapter_wins"], o["baseline_wins"], o["ties"], o["both_bad"]) == (9, 2, 2, 1)
    assert o["decisive"] == 11 and o["votes"] == 14
    assert o["win_rate"] == pytest.approx(9 / 11)
    assert (o["ci_low"], o["ci_high"]) == pytest.approx(wilson_interval(9, 11))
    assert o["p_value"] == pytest.approx(sign_test(9, 11))
    assert o["tie_share"] == pytest.approx(2 / 14) and o["both_bad_share"] == pytest.approx(1 / 14)
    cats = {c["category"]: c for c in s["categories"]}
    assert set(cats) == {"count", "color", "typed by voter"}
    assert cats["count"]["adapter_wins"] == 6 and cats["count"]["baseline_wins"] == 2
    assert cats["color"]["decisive"] == 3 and cats["color"]["ties"] == 2
    assert s["bradley_terry"] is None  # two systems: the win rate says it all
    rows = category_rows(s)
    assert len(rows) == 3 and all(len(r) == 11 for r in rows)
    md = summary_markdown(s)
    assert "81.8%" in md and "Wilson" in md and "sign test" in md
    fig = summary_figure(s)
    assert len(fig.axes) == 2
    assert _bar_heights(fig.axes[0]) == [9, 2, 2, 1]  # adapter, baseline, tie, both bad
    shown = [t.get_text() for t in fig.axes[1].get_xticklabels()]
    assert shown == ["color", "count"]  # only categories with decisive votes get a win rate


def test_summary_without_votes():
    s = summarize_votes([])
    assert s["overall"]["decisive"] == 0 and math.isnan(s["overall"]["win_rate"])
    assert "No votes yet" in summary_markdown(s)
    fig = summary_figure(s)  # one panel of four empty bars, no per-category panel
    assert len(fig.axes) == 1 and _bar_heights(fig.axes[0]) == [0, 0, 0, 0]
    assert fig.axes[0].get_title() == "0 votes"


def _simulated_votes(strengths, n, seed=0):
    rng = np.random.default_rng(seed)
    names = list(strengths)
    votes = []
    for _ in range(n):
        a, b = rng.choice(len(names), 2, replace=False)
        p = 1 / (1 + 10 ** ((strengths[names[b]] - strengths[names[a]]) / 400))
        r = rng.random()
        choice = "tie" if r < 0.1 else ("left" if rng.random() < p else "right")
        votes.append({"left_system": names[a], "right_system": names[b], "choice": choice,
                      "adapter_side": None})
    return votes


def test_bradley_terry_recovers_order_and_gaps():
    truth = {"a": 1150.0, "b": 1000.0, "c": 850.0}
    votes = _simulated_votes(truth, 3000)
    r = bradley_terry(votes)
    assert r["a"] > r["b"] > r["c"]
    assert np.mean(list(r.values())) == pytest.approx(1000.0, abs=1e-6)
    # ties count as half wins, which shrinks gaps a little; 3000 votes pin them within ~40 points
    assert r["a"] - r["c"] == pytest.approx(300, abs=60)


def test_bootstrap_intervals_100_rounds():
    votes = _simulated_votes({"a": 1100.0, "b": 1000.0, "c": 900.0}, 600, seed=1)
    rows = bootstrap_bradley_terry(votes, rounds=100, seed=0)
    assert [r["system"] for r in rows] == ["a", "b", "c"]
    for r in rows:
        assert r["low"] <= r["rating"] <= r["high"]
        assert 5 < r["high"] - r["low"] < 200
        assert r["votes"] > 0
    again = bootstrap_bradley_terry(votes, rounds=100, seed=0)
    assert again == rows  # seeded: reproducible


def test_bradley_terry_unbeaten_system_stays_finite():
    votes = [{"left_system": "x", "right_system": "y", "choice": "left"}] * 20 + \
            [{"left_system": "y", "right_system": "z", "choice": "left"}] * 20
    r = bradley_terry(votes)
    assert all(math.isfinite(v) for v in r.values())
    assert r["x"] > r["y"] > r["z"]


def test_summarize_adds_bradley_terry_for_more_than_two_systems():
    votes = [_vote("left", "left")] * 5 + [_vote("right", "right")] * 3 + \
            [{"left_system": "other", "right_system": "m:baseline", "choice": "left", "adapter_side": None}] * 4
    s = summarize_votes(votes, bt_rounds=20)
    assert s["bradley_terry"] is not None
    assert {r["system"] for r in s["bradley_terry"]} == {"m:sur-adapter", "m:baseline", "other"}
    assert s["overall"]["decisive"] == 8  # the win rate only counts adapter-vs-baseline pairs
    assert "Bradley-Terry" in summary_markdown(s)
