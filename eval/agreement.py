"""Per-image attribute checks: how often people say an image is right, how often the automatic
judge does, and how often the two agree on the same image.

Input: check rows, one per (pair, source, variant, attribute) with ``source`` "human" or
"judge", ``variant`` "baseline" or "adapter", ``attribute`` (count, color, action), ``verdict``
("yes", "no"; humans may also say "unsure") and the pair id ``battle_id``.

* Human accuracy = yes / (yes + no): "unsure" answers are counted and shown, not scored.
* Judge accuracy = yes / judged, over the pairs of the same view.
* Agreement on the images both judged (human yes/no against judge yes/no): raw agreement and
  Cohen's kappa (`statsmodels.stats.inter_rater.cohens_kappa` on the 2×2 table; undefined,
  NaN, when the expected agreement is 1, i.e. both raters gave one answer only).
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Iterable

import numpy as np

ATTRIBUTES = ("count", "color", "action")
VARIANTS = ("baseline", "adapter")
ALL = "all"


def kappa(table: np.ndarray) -> float:
    """Cohen's kappa of a square agreement table (rows: rater 1, columns: rater 2); NaN when
    chance agreement is 1 or the table is empty."""
    from statsmodels.stats.inter_rater import cohens_kappa

    table = np.asarray(table, dtype=float)
    n = table.sum()
    if n == 0:
        return math.nan
    expected = float((table.sum(0) * table.sum(1)).sum() / n**2)
    if expected >= 1.0 - 1e-12:
        return math.nan
    with np.errstate(divide="ignore", invalid="ignore"):  # its z statistic; only kappa is used here
        return float(cohens_kappa(table).kappa)


def _cell(rows: list[dict]) -> dict:
    human = [r for r in rows if r["source"] == "human"]
    judge = [r for r in rows if r["source"] == "judge"]
    yes = sum(r["verdict"] == "yes" for r in human)
    no = sum(r["verdict"] == "no" for r in human)
    j_yes = sum(r["verdict"] == "yes" for r in judge)
    by_key = {(r["battle_id"], r["variant"], r["attribute"]): r["verdict"] for r in judge}
    table = np.zeros((2, 2))
    for r in human:
        j = by_key.get((r["battle_id"], r["variant"], r["attribute"]))
        if j is not None and r["verdict"] in ("yes", "no"):
            table[int(r["verdict"] == "no"), int(j == "no")] += 1  # rows: human yes/no; columns: judge
    both = int(table.sum())
    agree = int(np.trace(table))
    return {"human_yes": yes, "human_no": no, "human_unsure": len(human) - yes - no,
            "human_accuracy": yes / (yes + no) if yes + no else math.nan,
            "judge_n": len(judge), "judge_accuracy": j_yes / len(judge) if judge else math.nan,
            "both": both, "agree": agree, "agreement": agree / both if both else math.nan,
            "kappa": kappa(table)}


def check_summary(rows: Iterable[dict]) -> list[dict]:
    """One row per attribute and variant, then per attribute over both variants, then one over
    everything (attribute and variant ``"all"``), each as `_cell` describes."""
    rows = [r for r in rows if r.get("attribute") in ATTRIBUTES and r.get("variant") in VARIANTS]
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        for key in ((r["attribute"], r["variant"]), (r["attribute"], ALL), (ALL, ALL)):
            groups[key].append(r)
    order = [(a, v) for a in ATTRIBUTES for v in VARIANTS + (ALL,)] + [(ALL, ALL)]
    return [{"attribute": a, "variant": v, **_cell(groups[(a, v)])} for a, v in order if groups.get((a, v))]


__all__ = ["check_summary", "kappa", "ATTRIBUTES", "VARIANTS", "ALL"]
