"""The Results filter a visitor sends, checked before it becomes part of a file name: a preset
name of a few safe characters, or "all". (Text and numbers are checked by `surlib.inputs`, which
`pipeline.validate_request` uses for every caller.)
"""

from __future__ import annotations

import re

from ..inputs import check_text, shown

PRESET_FILTER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
PRESET_RULE = 'a preset name (1–64 letters, digits, ".", "_" or "-", starting with a letter or digit) or "all"'


def check_preset_filter(value) -> str | None:
    """None for "all" (or nothing sent), else the preset name, which becomes part of the CSV's
    file name: so only PRESET_RULE's characters, never a path."""
    if value is None or (isinstance(value, str) and value.strip() in ("", "all")):
        return None
    if not isinstance(value, str):
        raise ValueError(f"preset must be {PRESET_RULE}; got {type(value).__name__} {shown(value)}")
    text = check_text("preset", value)
    if not PRESET_FILTER.match(text):
        got = f"a {len(text)}-character name" if len(text) > 64 else shown(text)
        raise ValueError(f"preset must be {PRESET_RULE}; got {got}")
    return text


__all__ = ["check_preset_filter", "PRESET_FILTER", "PRESET_RULE"]
