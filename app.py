"""SUR-adapter studio: compare baseline and SUR-adapter, vote blind, see the results and the eval.

UI wiring only: every decision lives in `surlib.studio` — `studio.Studio` (generation, blind
pairs, votes), `votes` (the SQLite store), `results` and `report` (what the Results and Eval tabs
show; the statistics are `eval.stats`) and `settings` (environment variables, see docs/app.md).

    python app.py                      # serves on GRADIO_SERVER_NAME:GRADIO_SERVER_PORT (0.0.0.0:7860)
    SUR_PRESET=sd15 python app.py      # a real model (GPU Space)

Public API (gradio_client): /generate, /random_seed, /new_battle, /vote, /results, /eval_report.
No endpoint returns which side holds the adapter before that pair has been voted on.
"""

import functools
import logging
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402

from surlib.studio.report import NO_REPORT, report_page  # noqa: E402
from surlib.studio.results import CATEGORY_COLUMNS, results_page  # noqa: E402
from surlib.studio.settings import AppConfig, gpu_decorator  # noqa: E402
from surlib.studio.studio import Studio  # noqa: E402

log = logging.getLogger("surlib.app")

CSS = """
#battle-id textarea, #battle-id input {font-family: monospace; font-size: 0.8em;}
.sur-images img {image-rendering: pixelated;}
"""

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


def image_pair(*labels_and_ids: tuple[str, str]) -> list[gr.Image]:
    """Output images side by side in one row, shown pixelated (the tiny presets make 64 px)."""
    with gr.Row(elem_classes="sur-images"):
        return [gr.Image(label=label, type="pil", format="png", interactive=False, elem_id=elem_id)
                for label, elem_id in labels_and_ids]


