"""The studio's server side: paired generation, blind pairs, votes and their results.

`app.py` only wires Gradio components to a `Studio`; everything that decides something lives
here and beside it (`votes.py` the store, `prompts.py` the prompt pool, `results.py` and
`report.py` what the Results and Eval tabs show), so it can be tested without a browser.

Blindness. `Studio.new_battle` generates baseline and adapter from one seed in one batched pass,
draws the adapter's side with `secrets`, writes the battle (with the side) to the database and
hands back only the two images in left/right order, the prompt and the battle id. The seed is
not shown before the vote either: with the prompt and the seed anyone could regenerate the pair
on the Compare tab and tell the sides apart. After the vote, `Studio.vote` returns the stored
vote row, which names the sides (in survey mode only a receipt: see `AppConfig.reveal_sides`).

Voters. Who may vote on a pair, the rate limits of votes and of new pairs, and "your votes" are
keyed on the server's idea of the voter (`identity.VoterResolver`: account, else address),
never on Gradio's client-chosen session hash.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from typing import Any, Callable

from .checks import CheckStore, parse_checks
from .export import CsvExport
from .identity import Voter, VoterResolver
from ..inputs import check_number, check_text
from .inputs import check_preset_filter
from .markdown import md_escape
from .pair_judge import PairJudge
from .prompts import SuitePrompt, example_prompts, load_suites, vote_pool
from .spell import Spell, SpellBook
from .tally import Tally
from .votes import Battle, VoteStore, new_battle_id

log = logging.getLogger("surlib.app")

BATTLE_SEED_RANGE = 2**31
TOY_WORLD_PRESETS = ("toy",)  # presets whose model knows only the toy grammar (vocabulary hint, parsed spells)
ADAPTER_LABEL = "SUR-adapter"
BASELINE_LABEL = "baseline"


def _code(text: str) -> str:
    """Text as a Markdown code span (shown literally; a backtick would end it)."""
    return "`" + str(text).replace("`", "'") + "`"


# ----------------------------------------------------------------------------- the studio
class Studio:
    """One model, one vote store, the suites: what the app's handlers call."""

    def __init__(self, config, generate_pair: Callable, preset: str, base_model: str,
                 adapter_id: str, store: VoteStore | None = None, exporter=None,
                 suites: dict[str, list[SuitePrompt]] | None = None, preset_obj: Any = None,
                 default_eta: float | None = None, quick_eval: Any = None):
        self.config = config
        self._generate_pair = generate_pair
        self.preset = preset
        self.base_model = base_model
        self.adapter_id = adapter_id
        self.store = store or VoteStore(
            config.db_path, synchronous=config.sqlite_synchronous,
            votes_per_minute=config.votes_per_minute, votes_per_day=config.votes_per_day,
            battle_max_age_s=config.battle_max_age_s, pairs_per_minute=config.pairs_per_minute,
            pairs_per_day=config.pairs_per_day)
        self.exporter = exporter
        self.suites = load_suites(config.suites_dir) if suites is None else suites
        self.pool = vote_pool(self.suites, preset, config.vote_suites)
        self.default_steps, self.default_guidance = config.generation_defaults(preset_obj)
        self._salt = config.salt()
        # Survey integrity: server-decided voters, per-image checks (the judge's with each pair
        # where one runs), and the Results numbers cached by store version.
        self.voters = VoterResolver(self._salt, config.proxy_trust)
        self.checks = CheckStore(self.store)
        self.judge = PairJudge.for_setting(config.judge, preset)
        self.tally = Tally(self.store, self.checks, CsvExport(self.store.path))
        self.baseline_system = f"{preset}:{BASELINE_LABEL}"
        self.adapter_system = f"{preset}:sur-adapter"
        # Compare: the adapter's configured strength (the eta slider's default), the spells of
        # suite prompts and, in the toy world, of every prompt its grammar parses; Eval's Run.
        self.default_eta = default_eta
        self.toy_world = preset in TOY_WORLD_PRESETS
        self.spells = SpellBook(self.suites, toy_grammar=self.toy_world)
        if quick_eval is None:  # no pipeline to evaluate: the Eval tab says what to run instead
            from .quick_eval import QuickEval

            quick_eval = QuickEval(None, preset, config.runs_dir)
        self.quick_eval = quick_eval

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

        def generate_pair(prompt, seed, steps, guidance, negative_prompt=None, eta=None, spell=None):
            # eta and spell only when asked for: one batched pass either way (spell makes it three)
            extra = {k: v for k, v in (("eta", eta), ("spell", spell)) if v is not None}
            return pipe.generate_pair(prompt, seed=seed, steps=steps, guidance=guidance,
                                      negative_prompt=negative_prompt, **extra)

        if gpu is not None:
            generate_pair = gpu(generate_pair)
        base = preset_obj.base or getattr(pipe, "name", None) or config.preset
        adapter = os.environ.get("SUR_ADAPTER") or f"{config.preset}-sur-adapter"
        from .quick_eval import QuickEval

        eta = getattr(getattr(getattr(pipe, "adapter", None), "config", None), "eta", None)
        return cls(config, generate_pair, config.preset, str(base), str(adapter),
                   exporter=start_sync(config), preset_obj=preset_obj,
                   default_eta=None if eta is None else float(eta),
                   quick_eval=QuickEval(pipe, config.preset, config.runs_dir))

    # .......................................................................... helpers
    def voter(self, request: Any = None, profile: Any = None) -> Voter:
        """The voter behind a Gradio request (and OAuth profile, when sign-in is on)."""
        voter = self.voters.voter(request, profile if self.config.oauth else None)
        if self.config.require_login and voter.kind != "account":
            raise ValueError("sign in with Hugging Face first (the button at the top of the Vote tab): "
                             "this survey counts signed-in voters only")
        return voter

    def examples(self, k: int = 8) -> list[str]:
        return example_prompts(self.pool, k)

    def random_seed(self) -> int:
        return secrets.randbelow(BATTLE_SEED_RANGE)

    def check_request(self, prompt, seed, steps, guidance, negative_prompt=None):
        """This server's limits (inputs.py: the field, the problem, what is accepted), then
        validate_request; ValueError names the problem."""
        from ..pipeline import validate_request

        limit = self.config.max_prompt_chars
        if prompt is None or (isinstance(prompt, str) and not prompt.strip()):
            raise ValueError("prompt must be a non-empty string")
        prompt = check_text("prompt", prompt, limit)
        if negative_prompt is not None and not isinstance(negative_prompt, str):
            raise ValueError("negative prompt must be text")
        negative_prompt = check_text("negative prompt", negative_prompt, limit, required=False)
        if seed is None or (isinstance(seed, str) and not seed.strip()):
            raise ValueError("seed is empty: enter an integer or press the dice")
        steps = check_number("steps", steps, 1, self.config.max_steps, integer=True, where=" on this server")
        return validate_request(prompt, seed, steps, guidance, negative_prompt, max_prompt_chars=limit)

    # .......................................................................... compare
    def check_eta(self, eta) -> float | None:
        """The adapter strength of a request: None (the configured one) or a number in [0, 1]."""
        if eta is None or (isinstance(eta, str) and not eta.strip()):
            return None
        from ..adapter import check_eta

        return check_eta(eta)

    def compare(self, prompt, negative_prompt, seed, steps, guidance, eta=None, spell: str | None = None):
        """One paired generation (baseline and adapter from the same noise). `eta` sets the
        adapter's strength for this pair (0: the adapter image is the baseline); `spell` adds the
        base model given that prompt as ``images["spell"]``, in the same batch."""
        prompt, seed, steps, guidance, negative_prompt = self.check_request(
            prompt, seed, steps, guidance, negative_prompt)
        eta = self.check_eta(eta)
        extra = {k: v for k, v in (("eta", eta), ("spell", spell)) if v is not None}
        t0 = time.perf_counter()
        gen = self._generate_pair(prompt, seed, steps, guidance, negative_prompt, **extra)
        gen.timings.setdefault("total_s", time.perf_counter() - t0)
        gen.timings["wall_s"] = time.perf_counter() - t0
        return gen

    def spell_for(self, prompt) -> Spell | None:
        """The spell Compare shows a third image of (see `spell.SpellBook`), or None."""
        return self.spells.find(prompt)

    def spell_markdown(self, prompt, spell: Spell | None = None) -> str:
        """What the third image is, or why there is none."""
        spell = spell or self.spell_for(prompt)
        if spell is None:
            return self.spells.why_none(prompt) or ""
        return (f"**Third image: the base model given the spell** {_code(spell.text)} (from "
                f"{md_escape(spell.source)}): what the adapter aims to make of the plain prompt.")

    def prompt_hint(self, prompt) -> tuple[list, str]:
        """(highlighted prompt, markdown) under Compare's prompt box, updated as it is typed: the
        toy world marks the words its model does not know; every preset says what the spell is."""
        limit = self.config.max_prompt_chars
        if isinstance(prompt, str) and len(prompt) > limit:
            return [], f"The prompt is {len(prompt)} characters long; at most {limit} are accepted."
        spell = ""
        if isinstance(prompt, str) and prompt.strip():
            found = self.spell_for(prompt)
            spell = self.spells.why_none(prompt) if found is None else (
                f"Spell {_code(found.text)} (from {md_escape(found.source)}): **Generate** also shows the "
                "base model given it.")
        if not self.toy_world:
            return [], spell
        from .vocabulary import highlight, hint_markdown

        return highlight(prompt), hint_markdown(prompt) + (f"\n\n{spell}" if spell else "")

    def vocabulary_markdown(self) -> str:
        if self.toy_world:
            from .vocabulary import vocabulary_markdown

            return vocabulary_markdown()
        return (f"The `{self.preset}` preset reads any prompt (its text encoder has an open vocabulary), so no "
                "word list is shown; the toy preset shows what its model knows and marks the words it does not.")

    def timing_markdown(self, gen, eta: float | None = None) -> str:
        t = gen.timings
        shown = eta if eta is not None else self.default_eta
        eta_text = "" if shown is None else f", adapter strength eta {shown:g}"
        n = "all three images" if "spell" in gen.images else "both images"
        text = (f"Generated {n} in **{t.get('wall_s', t.get('total_s', 0.0)):.2f} s** "
                f"(one batched pass, seed {gen.seed}, {gen.steps} steps, guidance {gen.guidance:g}{eta_text}).")
        gate = getattr(gen, "gate", None)
        if gate == 0:
            text += (" The adapter's gate is **closed** for this prompt: it reads as one the base already "
                     "renders, so the adapter passed it unchanged and the two images are the same.")
        elif gate is not None:
            text += f" The adapter's gate is open ({gate:.2f}; closed, it would pass the prompt unchanged)."
        flagged = [v for v, hit in (getattr(gen, "nsfw", None) or {}).items() if hit]
        if flagged:
            text += f" The safety checker blanked: {', '.join(flagged)}."
        return text

    # .......................................................................... battles
    def pick_prompt(self, typed: str | None) -> SuitePrompt:
        """The voter's own prompt, or (empty) one drawn from the suites; a survey draws only."""
        text = check_text("prompt", typed, self.config.max_prompt_chars, required=False)
        if text and self.config.survey:
            raise ValueError("this survey draws its prompts from its suites: send an empty prompt "
                             "(typed prompts are off with SUR_MODE=survey)")
        if text:
            return SuitePrompt(text)
        return self.pool[secrets.randbelow(len(self.pool))]

    def new_battle(self, typed_prompt: str | None, voter: Voter | str):
        """(left image, right image, public info) of a fresh blind pair for `voter` (a Voter or
        its key); the sides stay here. The voter's pair limit is checked before generating."""
        key = voter.key if isinstance(voter, Voter) else str(voter)
        choice = self.pick_prompt(typed_prompt)
        self.store.check_pair_rate(key)
        seed = self.random_seed()
        gen = self.compare(choice.prompt, None, seed, self.default_steps, self.default_guidance)
        adapter_side = secrets.choice(("left", "right"))
        left, right = ((gen.images["adapter"], gen.images["baseline"]) if adapter_side == "left"
                       else (gen.images["baseline"], gen.images["adapter"]))
        systems = ((self.adapter_system, self.baseline_system) if adapter_side == "left"
                   else (self.baseline_system, self.adapter_system))
        battle = Battle(
            battle_id=new_battle_id(), created_at=time.time(), session=key,
            prompt=gen.prompt, seed=gen.seed, left_system=systems[0], right_system=systems[1],
            adapter_side=adapter_side, prompt_id=choice.prompt_id, suite=choice.suite,
            category=choice.category, steps=gen.steps, guidance=gen.guidance,
            negative_prompt=gen.negative_prompt, preset=self.preset, base_model=self.base_model,
            adapter_id=self.adapter_id)
        judged = self.judge.verdicts(gen.prompt, {"left": left, "right": right}) if self.judge else None
        self.checks.add_battle(battle, judged)
        public = {"battle_id": battle.battle_id, "prompt": battle.prompt, "category": battle.category,
                  "suite": battle.suite}
        return left, right, public

    @staticmethod
    def battle_markdown(public: dict) -> str:
        cat = f" · category *{md_escape(public['category'])}*" if public.get("category") else ""
        return f"**Prompt:** {md_escape(public['prompt'])}{cat}\n\nWhich image follows the prompt better?"

    def vote(self, battle_id, choice, voter: Voter | str) -> dict:
        """Store the vote (raises VoteError with a voter-facing message); returns the reveal, or
        in survey mode (`reveal_sides` off) a receipt without the sides."""
        key = voter.key if isinstance(voter, Voter) else str(voter)
        battle_id = check_text("battle_id", battle_id, 64)
        if choice is None:
            raise ValueError("choice is missing: send one of left, right, tie, both_bad")
        vote = self.store.record_vote(battle_id, choice, key)
        if self.exporter is not None:
            try:
                self.exporter.submit(vote)
            except Exception:  # never fail an acknowledged vote because of the export
                log.exception("vote export failed")
        if not self.config.reveal_sides:
            return {k: vote[k] for k in ("battle_id", "choice", "created_at")}
        return {k: vote[k] for k in ("battle_id", "choice", "adapter_side", "left_system",
                                     "right_system", "winner", "prompt", "seed", "category",
                                     "time_to_vote_s", "created_at")}

    def record_checks(self, battle_id, voter: Voter | str, **answers) -> dict:
        """Store the voter's per-image checks of a pair they voted on (`checks.FIELDS` as
        keywords: left_count ... right_action, each yes / no / unsure or empty); once per pair."""
        key = voter.key if isinstance(voter, Voter) else str(voter)
        battle_id = check_text("battle_id", battle_id, 64)
        rows = self.checks.record(battle_id, key, parse_checks(answers))
        stored = {f"{r['side']}_{r['attribute']}": r["verdict"] for r in rows}
        return {"battle_id": battle_id, "stored": stored}

    @staticmethod
    def side_label(system: str) -> str:
        return ADAPTER_LABEL if system.endswith(":sur-adapter") else BASELINE_LABEL

    def side_labels(self, reveal: dict) -> tuple[str, str]:
        """(left, right) page labels of a revealed pair: "SUR-adapter" or "baseline"."""
        return self.side_label(reveal["left_system"]), self.side_label(reveal["right_system"])

    def reveal_markdown(self, reveal: dict) -> str:
        if "left_system" not in reveal:  # survey mode: no sides
            return ("Thanks, vote stored. If you like, say below whether each picture got the count, "
                    "colour and action right; then press **Next pair**.")
        left, right = self.side_labels(reveal)
        picked = {"left": f"left ({left})", "right": f"right ({right})", "tie": "a tie",
                  "both_bad": "both bad"}[reveal["choice"]]
        return (f"Thanks, vote stored. **Left was {left}, right was {right}.** "
                f"You chose {picked}. (seed {reveal['seed']})\n\nPress **Next pair** for another one.")

    # .......................................................................... results
    def results(self, preset_filter: str | None = None, bt_rounds: int = 100, voter: Voter | None = None) -> dict:
        """Summary of the votes (one preset, or all with "all"/None), the per-image checks, the
        votes still needed, and the CSV (tally.py: recomputed only when votes changed); with
        `voter`, how many of the votes are theirs ("your_votes", "your_votes_all")."""
        preset = check_preset_filter(preset_filter)
        if preset is not None and preset not in self.known_presets():
            raise ValueError(f"unknown preset {preset!r}: choose all or one of "
                             f"{', '.join(sorted(self.known_presets()))}")
        summary = self.tally.summary(preset, bt_rounds)
        if voter is not None:
            summary["your_votes"] = self.store.vote_count(preset, session=voter.key)
            summary["your_votes_all"] = self.store.vote_count(session=voter.key)
            summary["voter_kind"] = voter.kind
        return summary

    def known_presets(self) -> set[str]:
        """Presets a Results filter may name: those with votes, this one, the registered ones."""
        from ..presets import PRESETS

        return set(self.store.presets()) | {self.preset} | set(PRESETS)

    def result_presets(self) -> list[str]:
        names = self.store.presets()
        return ["all"] + sorted(set(names) | {self.preset})


__all__ = ["Studio", "ADAPTER_LABEL", "BASELINE_LABEL"]
