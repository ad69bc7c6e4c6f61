"""What the adapter aims at: the keyword "spell" behind a plain prompt, where one exists.

SUR-adapter is trained so that a plain prompt conditions the model the way its spell (the long
keyword prompt of the same image) does. Compare shows that target as a third image, the base
model given the spell, when the studio knows the spell:

* a suite prompt: its row's ``complex_prompt`` (every shipped suite has one);
* in the toy world, any prompt its grammar parses (`surlib.toy.parse`): the world's canonical
  spell of that scene (`surlib.toy.prompts.complex_prompt` without a generator), so one prompt
  always gets one spell.

Everything else has no spell, and `SpellBook.why_none` says why in a sentence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from .prompts import SuitePrompt


@dataclass(frozen=True)
class Spell:
    text: str
    source: str  # where it comes from, for people: "suite toy, row toy-test-0003" or "the toy grammar"


def _key(text: str) -> str:
    return " ".join(text.lower().split())


class SpellBook:
    """Spells of suite prompts (any preset) and, with `toy_grammar`, of toy-grammar prompts."""

    def __init__(self, suites: dict[str, Iterable[SuitePrompt]], toy_grammar: bool):
        self.toy_grammar = toy_grammar
        self._rows: dict[str, Spell] = {}
        for name, rows in suites.items():
            for row in rows:
                if row.spell:
                    self._rows.setdefault(_key(row.prompt), Spell(
                        row.spell, f"suite {name}, row {row.prompt_id}" if row.prompt_id else f"suite {name}"))

    def lookup(self, prompt: str | None) -> Spell | None:
        """The prompt's spell (its suite row's first, else the toy grammar's), even when it is the
        prompt itself."""
        if not isinstance(prompt, str) or not prompt.strip():
            return None
        hit = self._rows.get(_key(prompt))
        if hit is not None:
            return hit
        if self.toy_grammar:
            from ..toy.parse import parse_prompt
            from ..toy.prompts import complex_prompt

            scene = parse_prompt(prompt)
            if scene is not None:
                return Spell(complex_prompt(scene), "the toy grammar")
        return None

    def find(self, prompt: str | None) -> Spell | None:
        """The spell worth a third image: `lookup`'s, unless it is the prompt itself (then the
        baseline already is the base model given the spell)."""
        spell = self.lookup(prompt)
        return None if spell is None or _key(spell.text) == _key(prompt) else spell

    def why_none(self, prompt: str | None) -> str | None:
        """None when `find` has a spell; else why not, as one sentence."""
        if self.find(prompt) is not None:
            return None
        if not isinstance(prompt, str) or not prompt.strip():
            return "No spell: the prompt is empty."
        if self.lookup(prompt) is not None:
            return "No third image: the prompt is its own spell, so the baseline is the base model given the spell."
        if not self.toy_grammar:
            return ("No spell: this prompt is not in a suite, and outside the toy world there is no grammar "
                    "to derive one, so only baseline and adapter are shown.")
        from ..toy.parse import why_unparsed

        return (f"No spell: {why_unparsed(prompt)}, and the prompt is not in a suite, so only baseline and "
                "adapter are shown.")


__all__ = ["Spell", "SpellBook"]
