"""The toy base model's scheduler travels with its UNet: what the UNet predicts (noise or
velocity) is part of the weights, so loading must pick the shipped prediction type."""

import json

import pytest

from surlib.toy.base_model import ASSETS, build_scheduler, load_scheduler


def test_scheduler_comes_from_the_folder_else_epsilon(tmp_path):
    assert load_scheduler(tmp_path).config.prediction_type == "epsilon"
    build_scheduler("v_prediction").save_pretrained(tmp_path / "scheduler")
    loaded = load_scheduler(tmp_path)
    assert loaded.config.prediction_type == "v_prediction"
    assert loaded.config.beta_schedule == "squaredcos_cap_v2" and loaded.config.num_train_timesteps == 1000


@pytest.mark.skipif(not (ASSETS / "unet" / "config.json").exists(), reason="toy weights not trained")
def test_shipped_scheduler_matches_the_last_unet_training_run():
    runs = json.loads((ASSETS / "training.json").read_text())["unet"]
    assert load_scheduler(ASSETS).config.prediction_type == runs[-1].get("prediction_type", "epsilon")


@pytest.mark.skipif(not (ASSETS / "unet" / "config.json").exists(), reason="toy weights not trained")
def test_toy_preset_traces_its_unet_on_cpu_with_identical_images():
    import numpy as np
    from diffusers import UNet2DConditionModel

    from surlib.presets import load_preset
    from surlib.toy.traced_unet import TracedUNet

    pipe = load_preset("toy", device="cpu")
    pipe.set_progress_bar_config(disable=True)
    assert isinstance(pipe.sd.unet, TracedUNet)
    traced = pipe.generate_pair("two red cats sitting on the grass", seed=3, steps=3, output_type="np")
    assert len(pipe.sd.unet._traces) == 1
    plain = load_preset("toy", device="cpu", traced=False)
    plain.set_progress_bar_config(disable=True)
    assert type(plain.sd.unet) is UNet2DConditionModel
    eager = plain.generate_pair("two red cats sitting on the grass", seed=3, steps=3, output_type="np")
    for v in ("baseline", "adapter"):
        np.testing.assert_allclose(traced.images[v], eager.images[v], atol=1e-5)


def test_toy_base_eval_names_a_missing_model_folder(tmp_path, capsys):
    from eval import toy_base

    with pytest.raises(SystemExit) as exit_info:
        toy_base.main(["--model-dir", str(tmp_path), "--limit", "1"])
    assert exit_info.value.code == 2
    assert f"toy base model not found in {tmp_path} (missing vae, unet)" in capsys.readouterr().err


def test_shallow_minilm_keeps_the_first_layers_and_names_a_bad_depth():
    import torch

    from surlib.minilm import load_minilm

    full, tok = load_minilm()
    bare, _ = load_minilm(num_layers=0)
    one, _ = load_minilm(num_layers=1)
    assert (bare.config.num_hidden_layers, len(bare.encoder.layer), len(one.encoder.layer)) == (0, 0, 1)
    ids = tok(["3 robots, red", "a trio of crimson droids"], padding="max_length", return_tensors="pt")
    with torch.no_grad():
        states = full(**ids, output_hidden_states=True).hidden_states
        torch.testing.assert_close(bare(**ids).last_hidden_state, states[0])  # the embedding table alone
        torch.testing.assert_close(one(**ids).last_hidden_state, states[1])
    assert bare(**ids).last_hidden_state.shape == (2, 32, 384)
    with pytest.raises(ValueError, match="num_layers must be between 0 and 6 .* got 7"):
        load_minilm(num_layers=7)


def test_text_encoder_depth_travels_with_the_unet(tmp_path):
    from surlib.toy.base_model import save_text_encoder_layers, text_encoder_layers

    assert text_encoder_layers(tmp_path) == 6  # folders from before the file existed: whole MiniLM
    save_text_encoder_layers(tmp_path, 0)
    assert text_encoder_layers(tmp_path) == 0
    assert json.loads((tmp_path / "text_encoder.json").read_text())["num_hidden_layers"] == 0


@pytest.mark.skipif(not (ASSETS / "unet" / "config.json").exists(), reason="toy weights not trained")
def test_toy_preset_reads_prompts_with_the_depth_its_unet_was_trained_on():
    from surlib.presets import load_preset
    from surlib.toy.base_model import text_encoder_layers

    runs = json.loads((ASSETS / "training.json").read_text())["unet"]
    depth = text_encoder_layers(ASSETS)
    assert depth == runs[-1].get("text_layers", 6)
    assert len(load_preset("toy", device="cpu").sd.text_encoder.encoder.layer) == depth


