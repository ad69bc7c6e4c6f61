"""Run a suite: generate baseline/adapter pairs, judge them, score quality, write a report.

`run_eval(EvalConfig(...))` is the library entry point (``python -m eval.run`` is a thin CLI
over it). (prompt, seed) pairs are generated `gen_batch` at a time by `generate_pairs` (both
images of a pair from the same starting noise) and both PNGs saved; batching fills a GPU, and
on a CPU it pays at few steps (toy suite at 10 steps: 0.57x the time of one pair at a time,
`bench/bench_eval_suite.py`) but not at 25. A chunk of pairs at a time is then judged and
scored for BRISQUE (plus any extra quality measures) in batches. Each image becomes one row of
``judgments.jsonl``, appended and fsync'ed as soon as it is known.

Resumable: on start the existing rows are read (a torn last line from a crash is dropped), the
finished (prompt, seed, variant) keys are skipped, and PNGs already on disk are reused instead
of regenerated, so an interrupted run continues where it stopped and never duplicates a row.
A run folder belongs to one configuration (suite content, model, steps, guidance, size, judge,
quality measures); resuming with another is refused. Seeds and ``limit`` may grow between runs.

On several GPUs (``accelerate launch -m eval.run ...``) the (prompt, seed) pairs are split with
`PartialState().split_between_processes`; each process appends to its own
``judgments.rank<N>.jsonl`` and the main process merges them before computing statistics.

Outputs in ``out/``: ``images/*.png``, ``judgments.jsonl``, ``results.csv``, ``summary.json``,
``figures/*.png``, ``report.md``, ``run_config.json`` and ``suite.jsonl`` (the rows used).
"""

from __future__ import annotations

import datetime as _dt
import importlib
import json
import math
import os
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from .judges import Judge, default_judge, make_judge
from .suites import CATEGORIES, Suite, load_suite

VARIANTS = ("baseline", "adapter")
ROW_KEYS = ("prompt_id", "category", "prompt", "seed", "variant", "image", "answer", "correct", "details",
            "brisque", "expect", "nsfw", "gen_s", "judge", "written_at")
FINGERPRINT_KEYS = ("suite_sha256", "preset", "base", "adapter", "steps", "guidance", "height", "width",
                    "negative_prompt", "judge", "quality")
QualityFn = Callable[[list], Sequence[float]]
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


# --------------------------------------------------------------------------- quality registry

def _brisque_fn(cfg: EvalConfig) -> QualityFn:
    from .quality import brisque_scores

    return lambda images: brisque_scores(images, impl=cfg.brisque_impl)


def _palette_distance_fn(cfg: EvalConfig) -> QualityFn:
    from .palette_distance import palette_distance

    return palette_distance


PALETTE_DISTANCE_MARGIN = 0.5
"""TOST margin of the toy palette distance, fixed before any adapter run from
`eval.toy_quality_check`: see docs/evaluation.md for how it compares with blur and noise."""

QUALITY: dict[str, Callable[[EvalConfig], QualityFn]] = {"brisque": _brisque_fn,
                                                          "palette_distance": _palette_distance_fn}
"""Quality measures by name: a factory taking the config and returning ``fn(images) -> scores``
(images are PIL RGB images). Extra measures can be registered, or named as ``module:attr``."""


def register_quality(name: str, factory: Callable[[EvalConfig], QualityFn]) -> None:
    QUALITY[name] = factory


def _quality_fn(name: str, cfg: EvalConfig) -> tuple[str, QualityFn]:
    """(column name, function) for a registered name, ``name=module:attr`` or ``module:attr``."""
    if name in QUALITY:
        return name, QUALITY[name](cfg)
    column, sep, spec = name.partition("=")
    if not sep:
        column, spec = name.rsplit(":", 1)[-1], name
    if ":" not in spec or not column:
        raise ValueError(f"unknown quality measure {name!r}; registered: {', '.join(sorted(QUALITY))}, "
                         f"or give module:function (optionally name=module:function)")
    module, _, attr = spec.partition(":")
    fn = getattr(importlib.import_module(module), attr)
    return column, fn


# --------------------------------------------------------------------------- judgments file

def _key(row: dict) -> tuple[str, int, str]:
    return (str(row["prompt_id"]), int(row["seed"]), str(row["variant"]))


