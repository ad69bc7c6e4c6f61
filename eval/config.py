"""The configuration of an evaluation run, and its record in the run folder.

A run folder belongs to one configuration: ``run_config.json`` records it with provenance
(models, suite hash, commit, versions), and resuming with different settings that change what
the images or verdicts mean (`FINGERPRINT_KEYS`) is refused, so one report never mixes two
protocols. Seeds and ``limit`` may grow between runs.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .judges import default_judge
from .measures import PALETTE_DISTANCE_MARGIN

FINGERPRINT_KEYS = ("suite_sha256", "preset", "base", "adapter", "steps", "guidance", "height", "width",
                    "negative_prompt", "judge", "quality")
_REPO = Path(__file__).resolve().parents[1]


@dataclass
class EvalConfig:
    """Everything that defines a run. `margin` (BRISQUE TOST margin) is fixed before the run."""

    out: str
    suite: str | None = None  # default: "toy" for the toy preset, else "real"
    preset: str | None = None
    base: str | None = None
    adapter: str | None = None
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3])
    steps: int | None = None  # default: the preset's default_steps (50 for a hub base, as in the paper)
    guidance: float | None = None  # default: the preset's default_guidance (7.5 for a hub base)
    height: int | None = None
    width: int | None = None
    negative_prompt: str | None = None
    judge: str | None = None
    judge_kwargs: dict[str, Any] = field(default_factory=dict)
    limit: int | None = None
    categories: list[str] | None = None
    quality: list[str] = field(default_factory=lambda: ["brisque"])
    margin: float = 5.0
    quality_margins: dict[str, float] = field(default_factory=dict)
    alpha: float = 0.05
    n_boot: int = 2000
    boot_seed: int = 0
    chunk: int = 16
    gen_batch: int = 8
    brisque_impl: str = "fast"
    device: str | None = None
    progress: bool = True

    def __post_init__(self):
        if isinstance(self.seeds, int):
            self.seeds = list(range(self.seeds))
        self.seeds = [int(s) for s in self.seeds]
        if not self.seeds:
            raise ValueError("seeds must name at least one seed")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct, got {self.seeds}")
        if self.preset is None and self.base is None:
            raise ValueError("give a preset, or a base model (and an adapter)")
        if self.preset is not None and self.base is not None:
            raise ValueError("give either a preset or --base/--adapter, not both")
        if self.base is not None and self.adapter is None:
            raise ValueError("--base needs --adapter (a folder or hub id of a trained SUR-adapter)")
        if self.chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {self.chunk}")
        if self.gen_batch < 1:
            raise ValueError(f"gen_batch must be >= 1, got {self.gen_batch}")
        if not self.margin > 0:
            raise ValueError(f"the BRISQUE equivalence margin must be positive, got {self.margin}")
        if self.steps is None or self.guidance is None:
            from surlib.presets import PRESETS

            preset = PRESETS.get(self.preset or "")
            steps, guidance = (preset.default_steps, preset.default_guidance) if preset else (50, 7.5)
            self.steps = steps if self.steps is None else self.steps
            self.guidance = guidance if self.guidance is None else self.guidance
        if self.judge is None:
            self.judge = default_judge(self.preset)
        if self.suite is None:
            self.suite = "toy" if self.preset and self.preset.startswith("toy") else "real"
        if self.suite == "toy" and self.judge == "toy":
            # BRISQUE stays (the paper's metric) but ranks flat renders backwards
            # (`python -m eval.toy_quality_check`); the palette distance does not.
            if "palette_distance" not in self.quality:
                self.quality = [*self.quality, "palette_distance"]
            self.quality_margins = {"palette_distance": PALETTE_DISTANCE_MARGIN, **self.quality_margins}


def git_commit() -> str | None:
    """Short commit of the checkout, "+dirty" with uncommitted changes; None outside git."""
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=_REPO, capture_output=True,
                             text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=_REPO,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return (rev + ("+dirty" if dirty else "")) or None
    except (OSError, subprocess.SubprocessError):
        return None


def config_record(cfg: EvalConfig, full, judge, quality_fns: dict, suite) -> dict:
    """The config plus what it resolved to: models, suite file and hash, judge, versions, date."""
    import torch

    import surlib
    from surlib.presets import PRESETS

    rec = asdict(cfg)
    preset = PRESETS.get(cfg.preset) if cfg.preset else None
    rec.update({
        "model_base": cfg.base or (preset.base if preset else None) or f"built into the {cfg.preset} preset",
        "model_adapter": cfg.adapter or (os.environ.get("SUR_ADAPTER") if preset and preset.base else None)
        or f"the {cfg.preset} preset's default",
        "suite_name": full.name, "suite_path": str(full.path) if full.path else None,
        "suite_sha256": full.sha256, "suite_rows_used": len(suite), "categories_used": suite.categories(),
        "judge": judge.describe(), "quality": sorted(quality_fns),
        "commit": git_commit(), "surlib_version": getattr(surlib, "__version__", None),
        "torch_version": torch.__version__,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    })
    return rec


def check_or_write_config(out: Path, config: dict) -> None:
    """Write ``run_config.json``, or refuse a resume whose fingerprint differs from the folder's."""
    path = out / "run_config.json"
    if path.is_file():
        old = json.loads(path.read_text())
        diff = [f"{k}: {old.get(k)!r} -> {config.get(k)!r}" for k in FINGERPRINT_KEYS if old.get(k) != config.get(k)]
        if diff:
            raise ValueError(f"{out} holds a run with another configuration ({'; '.join(diff)}); "
                             f"resume only with the same settings, or use a new --out folder")
        config = {**old, "resumed_at": old.get("resumed_at", []) + [config["date"]],
                  "seeds": sorted(set(old.get("seeds", [])) | set(config["seeds"])),
                  "limit": config["limit"], "commit": config["commit"]}
    path.write_text(json.dumps(config, indent=2, default=str))


__all__ = ["EvalConfig", "FINGERPRINT_KEYS", "git_commit", "config_record", "check_or_write_config"]
