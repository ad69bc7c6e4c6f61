"""The vote store: blind pairs ("battles") and the votes cast on them, in one SQLite file.

Standard library only, so it can be used (and loaded by file path) without torch.

Design
------
* A **battle** is one blind pair shown to one voter. Which side holds the adapter is written
  here when the pair is made and never leaves the server before the vote: the page only gets
  the two images, the prompt and an unguessable battle id (`secrets.token_urlsafe(18)`). The
  `session` columns hold the **voter key** (identity.py: sha256 of the salt and the server's
  idea of who the voter is, never Gradio's client-chosen session hash).
* A **vote** is one row per battle (`UNIQUE(battle_id)`), written in one `BEGIN IMMEDIATE`
  transaction together with its checks (battle exists, belongs to this voter, not yet voted,
  not expired, voter under its rate limits). `record_vote` returns only after COMMIT: a vote is
  acknowledged only once it is in the database. The vote row repeats the battle's fields
  (prompt, seed, models, sides) so that the votes table alone is the full record of the choice.
* **Checks** (the `checks` table; written by checks.py) are per-image verdicts: is the count /
  color / action right? The judge's come with the pair, the voter's after the vote.
* New pairs are rate limited per voter like votes (`add_battle`, `check_pair_rate`).
* Durability: WAL with ``synchronous=NORMAL`` (default): when COMMIT returns, the WAL write(2)
  is done, so a SIGKILLed or crashed *process* keeps every acknowledged vote (the test kills the
  real server mid-vote); only a *machine* failure before the next fsynced checkpoint can lose the
  last commits. ``FULL`` (SUR_SQLITE_SYNC=FULL) fsyncs every commit (docs/app.md, Durability).
* Checkpoints: a background thread runs a PASSIVE WAL checkpoint every 2 s (auto-checkpoint
  off), so no vote pays for the page copying and fsyncs.
* Concurrency: one connection per thread; a process's writes are serialised by a lock, several
  processes' by SQLite's file lock and busy timeout, except the switch to WAL (`_switch_to_wal`).
"""

from __future__ import annotations

import logging
import re
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 2  # 2: checks table, battles(session, created_at) index; 1 is migrated in place
# What the Vote tab's buttons and the /vote API send; one spelling each.
CHOICES = ("left", "right", "tie", "both_bad")
SIDES = ("left", "right")
log = logging.getLogger("surlib.studio.votes")
_BATTLE_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")

SCHEMA = """
CREATE TABLE IF NOT EXISTS battles (
    battle_id       TEXT PRIMARY KEY,
    created_at      REAL NOT NULL,            -- unix seconds, when the pair was served
    session         TEXT NOT NULL,            -- voter key: sha256(salt:identity), identity.py
    prompt          TEXT NOT NULL,
    prompt_id       TEXT,                     -- suite row id when the prompt came from a suite
    suite           TEXT,
    category        TEXT,
    seed            INTEGER NOT NULL,
    steps           INTEGER,
    guidance        REAL,
    negative_prompt TEXT,
    preset          TEXT,
    base_model      TEXT,
    adapter_id      TEXT,
    left_system     TEXT NOT NULL,
    right_system    TEXT NOT NULL,
    adapter_side    TEXT CHECK (adapter_side IN ('left', 'right'))  -- NULL: no adapter in the pair
);
CREATE TABLE IF NOT EXISTS votes (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    battle_id       TEXT NOT NULL UNIQUE REFERENCES battles(battle_id),
    ts              REAL NOT NULL,            -- unix seconds of the commit
    created_at      TEXT NOT NULL,            -- the same, ISO 8601 UTC
    session         TEXT NOT NULL,
    prompt          TEXT NOT NULL,
    prompt_id       TEXT,
    suite           TEXT,
    category        TEXT,
    seed            INTEGER NOT NULL,
    steps           INTEGER,
    guidance        REAL,
    preset          TEXT,
    base_model      TEXT,
    adapter_id      TEXT,
    left_system     TEXT NOT NULL,
    right_system    TEXT NOT NULL,
    adapter_side    TEXT CHECK (adapter_side IN ('left', 'right')),
    choice          TEXT NOT NULL CHECK (choice IN ('left', 'right', 'tie', 'both_bad')),
    winner          TEXT NOT NULL,            -- a system name, 'tie' or 'both_bad'
    time_to_vote_s  REAL
);
CREATE INDEX IF NOT EXISTS votes_session_ts ON votes(session, ts);
CREATE INDEX IF NOT EXISTS votes_preset ON votes(preset);
CREATE INDEX IF NOT EXISTS battles_session_created ON battles(session, created_at);
CREATE TABLE IF NOT EXISTS checks (
    battle_id       TEXT NOT NULL REFERENCES battles(battle_id),
    source          TEXT NOT NULL CHECK (source IN ('human', 'judge')),
    side            TEXT NOT NULL CHECK (side IN ('left', 'right')),
    system          TEXT NOT NULL,            -- the system shown on that side
    attribute       TEXT NOT NULL CHECK (attribute IN ('count', 'color', 'action')),
    verdict         TEXT NOT NULL CHECK (verdict IN ('yes', 'no', 'unsure')),
    ts              REAL NOT NULL,
    PRIMARY KEY (battle_id, source, side, attribute)
);
"""

