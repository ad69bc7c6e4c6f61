"""The automatic judge's per-image verdicts on a new blind pair, stored with it (checks.py).

In the toy world this costs next to nothing: the toy judge (`surlib.toy.judge.ToyJudge`, the
same model `eval/judges.py` scores the eval with) reads count, colour and action off both 64-px
images in one small batch, and the prompt's own scene comes from the toy grammar
(`surlib.toy.parse.parse_prompt`; every toy suite prompt parses, and so does any typed prompt
the grammar can produce). Where no scene is known (a prompt the grammar cannot read) or no
judge runs (real models), nothing is stored and Results shows "—".

A judge failure never fails a pair: it is logged and the pair goes out without verdicts.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from .checks import ATTRIBUTES

log = logging.getLogger("surlib.app")

TOY_PRESETS = ("toy",)  # the presets whose images the toy judge can read (also the Eval tab's Run button)


class PairJudge:
    """`verdicts(prompt, {side: image})` → {side: {attribute: right?}} or None."""

    def __init__(self, judge: Any, expect: Callable[[str], dict | None], name: str = "toy"):
        self.judge = judge          # .judge(images) -> [{"count", "color", "action", ...}]
        self.expect = expect        # prompt -> {"count", "color", "action"} or None
        self.name = name

    @classmethod
    def for_setting(cls, setting: str, preset: str) -> "PairJudge | None":
        """SUR_JUDGE: "off" → None; "toy" → the toy judge; "auto" → the toy judge for toy presets
        whose weights are installed, else None."""
        if setting == "off" or (setting == "auto" and preset not in TOY_PRESETS):
            return None
        from ..toy.judge import DEFAULT_WEIGHTS, ToyJudge

        if setting == "auto" and not DEFAULT_WEIGHTS.exists():
            log.warning("no toy judge weights at %s: pairs go out without automatic checks", DEFAULT_WEIGHTS)
            return None
        return cls(ToyJudge.load(), toy_expectation)

    def verdicts(self, prompt: str, images: dict[str, Any]) -> dict[str, dict[str, bool]] | None:
        try:
            want = self.expect(prompt)
            if not want:
                return None
            sides = list(images)
            preds = self.judge.judge([images[s].convert("RGB") for s in sides])
            return {s: {a: _same(a, p.get(a), want[a]) for a in ATTRIBUTES if a in want}
                    for s, p in zip(sides, preds)}
        except Exception:  # never fail the pair because of its automatic checks
            log.exception("the %s judge failed on a pair; it goes out without automatic checks", self.name)
            return None


def _same(attribute: str, got, want) -> bool:
    if attribute == "count":
        try:
            return int(got) == int(want)
        except (TypeError, ValueError):
            return False
    return str(got).strip().lower() == str(want).strip().lower()


def toy_expectation(prompt: str) -> dict | None:
    """The count, colour and action the toy grammar reads in `prompt`, or None."""
    from ..toy.parse import parse_prompt

    scene = parse_prompt(prompt)
    return None if scene is None else {"count": scene.count, "color": scene.color, "action": scene.action}


__all__ = ["PairJudge", "toy_expectation", "ATTRIBUTES"]
