"""Training checkpoints: ``<output_dir>/checkpoints/checkpoint-<step>/``, written atomically.

A checkpoint holds accelerate's state (weights, optimizer, scheduler, scaler, RNG states), the
adapter (``adapter/``, save_pretrained) and ``trainer_state.json`` (step, data fingerprint).

accelerate's ``ProjectConfiguration(automatic_checkpoint_naming=True, total_limit=...)`` is not
used, because it cannot keep three things this trainer promises: (1) it names folders by a save
counter (``checkpoint_<i>``), not by optimizer step, and resuming needs that counter restored by
hand; (2) it writes straight into the final folder, so a crash mid-save leaves a torn folder that
looks like the latest checkpoint; (3) it deletes the oldest checkpoints *before* writing the new
one, so that crash can also leave fewer good checkpoints than `total_limit`. Here a checkpoint is
written to a temporary folder, renamed into place, and only then are old ones pruned.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

STATE_FILE = "trainer_state.json"


def _step_of(folder: Path) -> int | None:
    tail = folder.name.split("-")[-1]
    return int(tail) if folder.name.startswith("checkpoint-") and tail.isdigit() else None


def find_checkpoint(output_dir: str | Path, resume: str) -> Path | None:
    """`resume` = "latest" (newest complete checkpoint under output_dir, or None) or a folder."""
    if resume != "latest":
        p = Path(resume)
        if not (p / STATE_FILE).exists():
            raise FileNotFoundError(f"{p} is not a training checkpoint (no {STATE_FILE})")
        return p
    found = [p for p in (Path(output_dir) / "checkpoints").glob("checkpoint-*")
             if _step_of(p) is not None and (p / STATE_FILE).exists()]
    return max(found, key=_step_of) if found else None


def prune_checkpoints(output_dir: str | Path, limit: int | None) -> None:
    """Keep the newest `limit` checkpoints (all when `limit` is None or 0)."""
    if not limit:
        return
    found = sorted((p for p in (Path(output_dir) / "checkpoints").glob("checkpoint-*") if _step_of(p) is not None),
                   key=_step_of)
    for p in found[:-limit]:
        shutil.rmtree(p, ignore_errors=True)


def save_checkpoint(accelerator, output_dir: str | Path, step: int, adapter, state: dict,
                    total_limit: int | None = None) -> Path:
    """Write checkpoint-`step` (every process saves its share of the state; the main process
    adds the adapter and `state` to trainer_state.json, renames, and prunes)."""
    folder = Path(output_dir) / "checkpoints"
    final, tmp = folder / f"checkpoint-{step}", folder / f".tmp-checkpoint-{step}"
    main = accelerator.is_main_process
    if main and tmp.exists():
        shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    if main:
        adapter.save_pretrained(tmp / "adapter")
        (tmp / STATE_FILE).write_text(json.dumps({"step": step, **state, "time": time.time()}, indent=2))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        prune_checkpoints(output_dir, total_limit)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator, folder: Path) -> dict:
    """Restore accelerate's state from `folder`; returns its trainer_state.json."""
    state = json.loads((folder / STATE_FILE).read_text())
    accelerator.load_state(str(folder))
    return state


__all__ = ["find_checkpoint", "prune_checkpoints", "save_checkpoint", "load_checkpoint"]
