"""The prompts the studio offers: suite files on disk, the Vote tab's pool, example prompts.

Suites are the eval's JSONL files (`assets/suites/*.jsonl`); the studio only needs each row's
text, id, category and spell, and must keep serving when a file is missing or has a bad line.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..toy.suite import TOY_SUITES

log = logging.getLogger("surlib.app")

# Used when no suite file exists yet: short plain-language prompts, the adapter's use case.
BUILTIN_PROMPTS = (
    "two red cats sitting",
    "a blue robot waving",
    "three green birds flying",
    "a person running on the beach",
    "a yellow dog sleeping",
    "four orange balloons in the sky",
)


@dataclass(frozen=True)
class SuitePrompt:
    prompt: str
    prompt_id: str | None = None
    suite: str | None = None
    category: str | None = None
    spell: str | None = None  # the row's keyword prompt (`complex_prompt`), what the adapter aims at


def load_suites(folder: str | Path) -> dict[str, list[SuitePrompt]]:
    """{suite name: prompts} from `folder/*.jsonl` ("simple", else "prompt" field of each row).

    Tolerant: a missing folder gives {}, unreadable lines and rows without text are skipped."""
    folder = Path(folder)
    suites: dict[str, list[SuitePrompt]] = {}
    if not folder.is_dir():
        return suites
    for path in sorted(folder.glob("*.jsonl")):
        rows = []
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as e:
            log.warning("cannot read suite %s: %s", path, e)
            continue
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                log.warning("%s:%d is not JSON; skipped", path, n)
                continue
            if not isinstance(row, dict):
                continue
            text = row.get("simple") or row.get("prompt")
            if not isinstance(text, str) or not text.strip():
                continue
            pid = row.get("id", row.get("prompt_id"))
            cat = row.get("category")
            # A row with "simple" may hold its spell in "prompt" (SURD's layout).
            spell = row.get("complex_prompt") or (row.get("prompt") if row.get("simple") else None)
            spell = spell.strip() if isinstance(spell, str) and spell.strip() else None
            rows.append(SuitePrompt(text.strip(), str(pid) if pid is not None else f"{path.stem}:{n}",
                                    path.stem, str(cat) if cat is not None else None, spell))
        if rows:
            suites[path.stem] = rows
    return suites


def vote_pool(suites: dict[str, list[SuitePrompt]], preset: str,
              wanted: Sequence[str] = ()) -> list[SuitePrompt]:
    """Prompts the Vote tab draws from: the suites named in `wanted`; else the toy suite for the
    offline presets (tiny/toy) and the non-toy suites for real models; else all; else built-ins."""
    if wanted:
        pool = [p for name in wanted for p in suites.get(name, [])]
    elif preset in ("toy", "tiny") and "toy" in suites:
        pool = list(suites["toy"])
    else:
        pool = [p for name, rows in suites.items() if name not in TOY_SUITES for p in rows] or \
               [p for rows in suites.values() for p in rows]
    return pool or [SuitePrompt(p, f"builtin:{i}", "builtin", None) for i, p in enumerate(BUILTIN_PROMPTS)]


def example_prompts(pool: Sequence[SuitePrompt], k: int = 8) -> list[str]:
    """Up to k distinct prompts, round-robin over categories so each kind shows up."""
    by_cat: dict[Any, list[str]] = {}
    for p in pool:
        by_cat.setdefault(p.category, [])
        if p.prompt not in by_cat[p.category]:
            by_cat[p.category].append(p.prompt)
    out: list[str] = []
    while len(out) < k and any(by_cat.values()):
        for rows in by_cat.values():
            if rows and len(out) < k:
                text = rows.pop(0)
                if text not in out:
                    out.append(text)
    return out


__all__ = ["SuitePrompt", "load_suites", "vote_pool", "example_prompts", "BUILTIN_PROMPTS"]
