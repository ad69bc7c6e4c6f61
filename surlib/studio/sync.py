"""Optional export of votes to a Hugging Face dataset repo (off unless SUR_SYNC_REPO and HF_TOKEN).

The SQLite store is the record; this is a copy for people who want the votes outside the Space.
Each process appends JSON lines to its own file `export/votes-<host>-<pid>-<start>.jsonl` while
holding `scheduler.lock`, and `huggingface_hub.CommitScheduler` pushes the folder every few
minutes (it only reads under the same lock, so it never sees half a line).

A vote never waits for the export and never fails because of it: `submit()` only puts the
record on an in-memory queue; a daemon thread writes it; any error is logged and dropped.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import socket
import threading
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

log = logging.getLogger("surlib.app.sync")

# What leaves the Space: the vote minus nothing secret (the session is already a salted hash).
EXPORT_FIELDS = ("id", "battle_id", "created_at", "ts", "session", "prompt", "prompt_id", "suite",
                 "category", "seed", "steps", "guidance", "preset", "base_model", "adapter_id",
                 "left_system", "right_system", "adapter_side", "choice", "winner", "time_to_vote_s")


class VoteExporter:
    """Appends votes as JSON lines to one file per process, under `lock` (the scheduler's)."""

    def __init__(self, folder: str | Path, lock: Any = None, scheduler: Any = None,
                 max_queue: int = 10_000):
        self.folder = Path(folder)
        self.lock = lock if lock is not None else (scheduler.lock if scheduler is not None else nullcontext())
        self.scheduler = scheduler
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        host = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in socket.gethostname())[:40]
        self.path = self.folder / f"votes-{host}-{os.getpid()}-{stamp}.jsonl"
        self._queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="sur-vote-export", daemon=True)
        self._thread.start()

    def submit(self, vote: dict) -> None:
        """Queue one vote for export; never blocks, never raises."""
        try:
            self._queue.put_nowait({k: vote.get(k) for k in EXPORT_FIELDS})
        except queue.Full:
            self.dropped += 1
            log.warning("vote export queue full; dropped vote %s (it is in the database)", vote.get("battle_id"))
        except Exception:  # pragma: no cover - defensive
            log.exception("could not queue vote for export")

    def write(self, record: dict) -> None:
        """Append one record (synchronously, under the lock). Used by the worker and by tests."""
        line = json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n"
        with self.lock:
            self.folder.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line)

    def _run(self) -> None:
        while True:
            record = self._queue.get()
            if record is None:
                return
            try:
                self.write(record)
            except Exception:
                log.exception("vote export failed for %s (the vote is safe in the database)",
                              record.get("battle_id"))
            finally:
                self._queue.task_done()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until queued records are written; True if the queue drained in time."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self._queue.unfinished_tasks

    def close(self) -> None:
        self.flush()
        self._queue.put(None)


def start_sync(config) -> VoteExporter | None:
    """A VoteExporter pushed by a CommitScheduler when the config enables it, else None.

    Never raises: a bad token or an unreachable Hub logs an error and leaves the app running."""
    if not config.sync_enabled:
        if config.sync_repo and not config.hf_token:
            log.warning("SUR_SYNC_REPO is set but HF_TOKEN is not: vote sync stays off")
        return None
    try:
        from huggingface_hub import CommitScheduler

        scheduler = CommitScheduler(
            repo_id=config.sync_repo, repo_type="dataset", folder_path=config.export_dir,
            path_in_repo="votes", every=config.sync_every_min, token=config.hf_token,
            private=True, allow_patterns=["*.jsonl"],
        )
    except Exception:
        log.exception("could not start the vote sync to %s; votes stay in the local database only",
                      config.sync_repo)
        return None
    log.info("votes are exported to dataset %s every %s min", config.sync_repo, config.sync_every_min)
    return VoteExporter(config.export_dir, scheduler=scheduler)


__all__ = ["VoteExporter", "start_sync", "EXPORT_FIELDS"]