def build_demo(studio: Studio) -> gr.Blocks:
    cfg = studio.config
    from surlib.presets import PRESETS

    description = PRESETS[studio.preset].description if studio.preset in PRESETS else ""

    # ------------------------------------------------------------------ handlers (thin)
    @user_errors
    def generate(prompt, negative_prompt, seed, steps, guidance):
        gen = studio.compare(prompt, negative_prompt, seed, steps, guidance)
        base, ada = gen.images["baseline"], gen.images["adapter"]
        return base, ada, (base, ada), studio.timing_markdown(gen)

    def random_seed():
        return studio.random_seed()

    def lock_votes():
        return [gr.update(interactive=False)] * 4 + [gr.update(value="")]

    @user_errors
    def new_battle(prompt, request: gr.Request):
        left, right, public = studio.new_battle(prompt, request.session_hash if request else None)
        return left, right, studio.battle_markdown(public), public["battle_id"]

    def open_votes():
        return ([gr.update(interactive=True)] * 4
                + [gr.update(label="Left"), gr.update(label="Right"), gr.update(value="Next pair")])

    def vote_handler(choice):
        @user_errors
        def cast(battle_id, request: gr.Request):
            if not battle_id:
                raise gr.Error("No pair to vote on yet: press New pair first.", print_exception=False)
            reveal = studio.vote(battle_id, choice, request.session_hash if request else None)
            left, right = studio.side_labels(reveal)
            return ([studio.reveal_markdown(reveal)] + [gr.update(interactive=False)] * 4
                    + [gr.update(label=f"Left: {left}"), gr.update(label=f"Right: {right}")])
        cast.__name__ = f"vote_{choice}"
        return cast

    @user_errors
    def vote(battle_id: str, choice: str, request: gr.Request) -> dict:
        """Vote on a pair from /new_battle. choice: left, right, tie or both_bad. Returns the
        revealed sides (after the vote is stored)."""
        return studio.vote(battle_id, choice, request.session_hash if request else None)

    @user_errors
    def results(preset):
        return results_page(studio.results(preset))

    @user_errors
    def eval_report():
        return report_page(cfg.runs_dir)

    # ------------------------------------------------------------------ layout
    with gr.Blocks(title="SUR-adapter studio") as demo:
        gr.Markdown(INTRO + f"\n\nModel preset **{studio.preset}**: {description} "
                    f"(base `{studio.base_model}`, adapter `{studio.adapter_id}`).")
        with gr.Tabs():
            with gr.Tab("Compare", id="compare"):
                with gr.Row():
                    with gr.Column(scale=3):
                        prompt = gr.Textbox(label="Prompt", placeholder="two red cats sitting", max_lines=3,
                                            elem_id="compare-prompt")
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
                        gen_btn = gr.Button("Generate", variant="primary", elem_id="generate-btn")
                timing = gr.Markdown(elem_id="timing")
                img_base, img_ada = image_pair(("Baseline", "img-baseline"), ("SUR-adapter", "img-adapter"))
                slider = gr.ImageSlider(label="Slider: baseline ↔ SUR-adapter", type="pil", format="png",
                                        interactive=False, elem_id="img-slider", elem_classes="sur-images")
                examples = studio.examples()
                if examples:
                    gr.Examples(examples=[[e] for e in examples], inputs=[prompt], label="Example prompts")

            with gr.Tab("Vote", id="vote"):
                gr.Markdown("Blind test: two images from the same prompt and seed, one from the baseline "
                            "and one from SUR-adapter, in random order. Pick the one that follows the "
                            "prompt better; the sides are revealed after your vote.")
                with gr.Row():
                    own_prompt = gr.Textbox(label="Your own prompt (optional; empty: a prompt from the "
                                                  "test suites)", max_lines=2, scale=4, elem_id="vote-prompt")
                    next_btn = gr.Button("New pair", variant="primary", scale=1, elem_id="new-pair-btn")
                battle_md = gr.Markdown(elem_id="battle-prompt")
                left_img, right_img = image_pair(("Left", "img-left"), ("Right", "img-right"))
                with gr.Row():
                    b_left = gr.Button("👈 Left is better", interactive=False, elem_id="vote-left")
                    b_tie = gr.Button("🤝 Tie", interactive=False, elem_id="vote-tie")
                    b_bad = gr.Button("👎 Both bad", interactive=False, elem_id="vote-both-bad")
                    b_right = gr.Button("Right is better 👉", interactive=False, elem_id="vote-right")
                reveal_md = gr.Markdown(elem_id="reveal")
                battle_id = gr.Textbox(label="Pair id", interactive=False, max_lines=1, elem_id="battle-id")

            with gr.Tab("Results", id="results") as results_tab:
                with gr.Row():
                    preset_dd = gr.Dropdown(choices=studio.result_presets(), value=studio.preset,
                                            label="Votes of preset", allow_custom_value=True, scale=3)
                    refresh = gr.Button("Refresh", scale=1, elem_id="results-refresh")
                summary = gr.Markdown(elem_id="results-summary")
                plot = gr.Plot(label="Votes")
                table = gr.Dataframe(headers=CATEGORY_COLUMNS, interactive=False, label="By category")
                csv_file = gr.File(label="All votes (CSV)", interactive=False)
                with gr.Accordion("Numbers (JSON)", open=False):
                    raw = gr.JSON()

            with gr.Tab("Eval", id="eval") as eval_tab:
                reload_btn = gr.Button("Reload", elem_id="eval-reload")
                report_md = gr.Markdown(NO_REPORT)
                figures = gr.Gallery(label="Figures", columns=2, height="auto")

        # ------------------------------------------------------------------ events
        vote_buttons = [b_left, b_tie, b_bad, b_right]
        dice.click(random_seed, None, seed, api_name="random_seed", queue=False)
        gen_inputs = [prompt, negative, seed, steps, guidance]
        gen_outputs = [img_base, img_ada, slider, timing]
        gen_btn.click(generate, gen_inputs, gen_outputs, api_name="generate",
                      concurrency_limit=1, concurrency_id="generation")
        prompt.submit(generate, gen_inputs, gen_outputs, api_visibility="private",
                      concurrency_limit=1, concurrency_id="generation")

        next_btn.click(lock_votes, None, vote_buttons + [reveal_md], api_visibility="private", queue=False) \
            .then(new_battle, [own_prompt], [left_img, right_img, battle_md, battle_id], api_name="new_battle",
                  concurrency_limit=1, concurrency_id="generation") \
            .success(open_votes, None, vote_buttons + [left_img, right_img, next_btn],
                     api_visibility="private", queue=False)
        for button, choice in zip(vote_buttons, ("left", "tie", "both_bad", "right")):
            button.click(vote_handler(choice), [battle_id], [reveal_md] + vote_buttons + [left_img, right_img],
                         api_visibility="private", concurrency_limit=None)
        gr.api(vote, api_name="vote", concurrency_limit=None)

        result_outputs = [summary, plot, table, csv_file, raw]
        refresh.click(results, [preset_dd], result_outputs, api_name="results")
        results_tab.select(results, [preset_dd], result_outputs, api_visibility="private")
        reload_btn.click(eval_report, None, [report_md, figures], api_name="eval_report")
        eval_tab.select(eval_report, None, [report_md, figures], api_visibility="private")

    demo.queue(max_size=cfg.queue_max_size, default_concurrency_limit=4)
    return demo


def create_app(config: AppConfig | None = None, pipe=None) -> tuple[gr.Blocks, Studio]:
    """Load the model once and build the page (tests pass a config and, optionally, a pipeline)."""
    config = config or AppConfig.from_env()
    studio = Studio.from_config(config, pipe=pipe, gpu=gpu_decorator(config.gpu_duration))
    return build_demo(studio), studio


def launch_kwargs(config: AppConfig) -> dict:
    # Gradio 6: theme and css belong to launch(). The data dir (votes, salt) is never served.
    return dict(server_name=config.server_name, server_port=config.server_port, theme=gr.themes.Soft(),
                css=CSS, blocked_paths=[str(config.data_dir.resolve())], show_error=False)


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
