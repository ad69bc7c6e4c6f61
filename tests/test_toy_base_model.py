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

    from surlib.presets import load_preset
    from surlib.traced_unet import untrace_unet

    pipe = load_preset("toy", device="cpu")
    pipe.set_progress_bar_config(disable=True)
    assert pipe.sd.unet._eager_forward is not None
    traced = pipe.generate_pair("two red cats sitting on the grass", seed=3, steps=3, output_type="np")
    assert len(pipe.sd.unet._traces) == 1
    untrace_unet(pipe.sd.unet)
    eager = pipe.generate_pair("two red cats sitting on the grass", seed=3, steps=3, output_type="np")
    for v in ("baseline", "adapter"):
        np.testing.assert_allclose(traced.images[v], eager.images[v], atol=1e-5)


def test_toy_base_eval_names_a_missing_model_folder(tmp_path, capsys):
    from eval import toy_base

    with pytest.raises(SystemExit) as exit_info:
        toy_base.main(["--model-dir", str(tmp_path), "--limit", "1"])
    assert exit_info.value.code == 2
    assert f"toy base model not found in {tmp_path} (missing vae, unet)" in capsys.readouterr().err
