"""Run a suite: generate baseline/adapter pairs, judge them, score quality, write a report.

`run_eval(EvalConfig(...))` is the library entry point (``python -m eval.run`` is a thin CLI
over it). (prompt, seed) pairs are generated and saved by `eval.images`; a chunk of pairs at a
time is then judged and scored (BRISQUE plus any other measures of `eval.measures`) in batches,
and each image becomes one row of ``judgments.jsonl`` (`eval.records`), durable as soon as it
is known.

Resumable: on start the existing rows are read, the finished (prompt, seed, variant) keys are
skipped and PNGs already on disk are reused, so an interrupted run continues where it stopped
and never duplicates a row; `eval.config` refuses a resume with another configuration or
changed model weights.

With the toy judge, a prompt with words the toy world's grammar never uses
(`surlib.toy.prompts.unknown_words`) would be judged on words no toy model was trained on: each
row records its ``unknown_words`` and such prompts are left out of the accuracy statistics,
counted and named in the summary (``unknown_words``) and the report, never silently judged.

On several GPUs (``accelerate launch -m eval.run ...``) the (prompt, seed) pairs are split with
`PartialState().split_between_processes`; each process appends to its own
``judgments.rank<N>.jsonl`` and the main process merges them before computing statistics.

Outputs in ``out/``: ``images/*.png``, ``judgments.jsonl``, ``results.csv``, ``summary.json``,
``figures/*.png``, ``report.md``, ``run_config.json`` and ``suite.jsonl`` (the rows used).
"""

from __future__ import annotations

import datetime as _dt
import json
import time
from pathlib import Path
from typing import Callable

from surlib.names import CATEGORIES, VARIANTS

from .config import EvalConfig, check_or_write_config, config_record
from .images import batched, chunk_images, image_path, load_pipeline
from .judges import Judge, make_judge
from .measures import QualityFn, quality_fns as configured_quality_fns
from .records import (MAIN_FILE, RANK_GLOB, JUDGMENT_KEYS, JsonlAppender, finite_or_none, json_default, json_safe,
                      rank_file, read_judgments, read_run_rows, row_key)
from .suites import Suite, load_suite


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
    unknown = unknown_words_of(suite) if uses_toy_vocabulary(cfg, judge) else None
    if unknown is not None and all(unknown.values()):
        first = "; ".join(f"{k}: {', '.join(v)}" for k, v in list(unknown.items())[:3])
        raise ValueError(f"every prompt of suite {suite.name} has words the toy world's grammar never uses "
                         f"({first}; ...), so the toy judge cannot score any of them; use a suite written "
                         f"in the toy grammar (toy, toy_heldout, toy_spells, toy_canonical)")
    if quality_fns is None:
        quality_fns = configured_quality_fns(cfg)
    clash = set(quality_fns) & set(JUDGMENT_KEYS) - {"brisque"}
    if clash:
        raise ValueError(f"quality measure names {sorted(clash)} clash with judgment fields")

    config = config_record(cfg, full, judge, quality_fns, suite)
    if state.is_main_process:
        check_or_write_config(out, config)
        (out / "suite.jsonl").write_text("".join(json.dumps(r.to_dict()) + "\n" for r in suite.rows))
    state.wait_for_everyone()

    # What is already done (every process reads every file, so no pair is split twice).
    done = {row_key(r) for r in read_run_rows(out)}
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
        writer = JsonlAppender(out / MAIN_FILE if single else rank_file(out, state.process_index))
        bar = tqdm(total=total_images if single else len(VARIANTS) * len(mine), initial=already if single else 0,
                   desc=f"eval {suite.name}" + ("" if single else f" [{state.process_index}]"),
                   unit="img", disable=not cfg.progress, position=state.process_index)
        try:
            for chunk in batched(mine, cfg.chunk):
                items = []  # (row, seed, variant, image, nsfw, seconds)
                for (row, seed), (images, nsfw, secs) in zip(chunk, chunk_images(get_pipe, cfg, out, chunk)):
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
                        "variant": v, "image": image_path(out, row.id, seed, v).relative_to(out).as_posix(),
                        "answer": verdict.answer, "correct": bool(verdict.correct), "details": verdict.details,
                        "brisque": None, "expect": row.expect, "nsfw": flag,
                        "gen_s": None if secs is None else round(secs, 4), "judge": judge.describe(),
                        "written_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                    }
                    for name, vals in scores.items():
                        rec[name] = finite_or_none(vals[i])
                    if unknown is not None:
                        rec["unknown_words"] = unknown[row.id]
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
        if any(out.glob(RANK_GLOB)):  # this run's, or left by an interrupted one
            merge_rank_files(out)
        summary = finish_run(out, cfg, suite, config, quality_fns, unknown=unknown,
                             timings={"wall_s": time.perf_counter() - t_start, "pairs_generated": generated,
                                      "generate_s": gen_s, "judge_s": judge_s, "quality_s": quality_s})
    state.wait_for_everyone()
    return summary


