"""The toy world's two prompt languages (as in SURD), both a function of a scene.

* ``complex_prompt`` - a keyword "spell": ``"masterpiece, 3 robots, red, jumping, white
  background, best quality"`` (tags shuffled, style tags sampled).
* ``simple_prompt`` - a narrative caption with synonyms: ``"three crimson robots leaping
  against a white wall"``.

Both take ``rng=None`` for a canonical, deterministic string (first template, first synonyms).
With a Generator, the order of the draws is fixed: the shipped models were trained on prompts
drawn this way, and the shipped toy suite (assets/suites/toy.jsonl) must reproduce.

The narrative grammar's sentence frames come in two sets sharing one vocabulary of values:
``SIMPLE_TEMPLATES`` (the training frames, the only ones any shipped model has read) and
``HELDOUT_TEMPLATES`` (new word orders and filler phrases), so that an evaluation can tell an
adapter that learned the values from one that memorised the training sentences.
``vocabulary()`` is every word the grammar can produce; ``unknown_words`` names a prompt's
words outside it, so a prompt the toy world cannot express is reported rather than judged.
"""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np

from .scene import COUNTS, Scene

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
# {be} ("is"/"are"), {they} (the pronoun, see PRONOUNS).  These are the training frames.
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
# Held-out frames: word orders (colour after the noun, action or background first, inversion)
# and filler words that no training frame uses; no filler word names a count, colour, kind,
# action or background, so the scene is still carried by the synonym tables alone.
HELDOUT_TEMPLATES: tuple[str, ...] = (
    "{num} {kind} {action} {bg}, {they} {be} {color}",
    "{action} {bg}: {num} {color} {kind}",
    "look, {bg} {be} {num} {color} {kind} {action}",
    "here we see {num} {kind}, {color} and {action}, {bg}",
    "imagine {num} {color} {kind} {bg}; {they} {be} {action}",
    "please draw {num} {kind} in {color}, {action} {bg}",
    "a scene where {num} {color} {kind} {be} {action} {bg}",
    "{Bg}, we can see {num} {color} {kind} {action}",
    "{action} {bg} {be} {num} {color} {kind}",
    "what you see: {num} {color} {kind}, {action}, {bg}",
    "my sketch of {num} {kind} {action} {bg} in {color}",
)
FRAME_SETS: dict[str, tuple[str, ...]] = {"train": SIMPLE_TEMPLATES, "heldout": HELDOUT_TEMPLATES}
# {they} for one object / several.  A lone person gets a gender-free noun rather than "it";
# none of these words names a count (so no "this one").
PRONOUNS: dict[str, tuple[str, str]] = {"person": ("the figure", "they"), "robot": ("it", "they"),
                                        "cat": ("it", "they")}


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


def simple_prompt(scene: Scene, rng: np.random.Generator | None = None, frames: str = "train",
                  canonical: bool = False) -> str:
    """Narrative caption for a scene (number words, colour/kind/action synonyms, background
    phrase). ``rng=None`` gives the canonical ``"three red robots jumping against a white
    wall"`` form (first template, first synonyms).

    ``frames`` picks the sentence frames: ``"train"`` (``SIMPLE_TEMPLATES``; the default, drawn
    exactly as the shipped models saw them) or ``"heldout"`` (``HELDOUT_TEMPLATES``).
    ``canonical=True`` draws only the frame from ``rng`` and uses the first synonym of every
    table, which separates "new sentence" from "new words"."""
    if frames not in FRAME_SETS:
        raise ValueError(f"frames must be one of {tuple(FRAME_SETS)}, got {frames!r}")
    words_rng = None if canonical else rng
    plural = scene.count > 1
    template = _pick(FRAME_SETS[frames], rng)
    sing, plur = _pick(KIND_WORDS[scene.kind], words_rng)
    bg = _pick(BACKGROUND_WORDS[scene.background], words_rng)
    text = template.format(
        num=_pick(NUMBER_WORDS[scene.count], words_rng),
        color=_pick(COLOR_WORDS[scene.color], words_rng),
        kind=plur if plural else sing,
        action=_pick(ACTION_WORDS[scene.action], words_rng),
        bg=bg, Bg=bg[0].upper() + bg[1:],
        be="are" if plural else "is",
        they=PRONOUNS[scene.kind][plural],
    )
    return _fix_articles(text)


_FIELD_RE = re.compile(r"\{\w+\}")


def words_of(text: str) -> list[str]:
    """The lower-cased words of a text: runs of letters and digits (so "8k" is one word and
    "grey," is "grey"), the unit both `vocabulary` and `unknown_words` count in."""
    if not isinstance(text, str):
        raise TypeError(f"a prompt must be a string, got {type(text).__name__}")
    return re.findall(r"[^\W_]+", text.lower())


@lru_cache(maxsize=None)
def vocabulary() -> frozenset[str]:
    """Every word the toy world's two prompt languages can produce: the words of both frame
    sets, of every synonym table, pronoun, tag and style tag, the count digits, "is"/"are" and
    the article "an" that `_fix_articles` writes."""
    phrases: list[str] = [_FIELD_RE.sub(" ", t) for t in SIMPLE_TEMPLATES + HELDOUT_TEMPLATES]
    phrases += [p for table in (NUMBER_WORDS, COLOR_WORDS, ACTION_WORDS, BACKGROUND_WORDS,
                                ACTION_TAGS, BACKGROUND_TAGS) for v in table.values()
                for p in ((v,) if isinstance(v, str) else v)]
    phrases += [w for pairs in KIND_WORDS.values() for pair in pairs for w in pair]
    phrases += [w for table in (KIND_TAGS, PRONOUNS) for pair in table.values() for w in pair]
    phrases += list(COLOR_WORDS) + list(STYLE_TAGS) + [str(n) for n in COUNTS] + ["is", "are", "an"]
    return frozenset(w for p in phrases for w in words_of(p))


def unknown_words(prompt: str) -> list[str]:
    """The words of ``prompt`` (lower-cased, split on anything but letters and digits) that the
    toy world's grammar never produces, in order of first appearance, each once. A toy judge
    can only check what the world can draw, so a prompt with unknown words is to be reported
    as such (and counted) instead of being judged as if it were in the world."""
    vocab = vocabulary()
    return list(dict.fromkeys(w for w in words_of(prompt) if w not in vocab))
