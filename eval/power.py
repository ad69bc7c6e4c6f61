"""How many decisive votes a blind survey needs to tell a win rate from 50%.

The Results tab's sign test asks whether the adapter's win rate over decisive votes differs
from 50%. Its Wilson interval says how precise the rate is now; this says how many votes a
given true rate needs before the test finds it with the usual power (80%, two-sided α = 0.05),
and how many more that is than the decisive votes already in.

The computation is statsmodels' normal approximation on the arcsine scale: Cohen's effect size
h = 2·asin(√p) − 2·asin(√0.5) (`proportion_effectsize`) and the one-sample normal power
(`NormalIndPower` with ``ratio=0``), n = ((z₁₋α/₂ + z_power) / h)² to first order. Near 50% the
exact binomial test needs about the same; it is a planning figure, not a guarantee.
"""

from __future__ import annotations

import math
from typing import Sequence

TRUE_RATES = (0.55, 0.60, 0.65, 0.70)


def votes_needed(win_rate: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Decisive votes for a two-sided test of H0: 50% to reach `power` when the true win rate
    is `win_rate` (either side of 50% gives the same number)."""
    from statsmodels.stats.power import NormalIndPower
    from statsmodels.stats.proportion import proportion_effectsize

    if not isinstance(win_rate, (int, float)) or not 0.0 < win_rate < 1.0 or win_rate == 0.5:
        raise ValueError(f"win_rate must be a number in (0, 1) other than 0.5, got {win_rate!r}")
    if not 0.0 < alpha < 1.0 or not 0.0 < power < 1.0:
        raise ValueError(f"alpha and power must be in (0, 1), got alpha={alpha!r}, power={power!r}")
    h = abs(proportion_effectsize(win_rate, 0.5))
    n = NormalIndPower().solve_power(effect_size=h, alpha=alpha, power=power, ratio=0.0,
                                     alternative="two-sided")
    return int(math.ceil(n - 1e-9))


def power_table(decisive: int, rates: Sequence[float] = TRUE_RATES, alpha: float = 0.05,
                power: float = 0.8) -> list[dict]:
    """One row per true win rate: decisive votes needed, and how many more than `decisive`."""
    if not isinstance(decisive, int) or decisive < 0:
        raise ValueError(f"decisive must be a non-negative integer, got {decisive!r}")
    rows = []
    for rate in rates:
        need = votes_needed(rate, alpha, power)
        rows.append({"win_rate": float(rate), "needed": need, "more": max(0, need - decisive),
                     "alpha": alpha, "power": power})
    return rows


__all__ = ["votes_needed", "power_table", "TRUE_RATES"]
