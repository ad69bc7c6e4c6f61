"""The studio's server side: paired generation, blind pairs, votes, results, the eval report.

`app.py` only wires Gradio components to a `Studio`; everything that decides something lives
here (and in `votes.py` / `preference.py`), so it can be tested without a browser.

Blindness. `Studio.new_battle` generates baseline and adapter from one seed in one batched pass,
draws the adapter's side with `secrets`, writes the battle (with the side) to the database and
hands back only the two images in left/right order, the prompt and the battle id. The seed is
not shown before the vote either: with the prompt and the seed anyone could regenerate the pair
on the Compare tab and tell the sides apart. After the vote, `Studio.vote` returns the stored
vote row, which names the sides.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import secrets
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from .votes import Battle, VoteStore, hash_session, new_battle_id

log = logging.getLogger("surlib.app")

BATTLE_SEED_RANGE = 2**31
ADAPTER_LABEL = "SUR-adapter"
BASELINE_LABEL = "baseline"

# Used when no suite file exists yet: short plain-language prompts, the adapter's use case.
BUILTIN_PROMPTS = (
    "two red cats sitting",
    "a blue robot waving",
    "three green birds flying",
    "a person running on the beach",
    "a yellow dog sleeping",
    "four orange balloons in the sky",
)


# ----------------------------------------------------------------------------- suites
@dataclass(frozen=True)
class SuitePrompt:
    prompt: str
    prompt_id: str | None = None
    suite: str | None = None
    category: str | None = None


def load_suites(folder: str | Path) -> dict[str, list[SuitePrompt]]:
    """{suite name: prompts} from `folder/*.jsonl` ("simple", else "prompt" field of each row).

    Tolerant: a missing folder gives {}, unreadable lines and rows without text are skipped."""
    folder = Path(folder)
    suites: dict[str, list[SuitePrompt]] = {}
    if not folder.is_dir():
        return suites
    for path in sorted(folder.glob("*.jsonl")):
        rows = []
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as e:
            log.warning("cannot read suite %s: %s", path, e)
            continue
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                log.warning("%s:%d is not JSON; skipped", path, n)
                continue
            if not isinstance(row, dict):
                continue
            text = row.get("simple") or row.get("prompt")
            if not isinstance(text, str) or not text.strip():
                continue
            pid = row.get("id", row.get("prompt_id"))
            cat = row.get("category")
            rows.append(SuitePrompt(text.strip(), str(pid) if pid is not None else f"{path.stem}:{n}",
                                    path.stem, str(cat) if cat is not None else None))
        if rows:
            suites[path.stem] = rows
    return suites


def vote_pool(suites: dict[str, list[SuitePrompt]], preset: str,
              wanted: Sequence[str] = ()) -> list[SuitePrompt]:
    """Prompts the Vote tab draws from: the suites named in `wanted`; else the toy suite for the
    offline presets (tiny/toy) and the other suites for real models; else all; else built-ins."""
    if wanted:
        pool = [p for name in wanted for p in suites.get(name, [])]
    elif preset in ("toy", "tiny") and "toy" in suites:
        pool = list(suites["toy"])
    else:
        pool = [p for name, rows in suites.items() if name != "toy" for p in rows] or \
               [p for rows in suites.values() for p in rows]
    return pool or [SuitePrompt(p, f"builtin:{i}", "builtin", None) for i, p in enumerate(BUILTIN_PROMPTS)]


def example_prompts(pool: Sequence[SuitePrompt], k: int = 8) -> list[str]:
    """Up to k distinct prompts, round-robin over categories so each kind shows up."""
    by_cat: dict[Any, list[str]] = {}
    for p in pool:
        by_cat.setdefault(p.category, [])
        if p.prompt not in by_cat[p.category]:
            by_cat[p.category].append(p.prompt)
    out: list[str] = []
    while len(out) < k and any(by_cat.values()):
        for rows in by_cat.values():
            if rows and len(out) < k:
                text = rows.pop(0)
                if text not in out:
                    out.append(text)
    return out


# ----------------------------------------------------------------------------- eval report
@dataclass
class EvalReport:
    path: Path
    markdown: str
    figures: list[Path]


_IMG = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def latest_report(runs_dir: str | Path, max_figures: int = 24, max_chars: int = 200_000) -> EvalReport | None:
    """The newest `runs_dir/*/report.md` (or `runs_dir/report.md`) with its PNG figures.

    Figures referenced by the markdown come first (in order), then other PNGs of the run folder;
    image links in the text are replaced by a caption, since the page shows the figures itself."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return None
    candidates = [p for p in list(runs_dir.glob("*/report.md")) + [runs_dir / "report.md"] if p.is_file()]
    if not candidates:
        return None
    path = max(candidates, key=lambda p: p.stat().st_mtime)
    text = path.read_text(encoding="utf-8", errors="replace")[:max_chars]
    folder = path.parent
    figures: list[Path] = []
    for _, ref in _IMG.findall(text):
        fig = (folder / ref).resolve()
        if fig.suffix.lower() == ".png" and fig.is_file() and fig.is_relative_to(folder.resolve()) \
                and fig not in figures:
            figures.append(fig)
    for fig in sorted(folder.rglob("*.png")):
        if fig.resolve() not in figures:
            figures.append(fig.resolve())
    text = _IMG.sub(lambda m: f"*(figure: {m.group(1) or Path(m.group(2)).name}, shown below)*", text)
    return EvalReport(path, text, figures[:max_figures])


