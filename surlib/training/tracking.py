"""The loss history of a run: ``losses.csv`` and ``losses.png``, written by an accelerate tracker.

`LossTracker` is an accelerate `GeneralTracker` given to ``Accelerator(log_with=[...])``, so the
loop only calls ``accelerator.log(values, step)`` and accelerate keeps the writing on the main
process. accelerate's own trackers (TensorBoard, W&B, ...) need extra packages and none writes a
CSV, hence this small one.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from accelerate.tracking import GeneralTracker

LOSS_TERMS = ("noise", "llm", "quality", "identity", "gate", "total")
CSV_FIELDS = ("step", *LOSS_TERMS, "lr")


def read_history(path: str | Path) -> list[dict]:
    """The rows of a losses.csv ([] when there is none)."""
    path = Path(path)
    if not path.exists():
        return []
    with open(path, newline="") as f:
        # A term a run did not log (an older run's file) reads as 0.
        return [{k: int(v) if k == "step" else float(v or 0) for k, v in row.items()} for row in csv.DictReader(f)]


def plot_history(rows: list[dict], path: str | Path) -> None:
    """Loss curves (one panel per term) as a PNG, with the Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        return
    steps = [r["step"] for r in rows]
    keys = ("total", "noise", "llm", "quality", "identity", "gate")
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.2))
    for ax, key in zip(axes, keys):
        ax.plot(steps, [r[key] for r in rows], lw=1)
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = Path(path).with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=80)
    plt.close(fig)
    os.replace(tmp, path)


class LossTracker(GeneralTracker):
    """One CSV row per logged step in ``<out>/losses.csv``, and the curves in ``<out>/losses.png``
    every `plot_every` steps (0: only at the end)."""

    name = "losses_csv"
    requires_logging_directory = False

    def __init__(self, out: str | Path, plot_every: int = 0):
        super().__init__()
        self.csv_path, self.png_path = Path(out) / "losses.csv", Path(out) / "losses.png"
        self.plot_every = int(plot_every)
        self.rows: list[dict] = []

    @property
    def tracker(self):
        return self.csv_path

    def begin(self, rows: list[dict]) -> None:
        """Start the CSV with `rows` (a resumed run's steps up to its checkpoint; [] for a new run),
        dropping anything a killed run logged after that. Called by the loop itself, not from
        accelerate's `init_trackers`, whose call of `start()` differs between accelerate versions."""
        self.rows = list(rows)
        self.csv_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.csv_path.with_suffix(".csv.tmp")
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
            w.writeheader()
            w.writerows(self.rows)
        os.replace(tmp, self.csv_path)

    def log(self, values: dict, step: int | None = None, **kwargs) -> None:
        row = {"step": step, **values}
        self.rows.append(row)
        with open(self.csv_path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=CSV_FIELDS).writerow(row)
        if self.plot_every and step % self.plot_every == 0:
            plot_history(self.rows, self.png_path)

    def finish(self) -> None:
        plot_history(self.rows, self.png_path)


__all__ = ["LossTracker", "plot_history", "read_history", "CSV_FIELDS", "LOSS_TERMS"]