VOTE_COLUMNS = ("id", "battle_id", "ts", "created_at", "session", "prompt", "prompt_id", "suite",
                "category", "seed", "steps", "guidance", "preset", "base_model", "adapter_id",
                "left_system", "right_system", "adapter_side", "choice", "winner", "time_to_vote_s")


# ----------------------------------------------------------------------------- errors
class VoteError(ValueError):
    """A vote the store refuses; the message is meant for the voter."""


class UnknownBattle(VoteError):
    pass


class AlreadyVoted(VoteError):
    pass


class WrongSession(VoteError):
    """The pair was shown to another voter."""


class BattleExpired(VoteError):
    pass


class RateLimited(VoteError):
    pass


class BadChoice(VoteError):
    pass


# ----------------------------------------------------------------------------- helpers
def new_battle_id() -> str:
    return secrets.token_urlsafe(18)  # 144 random bits, 24 url-safe characters


def check_choice(choice: Any) -> str:
    """`choice` itself if it is one of CHOICES; BadChoice listing them otherwise."""
    if isinstance(choice, str) and choice in CHOICES:
        return choice
    raise BadChoice(f"choice must be one of {', '.join(CHOICES)}; got {choice!r}")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="milliseconds")


@dataclass
class Battle:
    battle_id: str
    created_at: float
    session: str
    prompt: str
    seed: int
    left_system: str
    right_system: str
    adapter_side: str | None
    prompt_id: str | None = None
    suite: str | None = None
    category: str | None = None
    steps: int | None = None
    guidance: float | None = None
    negative_prompt: str | None = None
    preset: str | None = None
    base_model: str | None = None
    adapter_id: str | None = None

    def __post_init__(self):
        if self.adapter_side is not None and self.adapter_side not in SIDES:
            raise ValueError(f"adapter_side must be 'left', 'right' or None, got {self.adapter_side!r}")

    def system_on(self, side: str) -> str:
        return self.left_system if side == "left" else self.right_system


_BATTLE_FIELDS = tuple(f.name for f in fields(Battle))


