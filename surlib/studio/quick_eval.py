"""The Eval tab's Run button: a small evaluation of the served toy model, in the app itself.

`eval.runner.run_eval` on the first `per_category` prompts of each category of one toy suite
(12 of `toy_heldout`, the sentence frames no model was trained on), one seed, the toy judge,
BRISQUE and the palette distance, with the app's own pipeline: a taste of the full run
(`python -m eval.run`, 168 prompts × 4 seeds per suite) in well under a minute on two CPU cores.
Twelve prompts can show a large difference and little else; the report's intervals say so.

The run is written to a work folder and then moved to ``<runs dir>/quick-eval``, replacing the
previous one, so the folder never accumulates and the page never shows a half-written report;
as the newest ``runs/*/report.md`` it is what the Eval tab shows next. One run at a time per
process: a second request while one runs is refused with a message, not queued.

Only the toy preset has a judge that runs here (the real presets need BLIP VQA and a GPU for
minutes); for the others `available` is False and `description` says what to run instead.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Callable

from .pair_judge import TOY_PRESETS

log = logging.getLogger("surlib.app")

QUICK_DIR = "quick-eval"
WORK_DIR = ".work"  # under the runs dir, one level deeper than runs/*/report.md, so never shown


class QuickEval:
    """Runs the small evaluation for one app (its pipeline, preset and runs folder)."""

    def __init__(self, pipe, preset: str, runs_dir: str | Path, suite: str = "toy_heldout",
                 per_category: int = 4, seeds: tuple[int, ...] = (0,), gen_batch: int = 4):
        self.pipe = pipe
        self.preset = preset
        self.runs_dir = Path(runs_dir)
        self.suite = suite
        self.per_category = per_category
        self.seeds = list(seeds)
        self.gen_batch = gen_batch  # small batches: a Compare click waits at most one of them
        self._lock = threading.Lock()
        self._started: float | None = None
        self._judge = None

    @property
    def available(self) -> bool:
        return self.pipe is not None and self.preset in TOY_PRESETS

    @property
    def out(self) -> Path:
        return self.runs_dir / QUICK_DIR

    def description(self) -> str:
        if self.available:
            n = 3 * self.per_category
            return (f"**Run** evaluates {n} prompts of the `{self.suite}` suite ({self.per_category} per category) "
                    f"× {len(self.seeds)} seed with the model served here: toy judge, BRISQUE and palette distance, "
                    f"under a minute on two CPU cores. It writes `{self.out}` (replaced by each run) and "
                    "shows its report.")
        if self.preset in TOY_PRESETS:
            return "The Run button needs the served pipeline, and none was given to this app."
        return (f"The Run button evaluates the toy preset only; this app serves `{self.preset}`, whose judge "
                f"(BLIP VQA) needs a GPU and minutes. Evaluate it with `python -m eval.run --preset {self.preset} "
                f"--limit 4 --seeds 1 --out {self.runs_dir}/{self.preset}`, then press **Reload**.")

    def config(self, out: Path):
        from eval.config import EvalConfig

        return EvalConfig(out=str(out), preset=self.preset, suite=self.suite, seeds=self.seeds,
                          limit=self.per_category, chunk=self.gen_batch, gen_batch=self.gen_batch,
                          progress=False)

    def run(self, progress: Callable[[float, str], None] | None = None) -> Path:
        """Evaluate and install the run folder; returns its report.md. ValueError when unavailable
        or when another run is in progress (the message says since when)."""
        if not self.available:
            raise ValueError(self.description())
        if not self._lock.acquire(blocking=False):
            since = time.time() - (self._started or time.time())
            raise ValueError(f"An evaluation is already running (started {since:.0f} s ago); its report "
                             "appears here when it finishes, so wait for it rather than starting another.")
        try:
            self._started = time.time()
            return self._run(progress or (lambda fraction, text: None))
        finally:
            self._started = None
            self._lock.release()

    def _run(self, progress: Callable[[float, str], None]) -> Path:
        from eval.runner import run_eval

        work = self.runs_dir / WORK_DIR / f"{QUICK_DIR}-{os.getpid()}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        try:
            progress(0.0, "loading the toy judge")
            if self._judge is None:
                from eval.judges import make_judge

                self._judge = make_judge("toy", device="cpu")
            cfg = self.config(work)
            total = 2 * 3 * self.per_category * len(self.seeds)
            done = [0]

            def after_row(_row):
                done[0] += 1
                progress(0.9 * done[0] / total, f"generated and judged {done[0]} of {total} images")

            progress(0.02, "generating the first pairs")
            run_eval(cfg, pipe=self.pipe, judge=self._judge, after_row=after_row)
            progress(0.95, "report written")
            self._install(work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return self.out / "report.md"

    def _install(self, work: Path) -> None:
        """Move the finished run to `out`, removing the previous one."""
        old = self.runs_dir / WORK_DIR / f"{QUICK_DIR}-old-{os.getpid()}"
        shutil.rmtree(old, ignore_errors=True)
        if self.out.exists():
            os.replace(self.out, old)
        os.replace(work, self.out)
        shutil.rmtree(old, ignore_errors=True)
        os.utime(self.out / "report.md")  # newest report of the runs dir from now on


__all__ = ["QuickEval", "QUICK_DIR"]
