"""Normalising free-text VQA answers so that "3", "three" and "3 cats" all count as three.

Every check takes the model's answer and the row's accepted answers, normalises both the same
way and compares. Answer kinds:

* ``number`` - the first count named ("3", "three", "a pair", "3 cats", "none" -> 0).
* ``color`` - the colours named, through a synonym table ("grey" -> gray, "crimson" -> red,
  "golden" -> yellow); right when an accepted colour is among them ("red and white" is right
  for red). Use `canonical_color` for single colour names.
* ``yesno`` - "yes"/"yeah"/"true" vs "no"/"nope"/"false".
* ``text`` - lowercase, punctuation and articles dropped, plurals made singular; right when
  the answer equals an accepted answer or contains it as a whole-word phrase ("riding a bike"
  contains "riding bike" once "a" is dropped).
"""

from __future__ import annotations

import re
from typing import Iterable

ANSWER_KINDS = ("number", "color", "yesno", "text")

NUMBER_WORDS = {
    "zero": 0, "none": 0, "no": 0, "nothing": 0, "nobody": 0,
    "one": 1, "a": 1, "an": 1, "single": 1, "alone": 1, "lone": 1, "once": 1,
    "two": 2, "pair": 2, "couple": 2, "both": 2, "twice": 2, "twins": 2,
    "three": 3, "trio": 3, "triple": 3, "four": 4, "quartet": 4, "five": 5, "quintet": 5,
    "six": 6, "half dozen": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11,
    "twelve": 12, "dozen": 12,
}
_NUMBER_PHRASES = sorted(NUMBER_WORDS, key=lambda w: -len(w))

# Canonical colour -> synonyms (all lower case). The canonical names are the GenEval-style set
# used by the CLIP colour judge as well.
COLOR_SYNONYMS: dict[str, tuple[str, ...]] = {
    "red": ("red", "crimson", "scarlet", "maroon", "burgundy", "ruby", "cherry", "wine"),
    "orange": ("orange", "tangerine", "amber", "rust", "copper", "peach", "ginger"),
    "yellow": ("yellow", "golden", "gold", "lemon", "mustard", "blond", "blonde"),
    "green": ("green", "emerald", "lime", "olive", "teal", "mint", "jade", "turquoise"),
    "blue": ("blue", "navy", "azure", "cobalt", "sapphire", "cyan", "aqua", "sky blue", "indigo"),
    "purple": ("purple", "violet", "lavender", "lilac", "plum", "magenta", "mauve"),
    "pink": ("pink", "rose", "fuchsia", "salmon", "hot pink"),
    "brown": ("brown", "tan", "beige", "chocolate", "khaki", "caramel", "bronze", "coffee", "tawny"),
    "black": ("black", "ebony", "jet black", "charcoal"),
    "white": ("white", "ivory", "cream", "snow white", "off white"),
    "gray": ("gray", "grey", "silver", "ash", "slate"),
}
COLORS: tuple[str, ...] = tuple(COLOR_SYNONYMS)
_COLOR_LOOKUP = {syn: canon for canon, syns in COLOR_SYNONYMS.items() for syn in syns}
_COLOR_PHRASES = sorted(_COLOR_LOOKUP, key=lambda w: -len(w))

YES_WORDS = frozenset({"yes", "yeah", "yep", "yup", "true", "correct", "sure", "definitely", "affirmative"})
NO_WORDS = frozenset({"no", "nope", "nah", "false", "not", "none", "never", "negative"})

ARTICLES = frozenset({"a", "an", "the"})
FILLER = frozenset({"is", "are", "it", "they", "he", "she", "its", "their", "his", "her", "there",
                    "this", "that", "these", "those", "of", "some"})

_IRREGULAR_PLURALS = {
    "men": "man", "women": "woman", "children": "child", "people": "person", "persons": "person",
    "mice": "mouse", "geese": "goose", "feet": "foot", "teeth": "tooth", "oxen": "ox",
    "wolves": "wolf", "leaves": "leaf", "knives": "knife", "wives": "wife", "lives": "life",
    "calves": "calf", "halves": "half", "shelves": "shelf", "loaves": "loaf", "scarves": "scarf",
    "puppies": "puppy", "kitties": "kitty", "ponies": "pony", "butterflies": "butterfly",
    "cherries": "cherry", "ladies": "lady", "babies": "baby", "bunnies": "bunny",
    "fish": "fish", "sheep": "sheep", "deer": "deer", "bison": "bison", "moose": "moose",
    "cactuses": "cactus", "cacti": "cactus", "fungi": "fungus", "dice": "die",
    "tomatoes": "tomato", "potatoes": "potato", "heroes": "hero", "dominoes": "domino",
}
_NO_STRIP = frozenset({"glass", "grass", "dress", "bus", "cactus", "octopus", "walrus", "lotus",
                       "platypus", "hippopotamus", "chess", "class", "moss", "boss", "kiss",
                       "news", "lens", "iris", "gas", "this", "is", "was", "has", "yes", "his",
                       "its", "us", "plus", "canvas", "bonus", "circus", "virus", "campus",
                       "tennis", "series", "species", "pants", "jeans", "glasses", "scissors",
                       "always", "sometimes", "across", "perhaps", "less", "princess", "goddess"})


def _tokens(text: str) -> list[str]:
    text = str(text).lower().replace("-", " ").replace("_", " ")
    text = re.sub(r"[^a-z0-9' ]+", " ", text).replace("'s", "").replace("'", "")
    return text.split()


