"""How numbers are written in reports, comparisons and the Results tab (one place)."""

from __future__ import annotations

import math

MISSING = "–"


def _missing(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def pct(x, sign: bool = False, unit: str = "%") -> str:
    """A fraction as a percentage with one decimal: 0.123 -> '12.3%' ('+12.3%' with sign)."""
    if _missing(x):
        return MISSING
    return f"{100 * x:+.1f}{unit}" if sign else f"{100 * x:.1f}{unit}"


def pvalue(x) -> str:
    """A p-value with three significant digits, tiny ones included ('7.2e-24'): the magnitude
    of a small p is part of the result."""
    if _missing(x):
        return MISSING
    return f"{x:.3g}"


def number(x, digits: int = 3) -> str:
    """A float with a fixed number of decimals."""
    return MISSING if _missing(x) else f"{x:.{digits}f}"
