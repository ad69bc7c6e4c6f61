"""The toy world: a synthetic 64x64 text-to-image world where counts, colours and actions can
be judged exactly (the app's offline default model is trained on it).

Light on import: ``world`` and ``dataset`` need only numpy and Pillow; ``judge`` (torch) is
imported lazily on first access of ``ToyJudge`` / ``judge_accuracy``.

    from surlib.toy import Scene, render, simple_prompt, complex_prompt, scenes, split_of
"""

from .dataset import ToyRow, ToyStream, export_imagefolder, read_metadata, sample_rows
from .world import (
    ACTIONS,
    BACKGROUNDS,
    COLORS,
    COUNTS,
    IMAGE_SIZE,
    KINDS,
    SPLITS,
    Scene,
    all_scenes,
    combos,
    complex_prompt,
    render,
    render_array,
    render_batch,
    scenes,
    simple_prompt,
    split_of,
)

__all__ = [
    "ACTIONS", "BACKGROUNDS", "COLORS", "COUNTS", "IMAGE_SIZE", "KINDS", "SPLITS", "Scene",
    "all_scenes", "combos", "complex_prompt", "render", "render_array", "render_batch",
    "scenes", "simple_prompt", "split_of", "ToyJudge", "judge_accuracy",
    "ToyRow", "ToyStream", "export_imagefolder", "read_metadata", "sample_rows",
]


def __getattr__(name):  # lazy: keep torch out of ``import surlib.toy``
    if name in ("ToyJudge", "judge_accuracy"):
        from . import judge as _judge
        return getattr(_judge, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
