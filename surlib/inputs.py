"""What a caller sends, checked before anything runs: each refusal names the field, what was
wrong and what is accepted (a `ValueError`). Used by `pipeline.validate_request` for every
caller, and by the studio for what visitors send.

A JSON API can carry what Python callers rarely do: text with a lone UTF-16 surrogate ("\\ud800",
which no UTF-8 encoder, tokenizer or PNG writer accepts), an integer of hundreds of digits
(which `float()` cannot hold), None for a missing field.
"""

from __future__ import annotations

import math


def shown(value, limit: int = 40) -> str:
    """repr(value) cut to `limit` characters (repr escapes surrogates and control characters)."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"… ({len(str(value))} characters)"


def check_unicode(name: str, value: str) -> None:
    """Refuse text that is not valid Unicode (a lone surrogate), naming where."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        bad = value[e.start]
        raise ValueError(f"{name} is not valid Unicode: a lone surrogate U+{ord(bad):04X} at character "
                         f"{e.start}; send UTF-8 text (surrogate pairs only as whole characters)") from None


def check_text(name: str, value, max_chars: int | None = None, required: bool = True) -> str | None:
    """`value` stripped; None when empty and not `required`. Refuses non-text, empty required
    text, text over `max_chars` and text that is not valid Unicode (lone surrogates)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise ValueError(f"{name} is missing or empty: send a non-empty text")
        return None
    if not isinstance(value, str):
        raise ValueError(f"{name} must be text, got {type(value).__name__} {shown(value)}")
    check_unicode(name, value)
    text = value.strip()
    if max_chars is not None and len(text) > max_chars:
        raise ValueError(f"{name} is {len(text)} characters long; at most {max_chars} are accepted")
    return text


def check_number(name: str, value, lo: float, hi: float, integer: bool, where: str = "") -> int | float:
    """`value` as an int (or float) in [lo, hi]; refuses booleans, text that is not a number,
    NaN, infinities and numbers too large for a float, each naming the accepted range."""
    kind, fmt = ("an integer", lambda x: str(int(x))) if integer else ("a number", lambda x: f"{x:g}")
    accepted = f"{name} must be {kind} between {fmt(lo)} and {fmt(hi)}{where}"
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ValueError(f"{name} is missing: {accepted[len(name) + 1:]}")
    if isinstance(value, bool):
        raise ValueError(f"{accepted}, got {value!r}")
    if isinstance(value, int) and not lo <= value <= hi:  # exact, however many digits
        digits = len(str(abs(value)))
        given = f"a {digits}-digit integer" if digits > 20 else str(value)
        raise ValueError(f"{accepted}, got {given}")
    try:
        as_float = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{accepted}, got {shown(value)}") from None
    except OverflowError:
        raise ValueError(f"{accepted}, got a number too large to represent") from None
    if not math.isfinite(as_float) or not lo <= as_float <= hi:
        raise ValueError(f"{accepted}, got {shown(value)}")
    if integer:
        if as_float != int(as_float):
            raise ValueError(f"{accepted}, got {shown(value)}")
        return int(as_float)
    return as_float


__all__ = ["check_text", "check_unicode", "check_number", "shown"]