def read_judgments(path: Path) -> list[dict]:
    """Rows of a judgments file; a torn last line (a crash mid-write) is cut off the file."""
    if not path.is_file():
        return []
    data = path.read_bytes()
    rows, good_end, pos = [], 0, 0
    lines = data.split(b"\n")
    for i, line in enumerate(lines):
        end = pos + len(line) + 1
        if line.strip():
            try:
                rows.append(json.loads(line))
                good_end = min(end, len(data))
            except json.JSONDecodeError:
                if i < len(lines) - 1 and any(l.strip() for l in lines[i + 1:]):
                    raise ValueError(f"{path}: line {i + 1} is not valid JSON (corrupt file?); "
                                     f"fix or remove that line to resume") from None
                break
        else:
            good_end = min(end, len(data))
        pos = end
    if good_end < len(data):
        with open(path, "r+b") as f:
            f.truncate(good_end)
    return rows


class _Appender:
    """Appends JSON rows, each flushed and fsync'ed before `write` returns."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_file() and path.stat().st_size:
            with open(path, "rb") as f:  # make sure a new row starts on its own line
                f.seek(-1, os.SEEK_END)
                needs_newline = f.read(1) != b"\n"
            if needs_newline:
                with open(path, "ab") as f:
                    f.write(b"\n")
        self.f = open(path, "a", encoding="utf-8")

    def write(self, row: dict) -> None:
        self.f.write(json.dumps(row, ensure_ascii=False, allow_nan=False, default=_json_default) + "\n")
        self.f.flush()
        os.fsync(self.f.fileno())

    def close(self):
        self.f.close()


def _json_default(o):
    if hasattr(o, "item"):
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    return str(o)


def _clean(o):
    """JSON-safe copy: NaN / infinity become null (strict JSON has no NaN)."""
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return o


def _finite(x):
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else float(x)


# --------------------------------------------------------------------------- helpers

def git_commit() -> str | None:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=_REPO, capture_output=True,
                             text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=_REPO,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return (rev + ("+dirty" if dirty else "")) or None
    except (OSError, subprocess.SubprocessError):
        return None


def _save_png(image, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    image.save(tmp, format="PNG")
    os.replace(tmp, path)


def _load_png(path: Path):
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (OSError, ValueError):
        return None


def load_pipeline(cfg: EvalConfig, device=None):
    """The SURPipeline of a config: a named preset, or --base with --adapter."""
    from surlib import SURPipeline, load_preset

    if cfg.preset is not None:
        pipe = load_preset(cfg.preset, **({"adapter": cfg.adapter} if cfg.adapter else {}),
                           **({"device": device} if device is not None else {}))
    else:
        pipe = SURPipeline.from_pretrained(cfg.base, adapter=cfg.adapter, device=device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _batched(items: Sequence, n: int) -> Iterable[Sequence]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


# --------------------------------------------------------------------------- the run

def run_eval(cfg: EvalConfig, pipe=None, judge: Judge | None = None,
             quality_fns: dict[str, QualityFn] | None = None,
             after_row: Callable[[dict], None] | None = None) -> dict:
    """Generate, judge, score and report; returns the summary (also written to summary.json).

    `pipe`, `judge` and `quality_fns` override what the config names (tests, notebooks);
    `after_row` is called after each row is durably written (progress hooks, fault injection)."""
    from accelerate import PartialState
    from tqdm.auto import tqdm

    t_start = time.perf_counter()
    state = PartialState()
    out = Path(cfg.out)
    (out / "images").mkdir(parents=True, exist_ok=True)

    full = load_suite(cfg.suite)
    if judge is None:
        kwargs = dict(cfg.judge_kwargs)
        if cfg.judge in ("vqa", "clip-color", "toy"):
            kwargs.setdefault("device", cfg.device or state.device)
        judge = make_judge(cfg.judge, **kwargs)
    cats = [c for c in (cfg.categories or full.categories()) if c in judge.categories]
    if not cats:
        raise ValueError(f"judge {judge.describe()} scores {list(judge.categories)}, none of the requested "
                         f"categories {cfg.categories or full.categories()}")
    suite = full.select(cats, cfg.limit)
    judge.check_suite(suite)
    if quality_fns is None:
        quality_fns = dict(_quality_fn(q, cfg) for q in cfg.quality)
    clash = set(quality_fns) & set(ROW_KEYS) - {"brisque"}
    if clash:
        raise ValueError(f"quality measure names {sorted(clash)} clash with judgment fields")

    config = _config_record(cfg, full, judge, quality_fns, suite)
    if state.is_main_process:
        _check_or_write_config(out, config)
        (out / "suite.jsonl").write_text("".join(json.dumps(r.to_dict()) + "\n" for r in suite.rows))
    state.wait_for_everyone()

    # What is already done (every process reads every file, so no pair is split twice).
    existing = _read_all(out)
    done = {_key(r) for r in existing}
    todo = [(row, seed) for row in suite.rows for seed in cfg.seeds
            if any((row.id, seed, v) not in done for v in VARIANTS)]
    total_images = len(suite.rows) * len(cfg.seeds) * len(VARIANTS)
    already = sum((row.id, seed, v) in done for row in suite.rows for seed in cfg.seeds for v in VARIANTS)

    gen_s = judge_s = quality_s = 0.0
    generated = 0
    with state.split_between_processes(todo) as mine:
        mine = list(mine)
        loaded = [pipe]

        def get_pipe():  # loaded on first use: a resumed run may find every image on disk
            if loaded[0] is None:
                loaded[0] = load_pipeline(cfg, device=state.device if state.num_processes > 1 or cfg.device is None
                                          else cfg.device)
            return loaded[0]
        single = state.num_processes == 1
        path = out / ("judgments.jsonl" if single else f"judgments.rank{state.process_index}.jsonl")
        writer = _Appender(path)
        bar = tqdm(total=total_images if single else len(VARIANTS) * len(mine), initial=already if single else 0,
                   desc=f"eval {suite.name}" + ("" if single else f" [{state.process_index}]"),
                   unit="img", disable=not cfg.progress, position=state.process_index)
        try:
            for chunk in _batched(mine, cfg.chunk):
                items = []  # (row, seed, variant, image, nsfw, seconds)
                for (row, seed), (images, nsfw, secs) in zip(chunk, _chunk_images(get_pipe, cfg, out, chunk)):
                    if secs is not None:
                        gen_s += secs
                        generated += 1
                    for v in VARIANTS:
                        if (row.id, seed, v) not in done:
                            items.append((row, seed, v, images[v], nsfw.get(v), secs))
                if not items:
                    continue
                ims = [it[3] for it in items]
                rows_ = [it[0] for it in items]
                t0 = time.perf_counter()
                verdicts = judge.judge(ims, rows_)
                judge_s += time.perf_counter() - t0
                if len(verdicts) != len(ims):
                    raise RuntimeError(f"judge {judge.describe()} returned {len(verdicts)} verdicts for {len(ims)} images")
                t0 = time.perf_counter()
                scores = {name: list(fn(ims)) for name, fn in quality_fns.items()}
                quality_s += time.perf_counter() - t0
                for name, vals in scores.items():
                    if len(vals) != len(ims):
                        raise RuntimeError(f"quality measure {name!r} returned {len(vals)} scores for {len(ims)} images")
                for i, ((row, seed, v, _im, flag, secs), verdict) in enumerate(zip(items, verdicts)):
                    rec = {
                        "prompt_id": row.id, "category": row.category, "prompt": row.prompt, "seed": seed,
                        "variant": v, "image": _image_path(out, row.id, seed, v).relative_to(out).as_posix(),
                        "answer": verdict.answer, "correct": bool(verdict.correct), "details": verdict.details,
                        "brisque": None, "expect": row.expect, "nsfw": flag,
                        "gen_s": None if secs is None else round(secs, 4), "judge": judge.describe(),
                        "written_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                    }
                    for name, vals in scores.items():
                        rec[name] = _finite(vals[i])
                    writer.write(rec)
                    done.add((row.id, seed, v))
                    bar.update(1)
                    if after_row is not None:
                        after_row(rec)
        finally:
            writer.close()
            bar.close()
    state.wait_for_everyone()

    summary = None
    if state.is_main_process:
        if any(out.glob("judgments.rank*.jsonl")):  # this run's, or left by an interrupted one
            _merge_rank_files(out)
        summary = finish_run(out, cfg, suite, config, quality_fns,
                             timings={"wall_s": time.perf_counter() - t_start, "pairs_generated": generated,
                                      "generate_s": gen_s, "judge_s": judge_s, "quality_s": quality_s})
    state.wait_for_everyone()
    return summary


def _image_path(out: Path, row_id: str, seed: int, variant: str) -> Path:
    return out / "images" / f"{row_id}_s{seed}_{variant}.png"


def _chunk_images(get_pipe: Callable, cfg: EvalConfig, out: Path, chunk) -> list[tuple]:
    """For each (row, seed): ({variant: PIL image}, {variant: nsfw flag}, seconds or None). Saved
    PNGs are reused when both are readable (a resumed run); the other pairs are generated
    `gen_batch` at a time with `generate_pairs` and saved atomically."""
    results: list = [None] * len(chunk)
    missing = []
    for i, (row, seed) in enumerate(chunk):
        files = {v: _image_path(out, row.id, seed, v) for v in VARIANTS}
        images = {v: _load_png(f) for v, f in files.items() if f.is_file()}
        if len(images) == len(VARIANTS) and all(im is not None for im in images.values()):
            results[i] = (images, {}, None)
        else:
            missing.append(i)
    for group in _batched(missing, cfg.gen_batch):
        t0 = time.perf_counter()
        gens = get_pipe().generate_pairs(
            [chunk[i][0].prompt for i in group], [chunk[i][1] for i in group], steps=cfg.steps,
            guidance=cfg.guidance, negative_prompt=cfg.negative_prompt, height=cfg.height, width=cfg.width,
            output_type="pil")
        secs = (time.perf_counter() - t0) / len(group)
        for i, g in zip(group, gens):
            row, seed = chunk[i]
            for v in VARIANTS:
                _save_png(g.images[v], _image_path(out, row.id, seed, v))
            results[i] = (dict(g.images), dict(g.nsfw), secs)
    return results


def _read_all(out: Path) -> list[dict]:
    rows = read_judgments(out / "judgments.jsonl")
    for part in sorted(out.glob("judgments.rank*.jsonl")):
        rows += read_judgments(part)
    return rows


def _merge_rank_files(out: Path) -> None:
    main = out / "judgments.jsonl"
    done = {_key(r) for r in read_judgments(main)}
    writer = _Appender(main)
    try:
        for part in sorted(out.glob("judgments.rank*.jsonl")):
            for r in read_judgments(part):
                if _key(r) not in done:
                    writer.write(r)
                    done.add(_key(r))
    finally:
        writer.close()
    for part in out.glob("judgments.rank*.jsonl"):
        part.unlink()


def _config_record(cfg: EvalConfig, full: Suite, judge: Judge, quality_fns: dict, suite: Suite) -> dict:
    import torch

    import surlib
    from surlib.presets import PRESETS

    rec = asdict(cfg)
    preset = PRESETS.get(cfg.preset) if cfg.preset else None
    rec.update({
        "model_base": cfg.base or (preset.base if preset else None) or f"built into the {cfg.preset} preset",
        "model_adapter": cfg.adapter or (preset.adapter if preset else None)
        or (os.environ.get("SUR_ADAPTER") if preset and preset.base else None)
        or f"the {cfg.preset} preset's default",
        "suite_name": full.name, "suite_path": str(full.path) if full.path else None,
        "suite_sha256": full.sha256, "suite_rows_used": len(suite), "categories_used": suite.categories(),
        "judge": judge.describe(), "quality": sorted(quality_fns),
        "commit": git_commit(), "surlib_version": getattr(surlib, "__version__", None),
        "torch_version": torch.__version__,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    })
    return rec


def _check_or_write_config(out: Path, config: dict) -> None:
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


def finish_run(out: Path, cfg: EvalConfig, suite: Suite, config: dict, quality_fns: dict,
               timings: dict | None = None) -> dict:
    """results.csv, summary.json, figures and report.md from the rows of the current selection."""
    import pandas as pd

    from .report import write_report
    from .stats import summarize

    wanted = {(r.id, s, v) for r in suite.rows for s in cfg.seeds for v in VARIANTS}
    rows = [r for r in _read_all(out) if _key(r) in wanted]
    seen, uniq = set(), []
    for r in rows:
        if _key(r) not in seen:
            seen.add(_key(r))
            uniq.append(r)
    if not uniq:
        raise RuntimeError(f"no judged images in {out}")
    df = pd.DataFrame(uniq)
    qcols = [c for c in quality_fns if c in df.columns]
    cols = ["prompt_id", "category", "prompt", "seed", "variant", "answer", "correct"] + qcols + \
           [c for c in ("nsfw", "gen_s", "image") if c in df.columns]
    order = {c: i for i, c in enumerate(CATEGORIES)}
    df = df.assign(_c=df["category"].map(order), _v=df["variant"].map({v: i for i, v in enumerate(VARIANTS)}))
    df = df.sort_values(["_c", "prompt_id", "seed", "_v"], kind="stable").drop(columns=["_c", "_v"])
    df[cols].to_csv(out / "results.csv", index=False)
    qopts = {c: {"margin": (cfg.margin if c == "brisque" else cfg.quality_margins.get(c)), "lower_is_better": True}
             for c in qcols}
    summary = summarize(df, qopts, n_boot=cfg.n_boot, seed=cfg.boot_seed, alpha=cfg.alpha)
    summary["images"] = int(len(df))
    summary["expected_images"] = len(wanted)
    summary["complete"] = len(df) == len(wanted)
    summary["config"] = config
    summary["timings"] = timings or {}
    summary["suite_stats"] = suite.stats()
    (out / "summary.json").write_text(json.dumps(_clean(summary), indent=2, default=_json_default))
    write_report(out, summary, df)
    return summary


__all__ = ["EvalConfig", "run_eval", "finish_run", "read_judgments", "register_quality", "QUALITY",
           "load_pipeline", "git_commit"]