def test_unet_training_continues_with_the_text_depth_of_its_starting_model(tmp_path):
    """`--init-from` a depth-0 UNet must keep encoding prompts with the embedding table alone
    (a silent switch back to the whole MiniLM would retrain the UNet on other inputs)."""
    import torch

    from surlib.minilm import load_minilm
    from surlib.toy.base_model import build_toy_unet, save_text_encoder_layers
    from train import train_toy_base

    build_toy_unet().save_pretrained(tmp_path / "start" / "unet")
    save_text_encoder_layers(tmp_path / "start", 0)
    train_toy_base.main(["unet", "--text-only", "--init-from", str(tmp_path / "start" / "unet"),
                         "--spells", "1", "--captions", "1", "--out", str(tmp_path / "out"),
                         "--work-dir", str(tmp_path / "work")])
    pool = torch.load(tmp_path / "work" / "text_pool_s0_1x1_L0.pt", weights_only=False)
    bare, tok = load_minilm(num_layers=0)
    ids = tok([pool["spell_text"][0][0], pool["caption_text"][0][0]], padding="max_length", return_tensors="pt")
    with torch.no_grad():
        want = bare(**ids).last_hidden_state.half()
    torch.testing.assert_close(pool["spell"][0, 0], want[0])
    torch.testing.assert_close(pool["caption"][0, 0], want[1])


def test_toy_base_eval_reports_count_accuracy_per_true_count():
    """The per-count breakdown is what locates the count errors (3 and 4 objects)."""
    from types import SimpleNamespace

    import numpy as np

    from eval.toy_base import evaluate
    from surlib.toy.suite import combination_rows

    rows = [r for r in combination_rows("test") if r["scene"].count == 1][:1] + \
        [r for r in combination_rows("test") if r["scene"].count == 3][:3]

    class FakeSD:
        def set_progress_bar_config(self, **_):
            pass

        def __call__(self, prompts, **_):
            return SimpleNamespace(images=np.zeros((len(prompts), 4, 4, 3)))

    class CountsOneJudge:  # reads every image as one object of the right everything else
        def __init__(self):
            self.calls = 0

        def judge(self, images):
            out = []
            for _ in images:
                r = rows[(self.calls // 2) % len(rows)]  # 2 seeds per row, rows in order
                out.append({"count": 1, "color": r["scene"].color, "action": r["scene"].action,
                            "kind": r["scene"].kind})
                self.calls += 1
            return out

    result = evaluate(FakeSD(), CountsOneJudge(), rows, seeds=2, languages=("complex",), batch=3)
    assert result["complex"]["count_by_n"] == {"1": 1.0, "3": 0.0}
    assert result["complex"]["count"] == pytest.approx(0.25)
    assert result["complex"]["color"] == 1.0 and result["complex"]["n"] == 8


def test_toy_base_eval_swaps_only_the_sampler():
    from types import SimpleNamespace

    from diffusers import DPMSolverMultistepScheduler

    from eval.toy_base import use_sampler

    sd = SimpleNamespace(scheduler=build_scheduler("v_prediction"))
    use_sampler(sd, "shipped")
    assert type(sd.scheduler).__name__ == "DDIMScheduler" and sd.scheduler.config.timestep_spacing == "leading"
    use_sampler(sd, "dpm++-trailing")
    assert isinstance(sd.scheduler, DPMSolverMultistepScheduler)
    assert sd.scheduler.config.timestep_spacing == "trailing"
    assert sd.scheduler.config.prediction_type == "v_prediction"
    assert sd.scheduler.config.beta_schedule == "squaredcos_cap_v2"
    with pytest.raises(ValueError, match=r"sampler must be one of \('shipped', 'ddim-trailing', 'dpm\+\+-trailing'\), got 'euler'"):
        use_sampler(sd, "euler")


def test_toy_base_training_refuses_a_negative_snr_gamma_before_any_work(tmp_path, capsys):
    from train import train_toy_base

    with pytest.raises(SystemExit) as exit_info:
        train_toy_base.main(["unet", "--snr-gamma", "-1", "--out", str(tmp_path / "out"),
                             "--work-dir", str(tmp_path / "work")])
    assert exit_info.value.code == 2
    assert "--snr-gamma must be > 0 for Min-SNR, or 0 for plain MSE; got -1.0" in capsys.readouterr().err
    assert not (tmp_path / "work").exists()
