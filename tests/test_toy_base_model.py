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
