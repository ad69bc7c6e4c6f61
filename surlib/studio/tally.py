"""The numbers behind the Results tab: vote summary, per-image checks against the judge, votes
still needed, and the CSV, recomputed only when a vote or a check came in.

Every Results visit and every /results call used to recompute the Bradley-Terry bootstrap and
write two new CSV files. Here the store's `version()` (vote count and last id, check count and
last time) keys a cache of the whole summary, and the CSV export (export.py) is rewritten only
when that version moves; the statistics are seeded, so a cached summary is the one a fresh
computation would give. One computation per filter at a time: the version and the votes are
read under that filter's lock, so a slow call that read the votes before a new one came in
cannot write its older CSV over the newer file another call has just written.
"""

from __future__ import annotations

import copy
import threading

from eval.agreement import check_summary
from eval.power import power_table
from eval.stats import summarize_votes

from ..names import OVERALL
from .checks import CheckStore
from .export import CsvExport, variant_of
from .votes import VoteStore


class Tally:
    """Summaries of one vote store per preset filter (None: all), cached by store version."""

    def __init__(self, store: VoteStore, checks: CheckStore, export: CsvExport):
        self.store = store
        self.checks = checks
        self.export = export
        self._cache: dict[tuple, tuple[tuple, dict]] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()  # guards the two dicts

    def summary(self, preset: str | None, bt_rounds: int = 100) -> dict:
        """`summarize_votes` of the preset's votes plus "checks" (eval.agreement rows), "power"
        (eval.power rows for the decisive votes so far), "csv" (the export's path) and "preset".
        A copy: callers may add to it."""
        key = (preset or "all", bt_rounds)
        with self._lock:
            one_at_a_time = self._locks.setdefault(preset or "all", threading.Lock())  # one CSV file each
        with one_at_a_time:
            version = self.store.version(preset)
            with self._lock:
                hit = self._cache.get(key)
            if hit is not None and hit[0] == version and self.export.path(preset).is_file():
                return copy.deepcopy(hit[1])
            votes = self.store.votes(preset)
            rows = self.checks.rows(preset)
            summary = summarize_votes(votes, bt_rounds=bt_rounds)
            summary["checks"] = check_summary({**r, "variant": variant_of(r["system"])} for r in rows)
            summary["power"] = power_table(int(summary[OVERALL]["decisive"]))
            summary["csv"] = str(self.export.export(preset, version, votes, rows))
            summary["preset"] = preset or "all"
            with self._lock:
                self._cache[key] = (version, summary)
            return copy.deepcopy(summary)


__all__ = ["Tally"]
