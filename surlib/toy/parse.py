"""Read a prompt back into the scene it describes, by the toy world's own grammar.

The inverse of `surlib.toy.prompts`: ``parse_prompt(text)`` is the `Scene` of a sentence the
grammar can produce (either narrative frame set, any synonyms, or the keyword spell with its
tags in any order), or None. None is the answer for anything the grammar cannot produce: a
word outside `vocabulary()`, a missing attribute, two values for one attribute, a count that
disagrees with its noun, verb or pronoun ("a single cats", "two cats is"), or an ambiguous
reading. The studio turns a parsed scene into the world's canonical spell
(``complex_prompt(scene)``): what the adapter was trained to make a plain prompt mean.

Matching is on words (`words_of`: lower case, punctuation ignored), with "an" read as "a"
since the grammar writes "an" only where an article meets a vowel. Nothing is guessed: a
prompt parses when some frame, filled from the synonym tables, spells exactly its words.
"""

from __future__ import annotations

import re
from functools import lru_cache

from .prompts import (ACTION_TAGS, ACTION_WORDS, BACKGROUND_TAGS, BACKGROUND_WORDS, COLOR_WORDS,
                      FRAME_SETS, KIND_TAGS, KIND_WORDS, NUMBER_WORDS, PRONOUNS, STYLE_TAGS,
                      unknown_words, words_of)
from .scene import COLORS, Scene

_SLOT = re.compile(r"\{(\w+)\}")


def _words(text: str) -> tuple[str, ...]:
    return tuple("a" if w == "an" else w for w in words_of(text))


@lru_cache(maxsize=None)
def _slot_options() -> dict[str, tuple[tuple[tuple[str, ...], object], ...]]:
    """Slot name -> (words, value) alternatives, longest first."""
    def table(pairs):
        return tuple(sorted(((_words(p), v) for p, v in pairs), key=lambda o: -len(o[0])))

    bg = table((p, b) for b, ps in BACKGROUND_WORDS.items() for p in ps)
    return {
        "num": table((p, n) for n, ps in NUMBER_WORDS.items() for p in ps),
        "color": table((p, c) for c, ps in COLOR_WORDS.items() for p in ps),
        "kind": table((form, (k, plural)) for k, pairs in KIND_WORDS.items() for pair in pairs
                      for plural, form in enumerate(pair)),
        "action": table((p, a) for a, ps in ACTION_WORDS.items() for p in ps),
        "bg": bg, "Bg": bg,
        "be": table((("is", False), ("are", True))),
        # The pronoun as written; `_scene_of` checks it is the one of the noun and number.
        "they": table({(pron, pron) for prons in PRONOUNS.values() for pron in prons}),
    }


@lru_cache(maxsize=None)
def _frames() -> tuple[tuple[tuple[str, str], ...], ...]:
    """Every sentence frame as a sequence of ("word", w) and ("slot", name) items."""
    out = []
    for frames in FRAME_SETS.values():
        for template in frames:
            items: list[tuple[str, str]] = []
            for i, part in enumerate(_SLOT.split(template)):
                if i % 2:
                    items.append(("slot", part))
                else:
                    items += [("word", w) for w in _words(part)]
            out.append(tuple(items))
    return tuple(out)


def _matches(frame, words, i=0, j=0, got=None):
    """Every way `frame[i:]` spells `words[j:]`: yields {slot: value} per complete match."""
    got = {} if got is None else got
    if i == len(frame):
        if j == len(words):
            yield dict(got)
        return
    kind, name = frame[i]
    if kind == "word":
        if j < len(words) and words[j] == name:
            yield from _matches(frame, words, i + 1, j + 1, got)
        return
    for option, value in _slot_options()[name]:
        if words[j:j + len(option)] == option:
            if name in got and got[name] != value:  # {bg} and {Bg} share one value
                continue
            had = name in got
            got[name] = value
            yield from _matches(frame, words, i + 1, j + len(option), got)
            if not had:
                del got[name]


def _scene_of(slots: dict) -> Scene | None:
    """The scene of one frame match, or None when its number, kind and pronoun disagree."""
    count = slots["num"]
    kind, plural = slots["kind"]
    if plural != (count > 1):
        return None
    if "be" in slots and slots["be"] != plural:
        return None
    if "they" in slots and slots["they"] != PRONOUNS[kind][plural]:
        return None
    return Scene(count, slots["color"], kind, slots["action"], slots.get("bg") or slots["Bg"])


def parse_narrative(text: str) -> Scene | None:
    """The scene of a narrative caption in one of the grammar's frames, or None."""
    words = _words(text)
    found = {s for frame in _frames() for slots in _matches(frame, words) if (s := _scene_of(slots))}
    return found.pop() if len(found) == 1 else None


@lru_cache(maxsize=None)
def _tags() -> dict[str, tuple[str, object]]:
    """Keyword tag (words joined by one space) -> (attribute, value); style tags -> ("style", tag)."""
    tags: dict[str, tuple[str, object]] = {}
    for kind, (sing, plur) in KIND_TAGS.items():
        for n in NUMBER_WORDS:
            tags[" ".join(_words(f"{n} {sing if n == 1 else plur}"))] = ("count_kind", (n, kind))
    tags.update({c: ("color", c) for c in COLORS})
    tags.update({" ".join(_words(t)): ("action", a) for a, t in ACTION_TAGS.items()})
    tags.update({" ".join(_words(t)): ("background", b) for b, t in BACKGROUND_TAGS.items()})
    tags.update({" ".join(_words(t)): ("style", t) for t in STYLE_TAGS})
    return tags


def parse_spell(text: str) -> Scene | None:
    """The scene of a keyword spell (comma-separated tags in any order: one count-and-noun tag,
    one colour, one action, one background, any style tags, each at most once), or None."""
    if not isinstance(text, str) or "," not in text:
        return None
    parts = [" ".join(_words(t)) for t in text.split(",")]
    if not all(parts) or len(set(parts)) != len(parts):
        return None
    found: dict[str, object] = {}
    for part in parts:
        hit = _tags().get(part)
        if hit is None:
            return None
        attr, value = hit
        if attr == "style":
            continue
        if attr in found:
            return None
        found[attr] = value
    if set(found) != {"count_kind", "color", "action", "background"}:
        return None
    count, kind = found["count_kind"]
    return Scene(count, found["color"], kind, found["action"], found["background"])


def parse_prompt(text: str) -> Scene | None:
    """The scene a prompt of the toy grammar describes (narrative or spell), or None for a
    prompt the grammar cannot produce (unknown words, missing or contradicting attributes)."""
    if not isinstance(text, str) or not text.strip() or unknown_words(text):
        return None
    return parse_spell(text) or parse_narrative(text)


def why_unparsed(text: str) -> str | None:
    """None when `parse_prompt` reads the prompt; else a short reason, for people."""
    if not isinstance(text, str) or not text.strip():
        return "the prompt is empty"
    unknown = unknown_words(text)
    if unknown:
        return f"the toy world does not know {', '.join(repr(w) for w in unknown)}"
    if parse_prompt(text) is not None:
        return None
    return ("it is not a sentence of the toy grammar, which names one count, colour, kind, action and "
            "background and agrees in number (e.g. \"three red robots jumping against a white wall\")")


__all__ = ["parse_prompt", "parse_narrative", "parse_spell", "why_unparsed"]
