"""The toy world's two prompt languages (as in SURD), both a function of a scene.

* ``complex_prompt`` - a keyword "spell": ``"masterpiece, 3 robots, red, jumping, white
  background, best quality"`` (tags shuffled, style tags sampled).
* ``simple_prompt`` - a narrative caption with synonyms: ``"three crimson robots leaping
  against a white wall"``.

Both take ``rng=None`` for a canonical, deterministic string (first template, first synonyms).
With a Generator, the order of the draws is fixed: the shipped models were trained on prompts
drawn this way, and the shipped toy suite (assets/suites/toy.jsonl) must reproduce.
"""

from __future__ import annotations

import re

import numpy as np

from .scene import Scene

# Synonym tables of the narrative language.  Every phrase names exactly one value; no
# phrase of one attribute contains a word of another attribute's vocabulary (e.g. no
# colour words in background phrases).  The first entry is the canonical one.
NUMBER_WORDS: dict[int, tuple[str, ...]] = {
    1: ("one", "a", "a single", "a lone", "just one"),
    2: ("two", "a pair of", "a couple of", "two little"),
    3: ("three", "a trio of", "a group of three", "three little"),
    4: ("four", "a group of four", "a quartet of", "four little"),
    5: ("five", "a group of five", "a quintet of", "five little"),
}
COLOR_WORDS: dict[str, tuple[str, ...]] = {
    "red": ("red", "crimson", "scarlet", "bright red"),
    "green": ("green", "emerald", "leaf green", "dark green"),
    "blue": ("blue", "cobalt", "sapphire", "royal blue"),
    "yellow": ("yellow", "lemon yellow", "golden yellow", "bright yellow"),
    "purple": ("purple", "violet", "plum", "deep purple"),
    "orange": ("orange", "tangerine", "pumpkin orange", "bright orange"),
}
KIND_WORDS: dict[str, tuple[tuple[str, str], ...]] = {  # (singular, plural)
    "person": (("person", "people"), ("man", "men"), ("guy", "guys"),
               ("stick figure", "stick figures"), ("human", "humans")),
    "robot": (("robot", "robots"), ("android", "androids"), ("droid", "droids"),
              ("bot", "bots"), ("automaton", "automatons")),
    "cat": (("cat", "cats"), ("kitty", "kitties"), ("kitten", "kittens"),
            ("feline", "felines"), ("tomcat", "tomcats")),
}
ACTION_WORDS: dict[str, tuple[str, ...]] = {  # participles: "<kind> <word>"
    "standing": ("standing", "standing still", "standing upright", "standing up straight"),
    "jumping": ("jumping", "leaping", "hopping", "jumping in the air", "leaping up"),
    "sitting": ("sitting", "sitting down", "seated", "sitting on the ground"),
    "lying": ("lying down", "lying flat", "lying", "stretched out lying down"),
}
BACKGROUND_WORDS: dict[str, tuple[str, ...]] = {  # prepositional phrases
    "white": ("against a white wall", "on a white background", "in a white room",
              "in front of a white wall"),
    "gray": ("on a gray background", "against a grey wall", "in a gray studio",
             "in front of a gray wall"),
    "sky": ("under a clear sky", "against the sky", "under a cloudless sky",
            "in front of a pale sky"),
    "grass": ("on a grassy field", "on the grass", "in a meadow", "on a lawn"),
}

# Tags of the keyword language.
KIND_TAGS: dict[str, tuple[str, str]] = {"person": ("person", "people"),
                                         "robot": ("robot", "robots"), "cat": ("cat", "cats")}
ACTION_TAGS: dict[str, str] = {"standing": "standing", "jumping": "jumping",
                               "sitting": "sitting", "lying": "lying down"}
BACKGROUND_TAGS: dict[str, str] = {"white": "white background", "gray": "gray background",
                                   "sky": "sky background", "grass": "grass background"}
STYLE_TAGS: tuple[str, ...] = ("masterpiece", "best quality", "simple background", "8k",
                               "highly detailed", "sharp focus", "flat illustration",
                               "trending on artstation", "ultra detailed", "vector art")

# Narrative templates.  Fields: {num} {color} {kind} {action} {bg} {Bg} (capitalised bg),
# {be} ("is"/"are").
SIMPLE_TEMPLATES: tuple[str, ...] = (
    "{num} {color} {kind} {action} {bg}",
    "a photo of {num} {color} {kind} {action} {bg}",
    "there {be} {num} {color} {kind} {action} {bg}",
    "{Bg}, {num} {color} {kind} {be} {action}",
    "an illustration of {num} {color} {kind} that {be} {action} {bg}",
    "{num} {kind} colored {color}, {action} {bg}",
    "a drawing of {num} {color} {kind} {action} {bg}",
    "{num} {color} {kind} {bg}, {action}",
    "a simple picture showing {num} {color} {kind} {action} {bg}",
    "{num} {color} {kind} {be} {action} {bg}",
    "a cartoon of {num} {color} {kind} {action} {bg}",
    "in this image {num} {color} {kind} {be} {action} {bg}",
    "{num} {kind} painted {color} {action} {bg}",
    "a cute picture of {num} {color} {kind} {action} {bg}",
)


def _pick(options, rng: np.random.Generator | None):
    return options[0] if rng is None else options[int(rng.integers(len(options)))]


def _fix_articles(text: str) -> str:
    return re.sub(r"\b([Aa]) (?=[aeiouAEIOU])", r"\1n ", text)


def complex_prompt(scene: Scene, rng: np.random.Generator | None = None) -> str:
    """Keyword "spell" for a scene: count as digits with the noun, colour, action and
    background tags plus style tags, comma separated. ``rng=None`` gives the canonical
    ``"masterpiece, 3 robots, red, jumping, white background, best quality"`` form;
    with a Generator the style tags are sampled (1-4) and all tags shuffled."""
    sing, plur = KIND_TAGS[scene.kind]
    content = [f"{scene.count} {sing if scene.count == 1 else plur}", scene.color,
               ACTION_TAGS[scene.action], BACKGROUND_TAGS[scene.background]]
    if rng is None:
        return ", ".join(["masterpiece"] + content + ["best quality"])
    k = int(rng.integers(1, 5))
    style = [STYLE_TAGS[i] for i in rng.choice(len(STYLE_TAGS), size=k, replace=False)]
    tags = content + style
    order = rng.permutation(len(tags))
    return ", ".join(tags[i] for i in order)


def simple_prompt(scene: Scene, rng: np.random.Generator | None = None) -> str:
    """Narrative caption for a scene (number words, colour/kind/action synonyms, background
    phrase). ``rng=None`` gives the canonical ``"three red robots jumping against a white
    wall"`` form (first template, first synonyms)."""
    plural = scene.count > 1
    template = _pick(SIMPLE_TEMPLATES, rng)
    sing, plur = _pick(KIND_WORDS[scene.kind], rng)
    bg = _pick(BACKGROUND_WORDS[scene.background], rng)
    text = template.format(
        num=_pick(NUMBER_WORDS[scene.count], rng),
        color=_pick(COLOR_WORDS[scene.color], rng),
        kind=plur if plural else sing,
        action=_pick(ACTION_WORDS[scene.action], rng),
        bg=bg, Bg=bg[0].upper() + bg[1:],
        be="are" if plural else "is",
    )
    return _fix_articles(text)
