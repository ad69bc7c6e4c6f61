"""Quality measures by name: what `EvalConfig.quality` and ``--quality`` may name.

A measure is a plain function ``fn(images) -> scores`` (PIL RGB images in, one float per image
out, lower is better); the registry maps a name to a factory that makes it from the run's
config, because a measure may depend on settings (BRISQUE's implementation). Measures are
registered as callables with `register_quality`, never named as import strings: a run folder
records measure names, and a name must mean the same code when the run is resumed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence

if TYPE_CHECKING:
    from .config import EvalConfig

QualityFn = Callable[[list], Sequence[float]]

PALETTE_DISTANCE_MARGIN = 0.5
"""TOST margin of the toy palette distance, fixed before any adapter run from
`eval.toy_quality_check`: see docs/evaluation.md for how it compares with blur and noise."""


def brisque_measure(cfg: EvalConfig) -> QualityFn:
    from .brisque import brisque_scores

    return lambda images: brisque_scores(images, impl=cfg.brisque_impl)


def palette_distance_measure(cfg: EvalConfig) -> QualityFn:
    from .palette_distance import palette_distance

    return palette_distance


QUALITY: dict[str, Callable[[EvalConfig], QualityFn]] = {"brisque": brisque_measure,
                                                          "palette_distance": palette_distance_measure}


def register_quality(name: str, factory: Callable[[EvalConfig], QualityFn]) -> None:
    """Make a measure available by name (to `EvalConfig.quality` and ``python -m eval.run --quality``)."""
    QUALITY[name] = factory


def quality_fns(cfg: EvalConfig) -> dict[str, QualityFn]:
    """{name: fn} of the measures the config names; ValueError for an unregistered name."""
    unknown = [q for q in cfg.quality if q not in QUALITY]
    if unknown:
        raise ValueError(f"unknown quality measure(s) {unknown}; registered: {', '.join(sorted(QUALITY))} "
                         f"(add one with eval.measures.register_quality)")
    return {q: QUALITY[q](cfg) for q in cfg.quality}


__all__ = ["QUALITY", "QualityFn", "register_quality", "quality_fns", "brisque_measure",
           "palette_distance_measure", "PALETTE_DISTANCE_MARGIN"]
