"""Showing visitor-typed text in `gr.Markdown` as typed.

Gradio sanitises HTML, but Markdown syntax in a typed prompt would still format the page
(bold, links, headings, tables); escaping it keeps the prompt literal.
"""

from __future__ import annotations

import re

_MD_SPECIAL = re.compile(r"([\\`*_\[\]#|<>~])")


def md_escape(text: str) -> str:
    """`text` with every Markdown-special character backslash-escaped."""
    return _MD_SPECIAL.sub(r"\\\1", str(text))


__all__ = ["md_escape"]
