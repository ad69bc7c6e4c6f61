"""The toy world: a synthetic 64x64 text-to-image world where counts, colours and actions can
be judged exactly (the app's offline default model is trained on it).

``scene`` (scenes, vocabularies, splits), ``prompts`` (the two prompt languages), ``render``
(pixels) and ``dataset`` (rows, export) need only numpy and Pillow; ``judge`` (torch) is
imported lazily on first access of ``ToyJudge`` / ``judge_accuracy``, so that
``import surlib.toy`` stays light for the data tools.

    from surlib.toy import Scene, render, simple_prompt, complex_prompt, scenes, split_of
    from surlib.toy import unknown_words, vocabulary, suite_rows, TOY_SUITES

Here ``render`` is the function; the module of that name is reached with
``from surlib.toy.render import ...``.
"""

from .dataset import ToyRow, export_imagefolder, sample_rows
from .prompts import complex_prompt, simple_prompt, unknown_words, vocabulary
from .render import IMAGE_SIZE, render, render_array, render_batch
from .scene import (ACTIONS, BACKGROUNDS, COLORS, COUNTS, KINDS, SPLITS, Scene, all_scenes, combos,
                    scenes, split_of)
from .suite import TOY_SUITES, suite_rows

__all__ = [
    "ACTIONS", "BACKGROUNDS", "COLORS", "COUNTS", "IMAGE_SIZE", "KINDS", "SPLITS", "Scene",
    "all_scenes", "combos", "complex_prompt", "render", "render_array", "render_batch",
    "scenes", "simple_prompt", "split_of", "ToyJudge", "judge_accuracy",
    "ToyRow", "export_imagefolder", "sample_rows", "TOY_SUITES", "suite_rows", "unknown_words",
    "vocabulary",
]


def __getattr__(name):  # lazy: keep torch out of ``import surlib.toy``
    if name in ("ToyJudge", "judge_accuracy"):
        from . import judge as _judge
        return getattr(_judge, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
