"""SUR-adapter studio: compare baseline and SUR-adapter, vote blind, see the results and the eval.

UI wiring only: every decision lives in `surlib.studio` — `studio.Studio` (generation, blind
pairs, votes), `votes` (the SQLite store), `results` and `report` (what the Results and Eval tabs
show; the statistics are `eval.stats`) and `settings` (environment variables, see docs/app.md).

    python app.py                      # serves on GRADIO_SERVER_NAME:GRADIO_SERVER_PORT (0.0.0.0:7860)
    SUR_PRESET=sd15 python app.py      # a real model (GPU Space)

Public API (gradio_client): /generate, /random_seed, /new_battle, /vote, /checks, /results,
/eval_report (survey mode, SUR_MODE=survey: /new_battle, /vote, /checks, /results only).
No endpoint returns which side holds the adapter before that pair has been voted on.
"""

import functools
import logging
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
# uvicorn rewrites the client address from X-Forwarded-For for peers it trusts (127.0.0.1 by
# default): off, so that SUR_TRUSTED_PROXIES alone decides whose header counts (identity.py).
os.environ.setdefault("FORWARDED_ALLOW_IPS", "")

import gradio as gr  # noqa: E402

from surlib.studio.report import NO_REPORT, report_page  # noqa: E402
from surlib.studio.shipped_report import SHIPPED_DIR  # noqa: E402
from surlib.studio.checks import FIELDS, VERDICTS  # noqa: E402
from surlib.studio.results import CATEGORY_COLUMNS, CHECK_COLUMNS, results_page  # noqa: E402
from surlib.studio.settings import AppConfig, gpu_decorator  # noqa: E402
from surlib.studio.studio import Studio  # noqa: E402
from surlib.studio.survey import load_instructions  # noqa: E402
from surlib.studio.vocabulary import UNKNOWN, synonyms_markdown  # noqa: E402

log = logging.getLogger("surlib.app")

CSS = """
#battle-id textarea, #battle-id input {font-family: monospace; font-size: 0.8em;}
"""
# Generated images (Compare and Vote): one square box each, the picture scaled to fill it. The
# small presets make 64-px images: 320-px boxes, nearest-neighbour, so each pixel is a crisp
# 5x5 block; real models make 512 px and up: 448-px boxes, smoothly scaled. Only the page scales:
# the served file (and the download) keeps its own pixels.
SMALL_IMAGE_PRESETS = ("toy", "tiny")


def image_css(preset: str) -> str:
    box, rendering = (320, "pixelated") if preset in SMALL_IMAGE_PRESETS else (448, "auto")
    return (f".sur-images img {{image-rendering: {rendering}; width: {box}px; height: {box}px; "
            "max-width: 100%; object-fit: contain;}\n")

INTRO = """# SUR-adapter studio
SUR-adapter (ACM MM 2023) makes Stable Diffusion follow short, plain-language prompts.
**Compare** shows the baseline and the adapter from one paired generation (same seed, same noise);
**Vote** is a blind test; **Results** sums the votes up; **Eval** shows the latest automatic evaluation."""


