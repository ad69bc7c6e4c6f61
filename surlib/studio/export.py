"""The Results tab's CSV download: one file per preset filter, rewritten only when votes changed.

Disk stays bounded: the file is `sur-votes-<preset>.csv` in one folder per vote database, written
under a temporary name and moved over the old one (`os.replace`, atomic: a download never sees
half a file), and only when the store's `version()` moved since the last write; Gradio's cache
keys files by content, so an unchanged export adds nothing there either.

Spreadsheets run a cell that starts with `=`, `+`, `-` or `@` (or a tab or carriage return) as a
formula; prompts are typed by visitors, so every such text cell is written with a leading `'`
(the usual guard: shown as text, the `'` not part of the value).

Besides the vote columns each row carries the per-image checks of its pair (checks.py), one
column per source, variant and attribute (`human_adapter_count`, `judge_baseline_color`, ...):
yes / no / unsure, empty where none was given.
"""

from __future__ import annotations

import csv
import hashlib
import os
import tempfile
import threading
from pathlib import Path
from typing import Iterable

from .checks import ATTRIBUTES, SOURCES
from .votes import VOTE_COLUMNS

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
VARIANT_COLUMNS = ("baseline", "adapter")
CHECK_COLUMNS = tuple(f"{src}_{var}_{attr}" for src in SOURCES for var in VARIANT_COLUMNS for attr in ATTRIBUTES)
COLUMNS = tuple(VOTE_COLUMNS) + CHECK_COLUMNS


def variant_of(system: str) -> str:
    """"adapter" for the SUR-adapter system of a pair, "baseline" for the other."""
    return "adapter" if str(system).endswith(":sur-adapter") else "baseline"


def escape_cell(value):
    """`value`, with a leading `'` when it is text a spreadsheet would run as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def check_cells(checks: Iterable[dict]) -> dict[str, dict[str, str]]:
    """{battle_id: {check column: verdict}} from check rows."""
    out: dict[str, dict[str, str]] = {}
    for c in checks:
        out.setdefault(c["battle_id"], {})[f"{c['source']}_{variant_of(c['system'])}_{c['attribute']}"] = c["verdict"]
    return out


def write_csv(path: str | Path, votes: Iterable[dict], checks: Iterable[dict] = ()) -> Path:
    """All votes as CSV (COLUMNS), written to a temporary file and moved over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cells = check_cells(checks)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(COLUMNS), extrasaction="ignore")
            writer.writeheader()
            for vote in votes:
                row = {**vote, **cells.get(vote["battle_id"], {})}
                writer.writerow({k: escape_cell(row.get(k)) for k in COLUMNS})
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


class CsvExport:
    """The export files of one vote database (a folder of its own under the temp dir, which
    Gradio may serve; the data dir itself is blocked)."""

    def __init__(self, db_path: str | Path, root: str | Path | None = None):
        tag = hashlib.sha256(str(Path(db_path).resolve()).encode()).hexdigest()[:16]
        self.folder = Path(root or Path(tempfile.gettempdir()) / "sur-studio-exports") / tag
        self._written: dict[str, tuple] = {}
        self._lock = threading.Lock()

    def path(self, preset: str | None) -> Path:
        return self.folder / f"sur-votes-{preset or 'all'}.csv"

    def export(self, preset: str | None, version: tuple, votes, checks=()) -> Path:
        """The preset's CSV, rewritten only when `version` differs from the last write's (or the
        file is gone). `votes`/`checks` may be callables, called only when a write is due."""
        path = self.path(preset)
        with self._lock:
            if self._written.get(preset or "all") == version and path.is_file():
                return path
            write_csv(path, votes() if callable(votes) else votes, checks() if callable(checks) else checks)
            self._written[preset or "all"] = version
        return path


__all__ = ["CsvExport", "write_csv", "escape_cell", "check_cells", "variant_of", "COLUMNS", "CHECK_COLUMNS",
           "FORMULA_START"]
