"""Toy-world scenes, their vocabularies, and the train / validation / test splits.

A scene is ``Scene(count, color, kind, action, background)``. Every object in a scene shares
kind, color and action, so each image can be judged on count, color and action at once.

Splits are by the combination ``(count, color, kind, action)`` (background is not part of the
key), assigned by a salted SHA-256 hash: about 80% train, 10% validation, 10% test, so test
combinations are never seen in training. The salt and fractions are part of the shipped
weights' history: changing them would put training combinations into the test split.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Sequence

COUNTS: tuple[int, ...] = (1, 2, 3, 4, 5)
COLORS: tuple[str, ...] = ("red", "green", "blue", "yellow", "purple", "orange")
KINDS: tuple[str, ...] = ("person", "robot", "cat")
ACTIONS: tuple[str, ...] = ("standing", "jumping", "sitting", "lying")
BACKGROUNDS: tuple[str, ...] = ("white", "gray", "sky", "grass")

SPLITS: tuple[str, ...] = ("train", "validation", "test")
SPLIT_SALT = "surlib-toy-v1"
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)


@dataclass(frozen=True)
class Scene:
    """One toy-world scene. All ``count`` objects share ``color``, ``kind`` and ``action``."""

    count: int
    color: str
    kind: str
    action: str
    background: str = "white"

    def __post_init__(self) -> None:
        if self.count not in COUNTS:
            raise ValueError(f"count must be one of {COUNTS}, got {self.count!r}")
        for name, vocab in (("color", COLORS), ("kind", KINDS), ("action", ACTIONS),
                            ("background", BACKGROUNDS)):
            if getattr(self, name) not in vocab:
                raise ValueError(f"{name} must be one of {vocab}, got {getattr(self, name)!r}")

    @property
    def combo(self) -> tuple[int, str, str, str]:
        """The split key ``(count, color, kind, action)``."""
        return (self.count, self.color, self.kind, self.action)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Scene":
        return cls(count=int(d["count"]), color=str(d["color"]), kind=str(d["kind"]),
                   action=str(d["action"]), background=str(d.get("background", "white")))


def all_scenes() -> list[Scene]:
    """Every scene of the world, in a fixed order (counts x colors x kinds x actions x bgs)."""
    return [Scene(n, c, k, a, b) for n in COUNTS for c in COLORS for k in KINDS
            for a in ACTIONS for b in BACKGROUNDS]


def _combo_of(x) -> tuple[int, str, str, str]:
    if isinstance(x, Scene):
        return x.combo
    n, c, k, a = x[:4]
    return (int(n), str(c), str(k), str(a))


def split_of(scene: Scene | Sequence) -> str:
    """``"train"``, ``"validation"`` or ``"test"`` for a scene (or a (count, color, kind,
    action) tuple). Deterministic, independent of the background."""
    n, c, k, a = _combo_of(scene)
    h = hashlib.sha256(f"{SPLIT_SALT}|{n}|{c}|{k}|{a}".encode()).digest()
    u = int.from_bytes(h[:8], "big") / 2.0 ** 64
    if u < SPLIT_FRACTIONS[0]:
        return "train"
    if u < SPLIT_FRACTIONS[0] + SPLIT_FRACTIONS[1]:
        return "validation"
    return "test"


@lru_cache(maxsize=None)
def _scenes_cached(split: str) -> tuple[Scene, ...]:
    return tuple(s for s in all_scenes() if split_of(s) == split)


def scenes(split: str | None = None) -> list[Scene]:
    """All scenes of a split (every background of each combination), or all if None."""
    if split is None:
        return all_scenes()
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return list(_scenes_cached(split))


def combos(split: str | None = None) -> list[tuple[int, str, str, str]]:
    """The distinct (count, color, kind, action) combinations of a split."""
    return sorted({s.combo for s in scenes(split)},
                  key=lambda t: (t[0], COLORS.index(t[1]), KINDS.index(t[2]), ACTIONS.index(t[3])))
