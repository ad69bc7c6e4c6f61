"""The judgments file of a run: one JSON row per image, appended durably, read back after a crash.

Each row is flushed and fsync'ed before the next image is judged, so a killed run loses at most
the row being written; reading cuts off that torn last line, and the finished (prompt, seed,
variant) keys tell a resumed run what to skip. With several processes each one writes its own
``judgments.rank<N>.jsonl``; `read_run_rows` reads them all.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

JUDGMENT_KEYS = ("prompt_id", "category", "prompt", "seed", "variant", "image", "answer", "correct", "details",
            "brisque", "expect", "nsfw", "gen_s", "judge", "written_at", "unknown_words")
MAIN_FILE = "judgments.jsonl"
RANK_GLOB = "judgments.rank*.jsonl"


def row_key(row: dict) -> tuple[str, int, str]:
    """What identifies a row: (prompt id, seed, variant)."""
    return (str(row["prompt_id"]), int(row["seed"]), str(row["variant"]))


def rank_file(out: Path, process_index: int) -> Path:
    return out / f"judgments.rank{process_index}.jsonl"


def read_judgments(path: Path) -> list[dict]:
    """Rows of a judgments file; a torn last line (a crash mid-write) is cut off the file."""
    if not path.is_file():
        return []
    data = path.read_bytes()
    rows, good_end, pos = [], 0, 0
    lines = data.split(b"\n")
    for i, line in enumerate(lines):
        end = pos + len(line) + 1
        if line.strip():
            try:
                rows.append(json.loads(line))
                good_end = min(end, len(data))
            except json.JSONDecodeError:
                if i < len(lines) - 1 and any(l.strip() for l in lines[i + 1:]):
                    raise ValueError(f"{path}: line {i + 1} is not valid JSON (corrupt file?); "
                                     f"fix or remove that line to resume") from None
                break
        else:
            good_end = min(end, len(data))
        pos = end
    if good_end < len(data):
        with open(path, "r+b") as f:
            f.truncate(good_end)
    return rows


def read_run_rows(out: Path) -> list[dict]:
    """Rows of a run folder: the main file, then every process's rank file (duplicates kept)."""
    rows = read_judgments(out / MAIN_FILE)
    for part in sorted(out.glob(RANK_GLOB)):
        rows += read_judgments(part)
    return rows


class JsonlAppender:
    """Appends JSON rows, each flushed and fsync'ed before `write` returns."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_file() and path.stat().st_size:
            with open(path, "rb") as f:  # make sure a new row starts on its own line
                f.seek(-1, os.SEEK_END)
                needs_newline = f.read(1) != b"\n"
            if needs_newline:
                with open(path, "ab") as f:
                    f.write(b"\n")
        self.f = open(path, "a", encoding="utf-8")

    def write(self, row: dict) -> None:
        self.f.write(json.dumps(row, ensure_ascii=False, allow_nan=False, default=json_default) + "\n")
        self.f.flush()
        os.fsync(self.f.fileno())

    def close(self):
        self.f.close()


def json_default(o):
    """numpy / torch scalars and arrays as plain JSON values; anything else as its str."""
    if hasattr(o, "item"):
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    return str(o)


def json_safe(o):
    """JSON-safe copy: NaN / infinity become null (strict JSON has no NaN)."""
    if isinstance(o, dict):
        return {k: json_safe(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [json_safe(v) for v in o]
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return o


def finite_or_none(x):
    """A score as a float, or None when missing or not finite (a flat image's NaN BRISQUE)."""
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else float(x)


__all__ = ["JUDGMENT_KEYS", "row_key", "rank_file", "read_judgments", "read_run_rows", "JsonlAppender",
           "json_default", "json_safe", "finite_or_none"]
