"""Per-image checks: is each image's count, colour, action right? From the voter and the judge.

A preference says which image is better, not what is wrong with either. After the vote the
voter may say, for each image, whether its count, colour and action match the prompt (yes / no /
unsure; unanswered is fine); where an automatic judge runs (the toy world's, at pair time) its
verdicts are stored with the pair. Results then sets human accuracy per attribute and variant
beside the judge's, and how often the two agree (eval/agreement.py).

Rules: only the voter the pair was shown to, only after their vote, once per pair (the first
submission is final, like the vote; a script cannot rewrite its earlier answers).

Rows live in the vote database's `checks` table (schema in votes.py), one per (pair, source,
side, attribute), naming the system shown on that side, so results need no side bookkeeping.
Standard library only, like votes.py.
"""

from __future__ import annotations

import time
from typing import Any

from .votes import SIDES, Battle, VoteError, VoteStore, WrongSession, UnknownBattle

ATTRIBUTES = ("count", "color", "action")
VERDICTS = ("yes", "no", "unsure")
SOURCES = ("human", "judge")
COLUMNS = ("battle_id", "source", "side", "system", "attribute", "verdict", "ts")
_INSERT = f"INSERT INTO checks ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
# The /checks endpoint's inputs after the pair id, in order: left_count ... right_action.
FIELDS = tuple(f"{side}_{attr}" for side in SIDES for attr in ATTRIBUTES)


class NotVotedYet(VoteError):
    """Checks come after the preference."""


class ChecksStored(VoteError):
    """The pair's checks were already submitted."""


def parse_checks(values: dict[str, Any]) -> dict[str, dict[str, str]]:
    """{side: {attribute: verdict}} from {"left_count": "yes", ...}; None or "" = not answered.

    ValueError names the field and lists what is accepted; nothing answered at all is an error."""
    out: dict[str, dict[str, str]] = {}
    for name in FIELDS:
        raw = values.get(name)
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            continue
        verdict = raw.strip().lower() if isinstance(raw, str) else raw
        if verdict not in VERDICTS:
            raise ValueError(f"{name} must be one of {', '.join(VERDICTS)} (or empty for no answer); "
                             f"got {str(raw)[:40]!r}")
        side, attr = name.split("_", 1)
        out.setdefault(side, {})[attr] = verdict
    if not out:
        raise ValueError(f"no check answered: give at least one of {', '.join(FIELDS)} "
                         f"as {', '.join(VERDICTS)}")
    return out


def judge_rows(battle: Battle, verdicts: dict[str, dict[str, bool]] | None) -> list[tuple]:
    """Check rows of the judge's {side: {attribute: True/False}} for `battle`."""
    return [(battle.battle_id, "judge", side, battle.system_on(side), attr, "yes" if ok else "no",
             battle.created_at)
            for side, per in (verdicts or {}).items() if side in SIDES
            for attr, ok in per.items() if attr in ATTRIBUTES and ok is not None]


class CheckStore:
    """The checks of one VoteStore: the judge's with a new pair, the voter's after the vote."""

    def __init__(self, store: VoteStore):
        self.store = store

    def add_battle(self, battle: Battle, judge: dict[str, dict[str, bool]] | None = None) -> Battle:
        """`VoteStore.add_battle` plus the judge's verdicts, in one transaction."""
        rows = judge_rows(battle, judge)
        return self.store.add_battle(battle, also=(lambda conn: conn.executemany(_INSERT, rows)) if rows else None)

    def record(self, battle_id: str, session: str, checks: dict[str, dict[str, str]],
               now: float | None = None) -> list[dict]:
        """Store the voter's checks ({side: {attribute: verdict}}, see `parse_checks`); returns
        the stored rows after COMMIT. VoteError subclasses, with a message for the voter, for an
        unknown or foreign pair, one not voted on yet, or one already checked."""
        bid = battle_id.strip() if isinstance(battle_id, str) else ""
        if self.store.get_battle(bid) is None:
            raise UnknownBattle(f"unknown pair id {str(battle_id)[:80]!r}: send the id /new_battle returned")

        def txn(conn) -> list[dict]:
            ts = time.time() if now is None else now
            row = conn.execute("SELECT * FROM battles WHERE battle_id = ?", (bid,)).fetchone()
            if row["session"] != session:
                raise WrongSession("this pair was shown to another voter; only they can check its images")
            if not conn.execute("SELECT 1 FROM votes WHERE battle_id = ?", (bid,)).fetchone():
                raise NotVotedYet("vote on this pair first: the checks come after the preference")
            if conn.execute("SELECT 1 FROM checks WHERE battle_id = ? AND source = 'human'", (bid,)).fetchone():
                raise ChecksStored("this pair's checks are already stored (once per pair)")
            rows = [(bid, "human", side, row[f"{side}_system"], attr, verdict, ts)
                    for side, per in checks.items() for attr, verdict in per.items()]
            conn.executemany(_INSERT, rows)
            return [dict(zip(COLUMNS, r)) for r in rows]

        return self.store.write(txn)

    def rows(self, preset: str | None = None) -> list[dict]:
        """Check rows of voted pairs (judge and human), with the vote's category and preset."""
        where, args = (" WHERE v.preset = ?", (preset,)) if preset else ("", ())
        return self.store.read("SELECT c.*, v.category, v.preset FROM checks c JOIN votes v ON "
                               f"v.battle_id = c.battle_id{where} ORDER BY v.id, c.source, c.side, c.attribute", args)

    def of_battle(self, battle_id: str) -> list[dict]:
        return self.store.read("SELECT * FROM checks WHERE battle_id = ? ORDER BY source, side, attribute",
                               (battle_id,))


__all__ = ["CheckStore", "parse_checks", "judge_rows", "NotVotedYet", "ChecksStored", "ATTRIBUTES",
           "VERDICTS", "SOURCES", "FIELDS", "COLUMNS"]
