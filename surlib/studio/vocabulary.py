"""The toy world's vocabulary in view: what the default model knows, and the words of a prompt
it does not.

The toy model was trained only on prompts of the toy grammar (`surlib.toy.prompts`), so a word
outside `vocabulary()` is a word it has never read: it will most likely be ignored. Compare
lists the values it knows with their synonyms and marks the prompt's unknown words as they are
typed. A hint, never a refusal: the prompt is generated as typed.
"""

from __future__ import annotations

import re

from ..toy.prompts import (ACTION_TAGS, ACTION_WORDS, BACKGROUND_WORDS, COLOR_WORDS, FRAME_SETS, KIND_WORDS,
                           NUMBER_WORDS, complex_prompt, simple_prompt, unknown_words)
from ..toy.scene import Scene

UNKNOWN = "unknown to the toy model"
EXAMPLE = Scene(3, "red", "robot", "jumping", "white")
_TOKEN = re.compile(r"([^\W_]+)")


def _also(options, k: int = 3) -> str:
    rest = [o for o in options[1:] if o != options[0]][:k]
    return f" (also {', '.join(rest)}, …)" if rest else ""


def vocabulary_markdown() -> str:
    """One line per attribute: the values, a few synonyms; then the example sentence and spell."""
    nums = ", ".join(w[0] for w in NUMBER_WORDS.values())
    colors = ", ".join(COLOR_WORDS)
    kinds = ", ".join(f"{pairs[0][0]}/{pairs[0][1]}" for pairs in KIND_WORDS.values())
    actions = ", ".join(ACTION_TAGS.values())
    bgs = "; ".join(ps[0] for ps in BACKGROUND_WORDS.values())
    frames = sum(len(f) for f in FRAME_SETS.values())
    return (
        "**What the toy model knows** (any other word is new to it and most likely ignored):\n"
        f"- **counts** {nums}{_also(['', NUMBER_WORDS[1][2], NUMBER_WORDS[2][1], NUMBER_WORDS[3][1]])}\n"
        f"- **colours** {colors}{_also(COLOR_WORDS['red'])}\n"
        f"- **kinds** {kinds}{_also([p[0] for p in KIND_WORDS['cat']])}\n"
        f"- **actions** {actions}{_also(ACTION_WORDS['jumping'])}\n"
        f"- **backgrounds** {bgs}{_also(BACKGROUND_WORDS['grass'])}\n\n"
        f"A sentence names all five, in one of {frames} frames: *{simple_prompt(EXAMPLE)}*; "
        f"the keyword spell of the same scene: *{complex_prompt(EXAMPLE)}*."
    )


def synonyms_markdown() -> str:
    """Every synonym of every value (the full tables), for an accordion."""
    rows = ["| attribute | value | phrases |", "|---|---|---|"]
    for attr, table in (("count", NUMBER_WORDS), ("colour", COLOR_WORDS), ("action", ACTION_WORDS),
                        ("background", BACKGROUND_WORDS)):
        rows += [f"| {attr} | {value} | {', '.join(phrases)} |" for value, phrases in table.items()]
    rows += [f"| kind | {kind} | {', '.join(f'{s}/{p}' for s, p in pairs)} |" for kind, pairs in KIND_WORDS.items()]
    return "\n".join(rows)


def highlight(prompt: str | None) -> list[tuple[str, str | None]]:
    """The prompt as (text, label) pieces for `gr.HighlightedText`: each unknown word labelled
    `UNKNOWN`, the rest (known words, spaces, punctuation) unlabelled, joined where adjacent."""
    if not isinstance(prompt, str) or not prompt:
        return []
    unknown = set(unknown_words(prompt))
    pieces: list[tuple[str, str | None]] = []
    for i, part in enumerate(_TOKEN.split(prompt)):
        if not part:
            continue
        label = UNKNOWN if i % 2 and part.lower() in unknown else None
        if pieces and pieces[-1][1] is None and label is None:
            pieces[-1] = (pieces[-1][0] + part, None)
        else:
            pieces.append((part, label))
    return pieces


def hint_markdown(prompt: str | None) -> str:
    """One line: which words are unknown, or that all are known."""
    if not isinstance(prompt, str) or not prompt.strip():
        return "Type a prompt: its words the toy model does not know will be marked."
    unknown = unknown_words(prompt)
    if not unknown:
        return "Every word of this prompt is in the toy world's vocabulary."
    words = ", ".join(f"**{w}**" for w in unknown)
    return (f"{len(unknown)} word{'s' if len(unknown) > 1 else ''} the toy model never saw: {words}. "
            "It will most likely ignore them (the prompt is still generated as typed).")


__all__ = ["UNKNOWN", "vocabulary_markdown", "synonyms_markdown", "highlight", "hint_markdown"]