# ----------------------------------------------------------------------------- the store
class VoteStore:
    """SQLite-backed battles and votes. Thread-safe; several processes may share one file."""

    def __init__(self, path: str | Path, synchronous: str = "NORMAL", busy_timeout_s: float = 30.0,
                 votes_per_minute: int | None = 30, votes_per_day: int | None = 1000,
                 battle_max_age_s: float | None = 86400.0, checkpoint_every_s: float | None = 2.0,
                 pairs_per_minute: int | None = None, pairs_per_day: int | None = None):
        synchronous = synchronous.upper()
        if synchronous not in ("FULL", "NORMAL", "EXTRA"):
            raise ValueError(f"synchronous must be FULL, NORMAL or EXTRA, got {synchronous!r}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.synchronous = synchronous
        self.busy_timeout_s = busy_timeout_s
        self.votes_per_minute = votes_per_minute
        self.votes_per_day = votes_per_day
        self.pairs_per_minute = pairs_per_minute
        self.pairs_per_day = pairs_per_day
        self.battle_max_age_s = battle_max_age_s
        self.checkpoint_every_s = checkpoint_every_s
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        conn = self._conn()
        with self._write_lock:
            self._switch_to_wal(conn)
            # executescript runs its own transaction; CREATE ... IF NOT EXISTS makes racing
            # processes harmless.
            conn.executescript("BEGIN IMMEDIATE;" + SCHEMA + "COMMIT;")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version < SCHEMA_VERSION:  # new file, or version 1: the script above added what 2 has
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            elif version > SCHEMA_VERSION:
                raise RuntimeError(f"{self.path} has schema version {version}; this code knows "
                                   f"{SCHEMA_VERSION}: upgrade surlib")
        self._stop = threading.Event()
        self._checkpointer = None
        if checkpoint_every_s:
            self._checkpointer = threading.Thread(target=self._checkpoint_loop, args=(checkpoint_every_s,),
                                                  name="sur-votes-checkpoint", daemon=True)
            self._checkpointer.start()

    # .......................................................................... plumbing
    def _switch_to_wal(self, conn: sqlite3.Connection) -> None:
        """PRAGMA journal_mode=WAL, retried on "database is locked" until busy_timeout_s.

        The busy timeout does not cover this statement: SQLite answers "locked" at once, without
        calling its busy handler, when the switch must upgrade a lock the connection holds while
        another connection creates the file or writes to it (tests/test_votes.py opens stores
        on a new file from several threads at once to show it). Everything else relies on the
        busy timeout alone."""
        deadline, delay = time.monotonic() + self.busy_timeout_s, 0.005
        while True:
            try:
                mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                break
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or time.monotonic() + delay > deadline:
                    raise
                time.sleep(delay)
                delay = min(2 * delay, 0.2)
        if str(mode).lower() != "wal":
            raise RuntimeError(f"could not put {self.path} in WAL mode (got {mode!r})")

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            # check_same_thread=False only so that close() can close every thread's connection;
            # each connection is used by the thread that made it.
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None,
                                   check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
            if self.checkpoint_every_s:  # checkpoints (and their fsyncs) off the vote path
                conn.execute("PRAGMA wal_autocheckpoint=0")
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
            with self._all_lock:
                self._all.append(conn)
        return conn

    def write(self, fn):
        """Run fn(conn) inside one BEGIN IMMEDIATE ... COMMIT; returns after the commit."""
        conn = self._conn()
        with self._write_lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                out = fn(conn)
                conn.execute("COMMIT")
                return out
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def _checkpoint_loop(self, every: float) -> None:
        """Checkpoint the WAL in the background (PASSIVE: never blocks readers or writers), so
        that no vote pays for copying pages back and fsyncing the database file."""
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None,
                               check_same_thread=False)
        try:
            while not self._stop.wait(every):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error as e:  # busy or I/O trouble: try again next round
                    log.warning("WAL checkpoint of %s failed: %s", self.path, e)
        finally:
            conn.close()

    def checkpoint(self, mode: str = "PASSIVE") -> tuple:
        """(busy, wal frames, frames checkpointed) of one checkpoint now (PASSIVE/FULL/RESTART/TRUNCATE)."""
        if mode.upper() not in ("PASSIVE", "FULL", "RESTART", "TRUNCATE"):
            raise ValueError(f"bad checkpoint mode {mode!r}")
        return tuple(self._conn().execute(f"PRAGMA wal_checkpoint({mode.upper()})").fetchone())

    def close(self) -> None:
        self._stop.set()
        if self._checkpointer is not None and self._checkpointer is not threading.current_thread():
            self._checkpointer.join(timeout=5)
        with self._all_lock:
            for conn in self._all:
                try:
                    conn.close()
                except sqlite3.ProgrammingError:  # made in another thread that is gone
                    pass
            self._all.clear()
        self._local = threading.local()

    # .......................................................................... battles
    def add_battle(self, battle: Battle, also=None) -> Battle:
        """Insert the pair under the voter's pair limits; `also(conn)`, when given, runs in the
        same transaction (checks.py stores the judge's verdicts with the pair that way)."""
        cols = ", ".join(_BATTLE_FIELDS)
        marks = ", ".join("?" for _ in _BATTLE_FIELDS)
        values = tuple(getattr(battle, f) for f in _BATTLE_FIELDS)

        def txn(conn):
            self._check_pair_rate(conn, battle.session, battle.created_at)
            conn.execute(f"INSERT INTO battles ({cols}) VALUES ({marks})", values)
            if also is not None:
                also(conn)

        self.write(txn)
        return battle

    def check_pair_rate(self, session: str, now: float | None = None) -> None:
        """RateLimited when the voter may not get another pair now (asked before generating)."""
        self._check_pair_rate(self._conn(), session, time.time() if now is None else now)

    def _check_pair_rate(self, conn, session: str, ts: float) -> None:
        for limit, window, text in ((self.pairs_per_minute, 60.0, "per minute"),
                                    (self.pairs_per_day, 86400.0, "per 24 hours")):
            if limit and conn.execute("SELECT COUNT(*) FROM battles WHERE session = ? AND created_at > ?",
                                      (session, ts - window)).fetchone()[0] >= limit:
                raise RateLimited(f"too many new pairs: at most {limit} {text} per voter; "
                                  "vote on the pair you have or wait a little")

    def get_battle(self, battle_id: str) -> Battle | None:
        if not isinstance(battle_id, str) or not _BATTLE_ID.match(battle_id):
            return None
        row = self._conn().execute("SELECT * FROM battles WHERE battle_id = ?", (battle_id,)).fetchone()
        return Battle(**{k: row[k] for k in _BATTLE_FIELDS}) if row else None

    # .......................................................................... votes
    def record_vote(self, battle_id: str, choice: str, session: str, now: float | None = None) -> dict:
        """Store one vote; returns the stored row (with the sides) only after COMMIT.

        Raises a VoteError subclass, with a message for the voter, for an unknown, foreign,
        expired or already-voted pair, a bad choice, or a session over its rate limit."""
        choice = check_choice(choice)
        if not isinstance(battle_id, str) or not _BATTLE_ID.match(battle_id.strip()):
            raise UnknownBattle(f"unknown pair id {str(battle_id)[:80]!r}: ask for a new pair")
        battle_id = battle_id.strip()

        def txn(conn: sqlite3.Connection) -> dict:
            ts = time.time() if now is None else now
            row = conn.execute("SELECT * FROM battles WHERE battle_id = ?", (battle_id,)).fetchone()
            if row is None:
                raise UnknownBattle(f"unknown pair id {battle_id!r}: ask for a new pair")
            if row["session"] != session:
                raise WrongSession("this pair was shown to another voter; ask for a new pair")
            if conn.execute("SELECT 1 FROM votes WHERE battle_id = ?", (battle_id,)).fetchone():
                raise AlreadyVoted("this pair already has your vote (one vote per pair); ask for a new pair")
            if self.battle_max_age_s is not None and ts - row["created_at"] > self.battle_max_age_s:
                raise BattleExpired("this pair has expired; ask for a new pair")
            self._check_rate(conn, session, ts)
            winner = {"left": row["left_system"], "right": row["right_system"]}.get(choice, choice)
            vote = {
                "battle_id": battle_id, "ts": ts, "created_at": _iso(ts), "session": session,
                "prompt": row["prompt"], "prompt_id": row["prompt_id"], "suite": row["suite"],
                "category": row["category"], "seed": row["seed"], "steps": row["steps"],
                "guidance": row["guidance"], "preset": row["preset"], "base_model": row["base_model"],
                "adapter_id": row["adapter_id"], "left_system": row["left_system"],
                "right_system": row["right_system"], "adapter_side": row["adapter_side"],
                "choice": choice, "winner": winner,
                "time_to_vote_s": max(0.0, ts - row["created_at"]),
            }
            cols = [k for k in VOTE_COLUMNS if k != "id"]
            try:
                cur = conn.execute(
                    f"INSERT INTO votes ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})",
                    tuple(vote[k] for k in cols))
            except sqlite3.IntegrityError as e:  # UNIQUE(battle_id): a racing second vote
                if "UNIQUE" in str(e).upper():
                    raise AlreadyVoted("this pair already has a vote (one vote per pair); ask for a new pair") from None
                raise
            vote["id"] = cur.lastrowid
            return vote

        return self.write(txn)

    def _check_rate(self, conn, session: str, ts: float) -> None:
        for limit, window, text in ((self.votes_per_minute, 60.0, "too many votes: at most {} per minute "
                                     "per voter; please wait a little"),
                                    (self.votes_per_day, 86400.0, "daily limit reached: at most {} votes "
                                     "per 24 hours per voter")):
            if limit and conn.execute("SELECT COUNT(*) FROM votes WHERE session = ? AND ts > ?",
                                      (session, ts - window)).fetchone()[0] >= limit:
                raise RateLimited(text.format(limit))

    def read(self, sql: str, args: tuple = ()) -> list[dict]:
        """Rows of one read-only query on this thread's connection."""
        return [dict(r) for r in self._conn().execute(sql, args)]

    def version(self, preset: str | None = None) -> tuple:
        """Changes whenever a vote (of `preset`; None: any) or a voter's check is added: what the
        Results cache and the CSV export compare before redoing their work."""
        where, args = (" WHERE preset = ?", (preset,)) if preset else ("", ())
        votes = self._conn().execute(f"SELECT COUNT(*), MAX(id) FROM votes{where}", args).fetchone()
        checks = self._conn().execute("SELECT COUNT(*), MAX(ts) FROM checks WHERE source = 'human'").fetchone()
        return tuple(votes) + tuple(checks)

    def get_vote(self, battle_id: str) -> dict | None:
        row = self._conn().execute("SELECT * FROM votes WHERE battle_id = ?", (battle_id,)).fetchone()
        return dict(row) if row else None

    def votes(self, preset: str | None = None) -> list[dict]:
        """All votes (oldest first), optionally only those of one preset."""
        if preset:
            rows = self._conn().execute("SELECT * FROM votes WHERE preset = ? ORDER BY id", (preset,))
        else:
            rows = self._conn().execute("SELECT * FROM votes ORDER BY id")
        return [dict(r) for r in rows]

    def vote_count(self, preset: str | None = None, session: str | None = None) -> int:
        """Votes of one preset and/or one voter (None: all)."""
        conds = [(c, a) for c, a in (("preset = ?", preset), ("session = ?", session)) if a]
        where = (" WHERE " + " AND ".join(c for c, _ in conds)) if conds else ""
        return self._conn().execute(f"SELECT COUNT(*) FROM votes{where}", tuple(a for _, a in conds)).fetchone()[0]

    def presets(self) -> list[str]:
        rows = self._conn().execute("SELECT DISTINCT preset FROM votes WHERE preset IS NOT NULL ORDER BY preset")
        return [r[0] for r in rows]


__all__ = ["VoteStore", "Battle", "VoteError", "UnknownBattle", "AlreadyVoted", "WrongSession",
           "BattleExpired", "RateLimited", "BadChoice", "CHOICES", "SIDES", "new_battle_id", "check_choice",
           "VOTE_COLUMNS", "SCHEMA_VERSION"]
