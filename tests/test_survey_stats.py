"""Votes still needed (eval/power.py) and human-vs-judge agreement (eval/agreement.py), checked
against numbers derived by hand."""

import math

import numpy as np
import pytest

from eval.agreement import check_summary, kappa
from eval.power import power_table, votes_needed


def test_votes_needed_matches_the_hand_derivation():
    # p = 0.60: h = 2 asin(sqrt .6) - 2 asin(sqrt .5) = 1.772154 - 1.570796 = 0.201358;
    # n = ((z_.975 + z_.8) / h)^2 = ((1.959964 + 0.841621) / 0.201358)^2 = 13.9135^2 = 193.58 -> 194
    h = 2 * math.asin(math.sqrt(0.6)) - 2 * math.asin(math.sqrt(0.5))
    assert h == pytest.approx(0.201358, abs=1e-6)
    assert ((1.959964 + 0.841621) / h) ** 2 == pytest.approx(193.58, abs=0.01)
    assert votes_needed(0.60) == 194
    assert votes_needed(0.40) == 194  # the arcsine scale is symmetric about 50%
    assert [votes_needed(p) for p in (0.55, 0.65, 0.70)] == [783, 85, 47]
    assert votes_needed(0.60, power=0.9) > 194 and votes_needed(0.60, alpha=0.01) > 194
    for bad in (0.5, 0, 1, 1.2, "0.6"):
        with pytest.raises(ValueError, match="win_rate must be a number in \\(0, 1\\) other than 0.5"):
            votes_needed(bad)


def test_power_table_subtracts_the_votes_already_in():
    rows = power_table(100)
    assert [(r["win_rate"], r["needed"], r["more"]) for r in rows] == [
        (0.55, 783, 683), (0.60, 194, 94), (0.65, 85, 0), (0.70, 47, 0)]
    assert power_table(0)[1]["more"] == 194
    with pytest.raises(ValueError, match="decisive must be a non-negative integer"):
        power_table(-1)


def test_kappa_by_hand():
    # 50 images: both yes 20, human yes/judge no 5, human no/judge yes 10, both no 15.
    # p_o = 35/50 = 0.7; p_e = (25*30 + 25*20)/50^2 = 0.5; kappa = (0.7 - 0.5)/(1 - 0.5) = 0.4
    assert kappa(np.array([[20, 5], [10, 15]])) == pytest.approx(0.4)
    assert kappa(np.array([[3, 0], [0, 2]])) == pytest.approx(1.0)
    assert math.isnan(kappa(np.array([[4, 0], [0, 0]])))  # one answer only: chance agreement is 1
    assert math.isnan(kappa(np.zeros((2, 2))))


def _row(bid, source, variant, attribute, verdict):
    return {"battle_id": bid, "source": source, "variant": variant, "attribute": attribute, "verdict": verdict}


def test_check_summary_counts_accuracy_and_agreement():
    rows = [
        _row("a", "human", "adapter", "count", "yes"), _row("a", "judge", "adapter", "count", "yes"),
        _row("b", "human", "adapter", "count", "no"), _row("b", "judge", "adapter", "count", "yes"),
        _row("c", "human", "adapter", "count", "unsure"), _row("c", "judge", "adapter", "count", "no"),
        _row("d", "judge", "adapter", "count", "no"),
        _row("a", "human", "baseline", "color", "no"),  # no judge here: accuracy only
    ]
    out = {(r["attribute"], r["variant"]): r for r in check_summary(rows)}
    c = out[("count", "adapter")]
    assert (c["human_yes"], c["human_no"], c["human_unsure"]) == (1, 1, 1)
    assert c["human_accuracy"] == 0.5 and c["judge_n"] == 4 and c["judge_accuracy"] == 0.5
    assert (c["both"], c["agree"], c["agreement"]) == (2, 1, 0.5)  # "unsure" is not compared
    col = out[("color", "baseline")]
    assert col["human_accuracy"] == 0.0 and col["judge_n"] == 0 and math.isnan(col["judge_accuracy"])
    assert col["both"] == 0 and math.isnan(col["agreement"]) and math.isnan(col["kappa"])
    everything = out[("all", "all")]
    assert (everything["human_yes"], everything["human_no"], everything["judge_n"]) == (1, 2, 4)
    assert list(out)[:2] == [("count", "adapter"), ("count", "all")] and ("action", "all") not in out
