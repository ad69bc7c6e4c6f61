"""Survey mode (SUR_MODE=survey): the instructions people read before they vote.

A survey shows only the Vote and Results tabs and no labelled generation, so what a voter sees
is blind pairs and these instructions. Researchers set their own with SUR_SURVEY_INSTRUCTIONS:
Markdown text, or the path of a Markdown file (read once at start-up).
"""

from __future__ import annotations

from pathlib import Path

MAX_INSTRUCTIONS_CHARS = 20_000

DEFAULT_INSTRUCTIONS = """# Which picture follows the prompt?
You will see two pictures made from the same prompt. Pick the one that shows what the prompt
asks for better: the right **number** of things, the right **colour**, doing the right
**action**. If both are equally good, choose *Tie*; if neither shows the prompt, choose *Both bad*.

Judge only how well each picture matches the prompt, not which one you like more. After your
choice you can say, for each picture, whether the count, the colour and the action are right
(optional). Press **New pair** for the next one; there are no right or wrong answers."""


def load_instructions(setting: str | None) -> str:
    """The instructions: DEFAULT_INSTRUCTIONS when unset; the file's text when `setting` names a
    file; else `setting` itself as Markdown. ValueError names an unreadable or oversized file."""
    if not setting or not setting.strip():
        return DEFAULT_INSTRUCTIONS
    text = setting
    candidate = Path(setting.strip()).expanduser()
    is_file = False
    if "\n" not in setting and len(setting) < 1024:
        try:
            is_file = candidate.is_file()
        except OSError:  # e.g. a name too long for the file system: it is text
            pass
    if is_file or ("\n" not in setting and candidate.suffix.lower() in (".md", ".txt")):
        try:
            text = candidate.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"SUR_SURVEY_INSTRUCTIONS names the file {str(candidate)!r}, which cannot be "
                             f"read as UTF-8 text: {e}") from None
    if len(text) > MAX_INSTRUCTIONS_CHARS:
        raise ValueError(f"SUR_SURVEY_INSTRUCTIONS is {len(text)} characters long; at most "
                         f"{MAX_INSTRUCTIONS_CHARS} are accepted")
    return text.strip() or DEFAULT_INSTRUCTIONS


__all__ = ["DEFAULT_INSTRUCTIONS", "load_instructions", "MAX_INSTRUCTIONS_CHARS"]
