"""The studio's server side: paired generation, blind pairs, votes and their results.

`app.py` only wires Gradio components to a `Studio`; everything that decides something lives
here and beside it (`votes.py` the store, `prompts.py` the prompt pool, `results.py` and
`report.py` what the Results and Eval tabs show), so it can be tested without a browser.

Blindness. `Studio.new_battle` generates baseline and adapter from one seed in one batched pass,
draws the adapter's side with `secrets`, writes the battle (with the side) to the database and
hands back only the two images in left/right order, the prompt and the battle id. The seed is
not shown before the vote either: with the prompt and the seed anyone could regenerate the pair
on the Compare tab and tell the sides apart. After the vote, `Studio.vote` returns the stored
vote row, which names the sides.
"""

from __future__ import annotations

import logging
import os
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from eval.stats import summarize_votes

from .markdown import md_escape
from .prompts import SuitePrompt, example_prompts, load_suites, vote_pool
from .votes import Battle, VoteStore, hash_session, new_battle_id, write_csv

log = logging.getLogger("surlib.app")

BATTLE_SEED_RANGE = 2**31
ADAPTER_LABEL = "SUR-adapter"
BASELINE_LABEL = "baseline"


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
        adapter = os.environ.get("SUR_ADAPTER") or f"{config.preset}-sur-adapter"
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

    def side_labels(self, reveal: dict) -> tuple[str, str]:
        """(left, right) page labels of a revealed pair: "SUR-adapter" or "baseline"."""
        return self.side_label(reveal["left_system"]), self.side_label(reveal["right_system"])

    def reveal_markdown(self, reveal: dict) -> str:
        left, right = self.side_labels(reveal)
        picked = {"left": f"left ({left})", "right": f"right ({right})", "tie": "a tie",
                  "both_bad": "both bad"}[reveal["choice"]]
        return (f"Thanks, vote stored. **Left was {left}, right was {right}.** "
                f"You chose {picked}. (seed {reveal['seed']})\n\nPress **Next pair** for another one.")

    # .......................................................................... results
    def results(self, preset_filter: str | None = None, bt_rounds: int = 100) -> dict:
        """Summary of the votes (one preset, or all with "all"/None), and a CSV of them."""
        preset = None if preset_filter in (None, "", "all") else preset_filter
        votes = self.store.votes(preset)
        summary = summarize_votes(votes, bt_rounds=bt_rounds)
        out_dir = Path(tempfile.gettempdir()) / "sur-studio-exports"
        out_dir.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        csv_path = out_dir / f"sur-votes-{preset or 'all'}-{stamp}-{secrets.token_hex(3)}.csv"
        write_csv(csv_path, votes)
        summary["csv"] = str(csv_path)
        summary["preset"] = preset or "all"
        return summary

    def result_presets(self) -> list[str]:
        names = self.store.presets()
        return ["all"] + sorted(set(names) | {self.preset})


__all__ = ["Studio", "ADAPTER_LABEL", "BASELINE_LABEL"]