def user_errors(fn):
    """Expected problems (bad input, refused votes: ValueError) become a gr.Error naming them;
    anything else is logged and reported without a traceback. The app stays up either way."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except ValueError as e:  # includes surlib.studio.votes.VoteError
            raise gr.Error(str(e), print_exception=False) from None
        except Exception:
            log.exception("handler %s failed", fn.__name__)
            raise gr.Error("Something went wrong on the server; please try again.") from None
    return wrapper


def image_pair(*labels_and_ids: tuple[str, str], hidden: tuple[str, ...] = ()) -> list[gr.Image]:
    """Output images side by side in one row, each in a square box of `image_css`'s size, equal
    heights. `hidden`: elem_ids that start invisible."""
    with gr.Row(elem_classes="sur-images", equal_height=True):
        return [gr.Image(label=label, type="pil", format="png", interactive=False, elem_id=elem_id,
                         visible=elem_id not in hidden)
                for label, elem_id in labels_and_ids]


VOTE_NOTE = ("Blind test: two images from the same prompt and seed, one from the baseline and one from "
             "SUR-adapter, in random order. Pick the one that follows the prompt better.")
REVEAL_NOTE = " The sides are revealed after your vote."
SURVEY_VOTE_NOTE = ("Two pictures from the same prompt, made by two systems in random order. Pick the one "
                    "that follows the prompt better, then (optional) say what each got right.")
CHECK_QUESTIONS = (("count", "Count right?"), ("color", "Colour right?"), ("action", "Action right?"))


def vote_tab(studio: Studio) -> None:
    """The Vote tab and its events: blind pairs, the four choices (outside the generation queue,
    `queue=False`), then optional per-image checks. Public API: /new_battle, /vote, /checks."""
    cfg = studio.config

    def lock_votes():
        return ([gr.update(interactive=False)] * 4 + [gr.update(value=""), gr.update(visible=False)]
                + [gr.update(value=None, interactive=True)] * 6
                + [gr.update(value=""), gr.update(interactive=True)])

    @user_errors
    def new_battle(prompt=None, request: gr.Request = None, profile: gr.OAuthProfile | None = None):
        left, right, public = studio.new_battle(prompt, studio.voter(request, profile))
        return left, right, studio.battle_markdown(public), public["battle_id"]

    def open_votes():
        return ([gr.update(interactive=True)] * 4
                + [gr.update(label="Left"), gr.update(label="Right"), gr.update(value="Next pair")])

    def vote_handler(choice):
        @user_errors
        def cast(battle_id, request: gr.Request, profile: gr.OAuthProfile | None):
            if not battle_id:
                raise gr.Error("No pair to vote on yet: press New pair first.", print_exception=False)
            reveal = studio.vote(battle_id, choice, studio.voter(request, profile))
            labels = [gr.update(), gr.update()]
            if "left_system" in reveal:  # sides revealed (not in survey mode)
                left, right = studio.side_labels(reveal)
                labels = [gr.update(label=f"Left: {left}"), gr.update(label=f"Right: {right}")]
            return ([studio.reveal_markdown(reveal)] + [gr.update(interactive=False)] * 4 + labels
                    + [gr.update(visible=True)])
        cast.__name__ = f"vote_{choice}"
        return cast

    @user_errors
    def save_checks(battle_id, left_count, left_color, left_action, right_count, right_color, right_action,
                    request: gr.Request, profile: gr.OAuthProfile | None):
        answers = dict(left_count=left_count, left_color=left_color, left_action=left_action,
                       right_count=right_count, right_color=right_color, right_action=right_action)
        stored = studio.record_checks(battle_id, studio.voter(request, profile), **answers)
        return (f"Checks saved ({len(stored['stored'])} answers). Thank you! Press **Next pair** for another one.",
                gr.update(interactive=False))

    @user_errors
    def vote(battle_id: str | None = None, choice: str | None = None, request: gr.Request = None,
             profile: gr.OAuthProfile | None = None) -> dict:
        """Vote on a pair from /new_battle. choice: left, right, tie or both_bad. Returns the
        stored vote (with the sides revealed, except in survey mode)."""
        return studio.vote(battle_id, choice, studio.voter(request, profile))

    @user_errors
    def checks(battle_id: str | None = None, left_count: str | None = None, left_color: str | None = None,
               left_action: str | None = None, right_count: str | None = None, right_color: str | None = None,
               right_action: str | None = None, request: gr.Request = None,
               profile: gr.OAuthProfile | None = None) -> dict:
        """Per-image checks of a pair you voted on: for each side, is the count / color / action
        right? Each yes, no, unsure or empty (no answer). Once per pair."""
        answers = dict(left_count=left_count, left_color=left_color, left_action=left_action,
                       right_count=right_count, right_color=right_color, right_action=right_action)
        return studio.record_checks(battle_id, studio.voter(request, profile), **answers)

    with gr.Tab("Vote", id="vote"):
        if cfg.oauth:
            gr.LoginButton(elem_id="login")
        gr.Markdown((SURVEY_VOTE_NOTE if cfg.survey else VOTE_NOTE) + (REVEAL_NOTE if cfg.reveal_sides else ""))
        with gr.Row():
            own_prompt = gr.Textbox(label="Your own prompt (optional; empty: a prompt from the test suites)",
                                    max_lines=2, scale=4, elem_id="vote-prompt", visible=not cfg.survey)
            next_btn = gr.Button("New pair", variant="primary", scale=1, elem_id="new-pair-btn")
        battle_md = gr.Markdown(elem_id="battle-prompt")
        left_img, right_img = image_pair(("Left", "img-left"), ("Right", "img-right"))
        with gr.Row():
            b_left = gr.Button("👈 Left is better", interactive=False, elem_id="vote-left")
            b_tie = gr.Button("🤝 Tie", interactive=False, elem_id="vote-tie")
            b_bad = gr.Button("👎 Both bad", interactive=False, elem_id="vote-both-bad")
            b_right = gr.Button("Right is better 👉", interactive=False, elem_id="vote-right")
        reveal_md = gr.Markdown(elem_id="reveal")
        with gr.Group(visible=False, elem_id="checks") as checks_box:
            gr.Markdown("**Optional:** for each picture, is this right? (*unsure* is fine; leave blank to skip)")
            radios = {}
            with gr.Row():
                for side in ("left", "right"):
                    with gr.Column():
                        for attr, question in CHECK_QUESTIONS:
                            radios[f"{side}_{attr}"] = gr.Radio(
                                list(VERDICTS), label=f"{side.capitalize()} picture: {question}",
                                elem_id=f"check-{side}-{attr}")
            save_btn = gr.Button("Save checks", elem_id="save-checks")
            checks_md = gr.Markdown(elem_id="checks-saved")
        battle_id = gr.Textbox(label="Pair id", interactive=False, max_lines=1, elem_id="battle-id",
                               visible=not cfg.survey)
        gr.api(vote, api_name="vote", queue=False)  # inside the tab: gr.Tabs holds only tabs
        gr.api(checks, api_name="checks", queue=False)

    vote_buttons = [b_left, b_tie, b_bad, b_right]
    check_radios = [radios[f] for f in FIELDS]
    next_btn.click(lock_votes, None, vote_buttons + [reveal_md, checks_box] + check_radios + [checks_md, save_btn],
                   api_visibility="private", queue=False) \
        .then(new_battle, [own_prompt], [left_img, right_img, battle_md, battle_id], api_name="new_battle",
              concurrency_limit=1, concurrency_id="generation") \
        .success(open_votes, None, vote_buttons + [left_img, right_img, next_btn],
                 api_visibility="private", queue=False)
    # Votes and checks never wait behind generations: queue=False serves them on Gradio's plain
    # HTTP route (the page's /run/predict, the API's /run/vote), outside the queue and its max_size.
    for button, choice in zip(vote_buttons, ("left", "tie", "both_bad", "right")):
        button.click(vote_handler(choice), [battle_id], [reveal_md] + vote_buttons + [left_img, right_img, checks_box],
                     api_visibility="private", queue=False)
    save_btn.click(save_checks, [battle_id] + check_radios, [checks_md, save_btn], api_visibility="private",
                   queue=False)


def results_tab(studio: Studio) -> None:
    """The Results tab and its events (public API: /results)."""

    @user_errors
    def results(preset=None, request: gr.Request = None, profile: gr.OAuthProfile | None = None):
        return results_page(studio.results(preset, voter=studio.voter(request, profile)))

    with gr.Tab("Results", id="results") as tab:
        with gr.Row():
            preset_dd = gr.Dropdown(choices=studio.result_presets(), value=studio.preset,
                                    label="Votes of preset", allow_custom_value=True, scale=3)
            refresh = gr.Button("Refresh", scale=1, elem_id="results-refresh")
        summary = gr.Markdown(elem_id="results-summary")
        plot = gr.Plot(label="Votes")
        table = gr.Dataframe(headers=CATEGORY_COLUMNS, interactive=False, label="By category")
        checks_table = gr.Dataframe(headers=CHECK_COLUMNS, interactive=False, elem_id="results-checks",
                                    label="Per-image checks: people and the automatic judge (— : none)")
        csv_file = gr.File(label="All votes (CSV)", interactive=False)
        with gr.Accordion("Numbers (JSON)", open=False):
            raw = gr.JSON()

    outputs = [summary, plot, table, csv_file, raw, checks_table]
    refresh.click(results, [preset_dd], outputs, api_name="results")
    tab.select(results, [preset_dd], outputs, api_visibility="private")


def finish_blocks(demo: gr.Blocks, cfg: AppConfig) -> gr.Blocks:
    """Blocks-level settings shared by both layouts: the queue (generation waits there; votes do
    not), and no REST shortcut around it (`api_open=False`: only queue=False events answer
    plain POSTs)."""
    demo.queue(max_size=cfg.queue_max_size, default_concurrency_limit=4, api_open=False)
    return demo


def build_survey_demo(studio: Studio) -> gr.Blocks:
    """SUR_MODE=survey: instructions, Vote and Results; no Compare (no labelled pairs, no
    /generate), no Eval."""
    cfg = studio.config
    with gr.Blocks(title="SUR-adapter survey", delete_cache=cfg.delete_cache) as demo:
        gr.Markdown(load_instructions(cfg.survey_instructions), elem_id="survey-instructions")
        with gr.Tabs():
            vote_tab(studio)
            results_tab(studio)
    return finish_blocks(demo, cfg)


def build_demo(studio: Studio) -> gr.Blocks:
    cfg = studio.config
    if cfg.survey:
        return build_survey_demo(studio)
    from surlib.presets import PRESETS

    description = PRESETS[studio.preset].description if studio.preset in PRESETS else ""

    # ------------------------------------------------------------------ handlers (thin)
    @user_errors
    def generate(prompt=None, negative_prompt=None, seed=None, steps=None, guidance=None, eta=None):
        # Defaults of None: a client that leaves an input out gets our message naming it.
        steps = studio.default_steps if steps is None else steps
        guidance = studio.default_guidance if guidance is None else guidance
        spell = studio.spell_for(prompt)
        gen = studio.compare(prompt, negative_prompt, seed, steps, guidance, eta=eta,
                             spell=spell.text if spell else None)
        base, ada, third = gen.images["baseline"], gen.images["adapter"], gen.images.get("spell")
        return (base, ada, (base, ada), studio.timing_markdown(gen, studio.check_eta(eta)), third,
                studio.spell_markdown(prompt, spell), f"Base model given the spell: {spell.text}" if third else "")

    def show_spell(label):  # the third image's box: shown, and labelled with its spell, when there is one
        return gr.update(visible=bool(label), label=label or "Base model given the spell")

    def prompt_hint(prompt):
        return studio.prompt_hint(prompt)

    def random_seed():
        return studio.random_seed()

    @user_errors
    def eval_report():
        return report_page(cfg.runs_dir, SHIPPED_DIR)

    @user_errors
    def run_quick_eval(progress=gr.Progress()):
        studio.quick_eval.run(lambda fraction, text: progress(fraction, desc=text))
        return report_page(cfg.runs_dir, SHIPPED_DIR)

    # ------------------------------------------------------------------ layout
    with gr.Blocks(title="SUR-adapter studio", delete_cache=cfg.delete_cache) as demo:
        gr.Markdown(INTRO + f"\n\nModel preset **{studio.preset}**: {description} "
                    f"(base `{studio.base_model}`, adapter `{studio.adapter_id}`).")
        with gr.Tabs():
            with gr.Tab("Compare", id="compare"):
                with gr.Row():
                    with gr.Column(scale=3):
                        prompt = gr.Textbox(label="Prompt", placeholder="three red robots jumping against a white wall",
                                            max_lines=3, elem_id="compare-prompt")
                        marks, hint = studio.prompt_hint("")
                        prompt_marks = gr.HighlightedText(
                            marks, label="Your prompt as the toy model reads it", show_legend=True,
                            color_map={UNKNOWN: "red"}, interactive=False, visible=studio.toy_world,
                            elem_id="prompt-marks")
                        prompt_hint_md = gr.Markdown(hint, elem_id="prompt-hint")
                        negative = gr.Textbox(label="Negative prompt (optional)", max_lines=2,
                                              elem_id="compare-negative")
                    with gr.Column(scale=2):
                        with gr.Row():
                            seed = gr.Number(label="Seed", value=0, step=1, elem_id="compare-seed")
                            dice = gr.Button("🎲 Random seed", size="sm", elem_id="random-seed")
                        with gr.Row():
                            steps = gr.Number(label=f"Steps (1–{cfg.max_steps})", value=studio.default_steps,
                                              step=1, elem_id="compare-steps")
                            guidance = gr.Number(label="Guidance (0–50)", value=studio.default_guidance,
                                                 step=0.5, elem_id="compare-guidance")
                        default_eta = 1.0 if studio.default_eta is None else studio.default_eta
                        eta_slider = gr.Slider(0.0, 1.0, value=default_eta, step=0.01, elem_id="compare-eta",
                                               label=f"Adapter strength eta (0 = baseline; trained at {default_eta:g})")
                        # What /generate reads: an unbounded number, so that a client's bad value gets
                        # Studio.check_eta's message rather than the slider's own type error.
                        eta = gr.Number(value=default_eta, label="eta (adapter strength, 0–1)", visible=False,
                                        elem_id="compare-eta-value")
                        gen_btn = gr.Button("Generate", variant="primary", elem_id="generate-btn")
                with gr.Accordion("What the model knows", open=studio.toy_world, elem_id="vocabulary"):
                    gr.Markdown(studio.vocabulary_markdown(), elem_id="vocabulary-text")
                    if studio.toy_world:
                        with gr.Accordion("Every synonym", open=False):
                            gr.Markdown(synonyms_markdown())
                timing = gr.Markdown(elem_id="timing")
                spell_md = gr.Markdown(elem_id="spell-note")
                img_base, img_ada, img_spell = image_pair(
                    ("Baseline", "img-baseline"), ("SUR-adapter", "img-adapter"),
                    ("Base model given the spell", "img-spell"), hidden=("img-spell",))
                slider = gr.ImageSlider(label="Slider: baseline ↔ SUR-adapter", type="pil", format="png",
                                        interactive=False, elem_id="img-slider", elem_classes="sur-images")
                examples = studio.examples()
                if examples:
                    gr.Examples(examples=[[e] for e in examples], inputs=[prompt], label="Example prompts")

            vote_tab(studio)
            results_tab(studio)

            with gr.Tab("Eval", id="eval") as eval_tab:
                with gr.Row():
                    reload_btn = gr.Button("Reload", elem_id="eval-reload", scale=1)
                    run_btn = gr.Button("Run a quick evaluation", variant="primary", scale=2,
                                        elem_id="eval-run", visible=studio.quick_eval.available)
                gr.Markdown(studio.quick_eval.description(), elem_id="eval-run-help")
                report_md = gr.Markdown(NO_REPORT, elem_id="eval-report")
                figures = gr.Gallery(label="Figures", columns=2, height="auto")

        # ------------------------------------------------------------------ events
        dice.click(random_seed, None, seed, api_name="random_seed", queue=False)
        eta_slider.change(None, [eta_slider], [eta], js="(value) => value")  # in the page, no server call
        gen_inputs = [prompt, negative, seed, steps, guidance, eta]
        spell_shown = gr.State("")  # the third image's label; not part of the API (clients get the image or None)
        gen_outputs = [img_base, img_ada, slider, timing, img_spell, spell_md, spell_shown]
        prompt.change(prompt_hint, [prompt], [prompt_marks, prompt_hint_md], api_visibility="private",
                      queue=False, show_progress="hidden")
        gen_btn.click(generate, gen_inputs, gen_outputs, api_name="generate",
                      concurrency_limit=1, concurrency_id="generation") \
            .success(show_spell, [spell_shown], [img_spell], api_visibility="private", queue=False)
        prompt.submit(generate, gen_inputs, gen_outputs, api_visibility="private",
                      concurrency_limit=1, concurrency_id="generation") \
            .success(show_spell, [spell_shown], [img_spell], api_visibility="private", queue=False)

        reload_btn.click(eval_report, None, [report_md, figures], api_name="eval_report")
        # One run at a time is QuickEval's lock (a second click gets its message, not a queue slot).
        run_btn.click(run_quick_eval, None, [report_md, figures], api_visibility="private", concurrency_limit=2,
                      concurrency_id="quick-eval")
        eval_tab.select(eval_report, None, [report_md, figures], api_visibility="private")

    return finish_blocks(demo, cfg)


def create_app(config: AppConfig | None = None, pipe=None) -> tuple[gr.Blocks, Studio]:
    """Load the model once and build the page (tests pass a config and, optionally, a pipeline)."""
    config = config or AppConfig.from_env()
    studio = Studio.from_config(config, pipe=pipe, gpu=gpu_decorator(config.gpu_duration))
    return build_demo(studio), studio


def launch_kwargs(config: AppConfig) -> dict:
    # Gradio 6: theme and css belong to launch(). The data dir (votes, salt) is never served.
    # show_error: our handlers already turn every exception into a message of their own (user_errors),
    # so this only lets Gradio's own refusals (e.g. too few inputs on a raw REST call) say what they are.
    return dict(server_name=config.server_name, server_port=config.server_port, theme=gr.themes.Soft(),
                css=CSS + image_css(config.preset), blocked_paths=[str(config.data_dir.resolve())], show_error=True)


def main() -> None:
    logging.basicConfig(level=os.environ.get("SUR_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    threads = os.environ.get("SUR_TORCH_THREADS")
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    config = AppConfig.from_env()
    log.info("starting: %r", config)
    demo, _ = create_app(config)
    demo.launch(**launch_kwargs(config))


if __name__ == "__main__":
    main()