def uses_toy_vocabulary(cfg: EvalConfig, judge: Judge) -> bool:
    """Whether verdicts come from the toy judge, which only knows the toy world's words."""
    return cfg.judge == "toy" or getattr(judge, "name", None) == "toy"


def unknown_words_of(suite: Suite) -> dict[str, list[str]]:
    """Prompt id -> the words of its prompt that the toy grammar never uses (imported here:
    only toy runs need the toy world's vocabulary)."""
    from surlib.toy.prompts import unknown_words

    return {row.id: list(unknown_words(row.prompt)) for row in suite.rows}


def merge_rank_files(out: Path) -> None:
    """Append the rows of every process's rank file to the main file (each key once), then delete them."""
    main = out / MAIN_FILE
    done = {row_key(r) for r in read_judgments(main)}
    writer = JsonlAppender(main)
    try:
        for part in sorted(out.glob(RANK_GLOB)):
            for r in read_judgments(part):
                if row_key(r) not in done:
                    writer.write(r)
                    done.add(row_key(r))
    finally:
        writer.close()
    for part in out.glob(RANK_GLOB):
        part.unlink()


def finish_run(out: Path, cfg: EvalConfig, suite: Suite, config: dict, quality_fns: dict,
               timings: dict | None = None, unknown: dict[str, list[str]] | None = None) -> dict:
    """results.csv, summary.json, figures and report.md from the rows of the current selection.

    `unknown` (prompt id -> unknown words, toy runs): prompts with any are left out of the
    accuracy statistics (quality still counts their images) and listed in ``unknown_words``."""
    import pandas as pd

    from .report import write_report
    from .stats import summarize

    wanted = {(r.id, s, v) for r in suite.rows for s in cfg.seeds for v in VARIANTS}
    rows = [r for r in read_run_rows(out) if row_key(r) in wanted]
    seen, uniq = set(), []
    for r in rows:
        if row_key(r) not in seen:
            seen.add(row_key(r))
            uniq.append(r)
    if not uniq:
        raise RuntimeError(f"no judged images in {out}")
    df = pd.DataFrame(uniq)
    qcols = [c for c in quality_fns if c in df.columns]
    if unknown is not None:
        df["unknown_words"] = [" ".join(unknown.get(str(p), [])) for p in df["prompt_id"]]
    cols = ["prompt_id", "category", "prompt", "seed", "variant", "answer", "correct"] + qcols + \
           [c for c in ("unknown_words", "nsfw", "gen_s", "image") if c in df.columns]
    order = {c: i for i, c in enumerate(CATEGORIES)}
    df = df.assign(_c=df["category"].map(order), _v=df["variant"].map({v: i for i, v in enumerate(VARIANTS)}))
    df = df.sort_values(["_c", "prompt_id", "seed", "_v"], kind="stable").drop(columns=["_c", "_v"])
    df[cols].to_csv(out / "results.csv", index=False)
    qopts = {c: {"margin": (cfg.margin if c == "brisque" else cfg.quality_margins.get(c)), "lower_is_better": True}
             for c in qcols}
    excluded = {p: w for p, w in (unknown or {}).items() if w and p in set(df["prompt_id"].astype(str))}
    judged = df[~df["prompt_id"].astype(str).isin(excluded)]
    if judged.empty:
        raise RuntimeError(f"every judged prompt of {out} has words the toy world never uses, so no accuracy "
                           f"can be computed: use a suite in the toy grammar")
    summary = summarize(df, qopts, n_boot=cfg.n_boot, seed=cfg.boot_seed, alpha=cfg.alpha, n_flips=cfg.n_flips,
                        exclude_prompts=excluded)
    summary["unknown_words"] = None if unknown is None else {
        "checked": True, "prompts_excluded": len(excluded), "prompts_checked": int(df["prompt_id"].nunique()),
        "images_excluded": int(len(df) - len(judged)), "excluded_from": "accuracy statistics", "prompts": excluded}
    summary["images"] = int(len(df))
    summary["expected_images"] = len(wanted)
    summary["complete"] = len(df) == len(wanted)
    summary["config"] = config
    summary["timings"] = timings or {}
    summary["suite_stats"] = suite.stats()
    (out / "summary.json").write_text(json.dumps(json_safe(summary), indent=2, default=json_default))
    write_report(out, summary, df)
    return summary


# EvalConfig and read_judgments are defined in eval.config / eval.records; they are listed here
# because `from eval.runner import EvalConfig, run_eval, read_judgments` is the documented entry.
__all__ = ["run_eval", "finish_run", "merge_rank_files", "EvalConfig", "read_judgments"]