def singular(word: str) -> str:
    """A plural noun's singular by rule and a short irregular table (`cats` -> `cat`,
    `boxes` -> `box`, `puppies` -> `puppy`, `men` -> `man`); other words unchanged."""
    w = word.lower()
    if w in _IRREGULAR_PLURALS:
        return _IRREGULAR_PLURALS[w]
    if w in _NO_STRIP or len(w) <= 3:
        return w
    if w.endswith("ies") and len(w) > 4:
        return w[:-3] + "y"
    if w.endswith(("ches", "shes", "xes", "zzes", "sses")):
        return w[:-2]
    if w.endswith("s") and not w.endswith(("ss", "us", "is")):
        return w[:-1]
    return w


def normalize_text(text: str) -> str:
    """Lowercase, no punctuation, no articles, singular nouns: ``"The Two Cats!"`` -> ``"two cat"``."""
    return " ".join(singular(t) for t in _tokens(text) if t not in ARTICLES)


def parse_number(text) -> int | None:
    """The first count named in an answer: digits, number words or count phrases; else None."""
    if isinstance(text, bool):
        return None
    if isinstance(text, int):
        return text
    s = " ".join(_tokens(str(text)))
    m = re.search(r"\d+", s)
    first_digit = m.start() if m else None
    best = (first_digit, int(m.group())) if m else None
    padded = f" {s} "
    for phrase in _NUMBER_PHRASES:
        i = padded.find(f" {phrase} ")
        if i >= 0 and (best is None or i < best[0]):
            if phrase in ("a", "an", "no") and s != phrase:
                continue  # "a" / "no" alone are counts; inside a sentence they are grammar
            best = (i, NUMBER_WORDS[phrase])
    return None if best is None else best[1]


def parse_colors(text: str) -> list[str]:
    """Canonical colours named in an answer, in order of appearance ("dark grey and white" ->
    ["gray", "white"])."""
    s = f" {' '.join(_tokens(text))} "
    found: list[tuple[int, str]] = []
    taken = [False] * len(s)
    for phrase in _COLOR_PHRASES:  # longest first, so "sky blue" is not also "blue" twice
        start = 0
        while (i := s.find(f" {phrase} ", start)) >= 0:
            span = range(i + 1, i + 1 + len(phrase))
            if not any(taken[j] for j in span):
                for j in span:
                    taken[j] = True
                found.append((i, _COLOR_LOOKUP[phrase]))
            start = i + 1
    out: list[str] = []
    for _, c in sorted(found):
        if c not in out:
            out.append(c)
    return out


def canonical_color(name: str) -> str:
    """The canonical colour of a colour name or synonym; ValueError naming the known colours."""
    found = parse_colors(name)
    if len(found) != 1:
        raise ValueError(f"unknown colour {name!r}; known colours: {', '.join(COLORS)} "
                         f"(and synonyms such as grey, crimson, navy, golden)")
    return found[0]


def parse_yes_no(text: str) -> str | None:
    """"yes" or "no" for an answer that says so first, else None."""
    for t in _tokens(text):
        if t in YES_WORDS:
            return "yes"
        if t in NO_WORDS:
            return "no"
    return None


def normalize_answer(answer, kind: str):
    """The comparable form of an answer of a kind (int, list of colours, "yes"/"no", text)."""
    if kind == "number":
        return parse_number(answer)
    if kind == "color":
        return parse_colors(str(answer))
    if kind == "yesno":
        return parse_yes_no(str(answer))
    if kind == "text":
        return normalize_text(str(answer))
    raise ValueError(f"unknown answer kind {kind!r}; accepted: {', '.join(ANSWER_KINDS)}")


def _contains_phrase(haystack: str, needle: str) -> bool:
    return bool(needle) and f" {needle} " in f" {haystack} "


def answer_matches(answer, accepted: Iterable, kind: str) -> bool:
    """Whether a model's answer matches one of the accepted answers, both normalised by kind."""
    accepted = list(accepted)
    got = normalize_answer(answer, kind)
    if kind == "number":
        return got is not None and got in {normalize_answer(a, kind) for a in accepted}
    if kind == "color":
        want = {c for a in accepted for c in parse_colors(str(a))}
        return any(c in want for c in got)
    if kind == "yesno":
        return got is not None and got in {normalize_answer(a, kind) for a in accepted}
    # text: exact after normalisation, or an accepted phrase inside the answer (fillers dropped)
    got_core = " ".join(t for t in got.split() if t not in FILLER)
    for a in accepted:
        want = normalize_text(str(a))
        want_core = " ".join(t for t in want.split() if t not in FILLER)
        if got in (want, want_core) or got_core == want_core or _contains_phrase(got_core, want_core):
            return True
    return False


def infer_kind(question: str, accepted: Iterable) -> str:
    """Answer kind guessed from a question and its accepted answers (for rows that omit it)."""
    q = question.lower().strip()
    accepted = [str(a) for a in accepted]
    if q.startswith("how many") or all(parse_number(a) is not None and a.strip().isdigit() for a in accepted):
        return "number"
    if "what color" in q or "what colour" in q:
        return "color"
    if accepted and all(parse_yes_no(a) is not None and len(_tokens(a)) == 1 for a in accepted):
        return "yesno"
    return "text"


__all__ = ["ANSWER_KINDS", "COLORS", "COLOR_SYNONYMS", "NUMBER_WORDS", "answer_matches", "canonical_color",
           "infer_kind", "normalize_answer", "normalize_text", "parse_colors", "parse_number",
           "parse_yes_no", "singular"]