NO_REPORT = (
    "No eval report yet. Make one with\n\n"
    "```bash\npython -m eval.run --preset toy --suite toy --seeds 4 --out runs/toy\n```\n\n"
    "then press **Reload**. The tab shows the newest `runs/*/report.md` "
    "(set `SUR_RUNS_DIR` to look elsewhere) and its figures."
)


# ----------------------------------------------------------------------------- the studio
class Studio:
    """One model, one vote store, the suites: what the app's handlers call."""

    def __init__(self, config, generate_pair: Callable, preset: str, base_model: str,
                 adapter_id: str, store: VoteStore | None = None, exporter=None,
                 suites: dict[str, list[SuitePrompt]] | None = None, preset_obj: Any = None):
        self.config = config
        self._generate_pair = generate_pair
        self.preset = preset
        self.base_model = base_model
        self.adapter_id = adapter_id
        self.store = store or VoteStore(
            config.db_path, synchronous=config.sqlite_synchronous,
            votes_per_minute=config.votes_per_minute, votes_per_day=config.votes_per_day,
            battle_max_age_s=config.battle_max_age_s)
        self.exporter = exporter
        self.suites = load_suites(config.suites_dir) if suites is None else suites
        self.pool = vote_pool(self.suites, preset, config.vote_suites)
        self.default_steps, self.default_guidance = config.generation_defaults(preset_obj)
        self._salt = config.salt()
        self.baseline_system = f"{preset}:{BASELINE_LABEL}"
        self.adapter_system = f"{preset}:sur-adapter"

    @classmethod
    def from_config(cls, config, pipe=None, gpu: Callable[[Callable], Callable] | None = None) -> "Studio":
        """Load the preset's model once and open the store (and the sync when configured)."""
        from ..presets import PRESETS, load_preset
        from .sync import start_sync

        if config.preset not in PRESETS:
            raise ValueError(f"SUR_PRESET={config.preset!r} is not a preset; available: {', '.join(sorted(PRESETS))}")
        preset_obj = PRESETS[config.preset]
        if pipe is None:
            t0 = time.perf_counter()
            pipe = load_preset(config.preset)
            log.info("loaded preset %s in %.1f s on %s", config.preset, time.perf_counter() - t0, pipe.device)
        try:
            pipe.set_progress_bar_config(disable=True)
        except Exception:  # a stand-in pipeline in tests
            pass

        def generate_pair(prompt, seed, steps, guidance, negative_prompt=None):
            return pipe.generate_pair(prompt, seed=seed, steps=steps, guidance=guidance,
                                      negative_prompt=negative_prompt)

        if gpu is not None:
            generate_pair = gpu(generate_pair)
        base = preset_obj.base or getattr(pipe, "name", None) or config.preset
        adapter = preset_obj.adapter or os.environ.get("SUR_ADAPTER") or f"{config.preset}-sur-adapter"
        return cls(config, generate_pair, config.preset, str(base), str(adapter),
                   exporter=start_sync(config), preset_obj=preset_obj)

    # .......................................................................... helpers
    def session(self, session_hash: str | None) -> str:
        return hash_session(session_hash, self._salt)

    def examples(self, k: int = 8) -> list[str]:
        return example_prompts(self.pool, k)

    def random_seed(self) -> int:
        return secrets.randbelow(BATTLE_SEED_RANGE)

    def check_request(self, prompt, seed, steps, guidance, negative_prompt=None):
        """validate_request plus the app's own limits; ValueError names the problem."""
        from ..pipeline import validate_request

        if negative_prompt is not None and not isinstance(negative_prompt, str):
            raise ValueError("negative prompt must be text")
        if isinstance(negative_prompt, str) and not negative_prompt.strip():
            negative_prompt = None
        if seed is None or (isinstance(seed, str) and not seed.strip()):
            raise ValueError("seed is empty: enter an integer or press the dice")
        prompt, seed, steps, guidance, negative_prompt = validate_request(
            prompt, seed, steps, guidance, negative_prompt, max_prompt_chars=self.config.max_prompt_chars)
        if steps > self.config.max_steps:
            raise ValueError(f"steps must be an integer between 1 and {self.config.max_steps} "
                             f"on this server, got {steps}")
        return prompt, seed, steps, guidance, negative_prompt

    # .......................................................................... compare
    def compare(self, prompt, negative_prompt, seed, steps, guidance):
        """One paired generation (baseline and adapter from the same noise)."""
        prompt, seed, steps, guidance, negative_prompt = self.check_request(
            prompt, seed, steps, guidance, negative_prompt)
        t0 = time.perf_counter()
        gen = self._generate_pair(prompt, seed, steps, guidance, negative_prompt)
        gen.timings.setdefault("total_s", time.perf_counter() - t0)
        gen.timings["wall_s"] = time.perf_counter() - t0
        return gen

    @staticmethod
    def timing_markdown(gen) -> str:
        t = gen.timings
        text = (f"Generated both images in **{t.get('wall_s', t.get('total_s', 0.0)):.2f} s** "
                f"(one batched pass, seed {gen.seed}, {gen.steps} steps, guidance {gen.guidance:g}).")
        flagged = [v for v, hit in (getattr(gen, "nsfw", None) or {}).items() if hit]
        if flagged:
            text += f" The safety checker blanked: {', '.join(flagged)}."
        return text

    # .......................................................................... battles
    def pick_prompt(self, typed: str | None) -> SuitePrompt:
        if typed is not None and not isinstance(typed, str):
            raise ValueError("prompt must be text")
        if typed and typed.strip():
            text = typed.strip()
            if len(text) > self.config.max_prompt_chars:
                raise ValueError(f"prompt is {len(text)} characters long; at most "
                                 f"{self.config.max_prompt_chars} are accepted")
            return SuitePrompt(text)
        return self.pool[secrets.randbelow(len(self.pool))]

    def new_battle(self, typed_prompt: str | None, session_hash: str | None):
        """(left image, right image, public info) of a fresh blind pair; the sides stay here."""
        choice = self.pick_prompt(typed_prompt)
        seed = self.random_seed()
        gen = self.compare(choice.prompt, None, seed, self.default_steps, self.default_guidance)
        adapter_side = secrets.choice(("left", "right"))
        left, right = ((gen.images["adapter"], gen.images["baseline"]) if adapter_side == "left"
                       else (gen.images["baseline"], gen.images["adapter"]))
        systems = ((self.adapter_system, self.baseline_system) if adapter_side == "left"
                   else (self.baseline_system, self.adapter_system))
        battle = Battle(
            battle_id=new_battle_id(), created_at=time.time(), session=self.session(session_hash),
            prompt=gen.prompt, seed=gen.seed, left_system=systems[0], right_system=systems[1],
            adapter_side=adapter_side, prompt_id=choice.prompt_id, suite=choice.suite,
            category=choice.category, steps=gen.steps, guidance=gen.guidance,
            negative_prompt=gen.negative_prompt, preset=self.preset, base_model=self.base_model,
            adapter_id=self.adapter_id)
        self.store.add_battle(battle)
        public = {"battle_id": battle.battle_id, "prompt": battle.prompt, "category": battle.category,
                  "suite": battle.suite}
        return left, right, public

    @staticmethod
    def battle_markdown(public: dict) -> str:
        cat = f" · category *{md_escape(public['category'])}*" if public.get("category") else ""
        return f"**Prompt:** {md_escape(public['prompt'])}{cat}\n\nWhich image follows the prompt better?"

    def vote(self, battle_id, choice, session_hash: str | None) -> dict:
        """Store the vote (raises VoteError with a voter-facing message); returns the reveal."""
        vote = self.store.record_vote(str(battle_id or "").strip(), choice, self.session(session_hash))
        if self.exporter is not None:
            try:
                self.exporter.submit(vote)
            except Exception:  # never fail an acknowledged vote because of the export
                log.exception("vote export failed")
        return {k: vote[k] for k in ("battle_id", "choice", "adapter_side", "left_system",
                                     "right_system", "winner", "prompt", "seed", "category",
                                     "time_to_vote_s", "created_at")}

    @staticmethod
    def side_label(system: str) -> str:
        return ADAPTER_LABEL if system.endswith(":sur-adapter") else BASELINE_LABEL

    def reveal_markdown(self, reveal: dict) -> str:
        left, right = self.side_label(reveal["left_system"]), self.side_label(reveal["right_system"])
        picked = {"left": f"left ({left})", "right": f"right ({right})", "tie": "a tie",
                  "both_bad": "both bad"}[reveal["choice"]]
        return (f"Thanks, vote stored. **Left was {left}, right was {right}.** "
                f"You chose {picked}. (seed {reveal['seed']})\n\nPress **Next pair** for another one.")

    # .......................................................................... results
    def results(self, preset_filter: str | None = None, bt_rounds: int = 100) -> dict:
        """Summary of the votes (one preset, or all with "all"/None), and a CSV of them."""
        from .preference import summarize

        preset = None if preset_filter in (None, "", "all") else preset_filter
        votes = self.store.votes(preset)
        summary = summarize(votes, bt_rounds=bt_rounds)
        out_dir = Path(tempfile.gettempdir()) / "sur-studio-exports"
        out_dir.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        csv_path = out_dir / f"sur-votes-{preset or 'all'}-{stamp}-{secrets.token_hex(3)}.csv"
        from .votes import write_csv

        write_csv(csv_path, votes)
        summary["csv"] = str(csv_path)
        summary["preset"] = preset or "all"
        return summary

    def result_presets(self) -> list[str]:
        names = self.store.presets()
        return ["all"] + sorted(set(names) | {self.preset})


_MD_SPECIAL = re.compile(r"([\\`*_\[\]#|<>~])")


def md_escape(text: str) -> str:
    """Show typed text literally in gr.Markdown (Gradio sanitises HTML; this stops formatting)."""
    return _MD_SPECIAL.sub(r"\\\1", str(text))


def finite_or_none(x):
    """JSON-friendly: NaN/inf → None (recursively)."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: finite_or_none(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [finite_or_none(v) for v in x]
    return x


__all__ = ["Studio", "SuitePrompt", "load_suites", "vote_pool", "example_prompts", "latest_report",
           "EvalReport", "NO_REPORT", "finite_or_none", "BUILTIN_PROMPTS"]
