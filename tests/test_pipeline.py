"""SURPipeline end to end on tiny random SD-1-style and SD-2-style bases loaded from disk."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from surlib import PRESETS, SURAdapter, SURPipeline, load_preset, validate_request

PROMPT = "three white kittens playing with yarn"
STEPS = 3
# Batch of two vs batch of one through the same CPU kernels: equal up to float rounding.
PAIR_ATOL = 1e-4


def _pair(pipe, seed=1, **kw):
    return pipe.generate_pair(PROMPT, seed=seed, steps=STEPS, output_type="np", **kw)


# ----------------------------------------------------------------------------------- loading
def test_loaded_pipelines_are_what_was_saved(sd1_pipe, sd2_pipe, adapter_folder):
    saved = SURAdapter.from_pretrained(adapter_folder)
    assert sd1_pipe.adapter.config.eta == 0.25
    assert all(torch.equal(v, sd1_pipe.adapter.state_dict()[k]) for k, v in saved.state_dict().items())
    assert not sd1_pipe.adapter.training
    assert sd1_pipe.components["adapter"] is sd1_pipe.adapter
    assert sd1_pipe.device.type == "cpu" and sd1_pipe.dtype == torch.float32
    assert sd1_pipe.sd.text_encoder.config.hidden_size == 32

    assert sd2_pipe.sd.text_encoder.config.hidden_size == 48 == sd2_pipe.adapter.config.text_dim
    assert type(sd2_pipe.sd.scheduler).__name__ == "DDIMScheduler"
    assert sd2_pipe.sd.scheduler.config.prediction_type == "v_prediction"
    assert sd2_pipe.sd.unet.config.use_linear_projection


def test_adapter_passed_in_train_mode_is_put_in_eval_mode(sd1_pipe, new_adapter):
    adapter = new_adapter(dropout=0.5).train()
    pipe = SURPipeline(sd1_pipe.sd, adapter)
    assert not pipe.adapter.training


@pytest.mark.parametrize("base, adapter_width", [("sd2_base", 32), ("sd1_base", 48)])
def test_width_mismatch_is_refused_naming_both_widths(request, load_pipe, new_adapter, base, adapter_width):
    base_width = 48 if base == "sd2_base" else 32
    with pytest.raises(ValueError) as info:
        load_pipe(request.getfixturevalue(base), new_adapter(adapter_width))
    message = str(info.value)
    assert f"adapter text width {adapter_width}" in message
    assert f"width {base_width}" in message


def test_safety_checker_can_be_left_out(sd1_base_with_checker, adapter_folder, load_pipe):
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker

    with_checker = load_pipe(sd1_base_with_checker, adapter_folder, safety_checker=True)
    assert isinstance(with_checker.sd.safety_checker, StableDiffusionSafetyChecker)  # the folder has one

    pipe = load_pipe(sd1_base_with_checker, adapter_folder, safety_checker=False)
    assert pipe.sd.safety_checker is None
    gen = pipe.generate_pair(PROMPT, seed=0, steps=1, output_type="np")
    assert gen.nsfw == {"baseline": False, "adapter": False}


# ----------------------------------------------------------------------------------- generation
def test_same_seed_same_images_other_seed_other_images(any_pipe):
    first, again, other = _pair(any_pipe, seed=1), _pair(any_pipe, seed=1), _pair(any_pipe, seed=2)
    for variant in ("baseline", "adapter"):
        assert np.array_equal(first.images[variant], again.images[variant]), variant
        assert np.abs(first.images[variant] - other.images[variant]).max() > 0.05, variant
    assert first.baseline.shape == (32, 32, 3) and first.baseline.std() > 0.01  # not a blank image


def test_pair_equals_single_generations(any_pipe):
    pair = _pair(any_pipe, seed=4)
    for variant in ("baseline", "adapter"):
        single = any_pipe.generate(PROMPT, variant=variant, seed=4, steps=STEPS, output_type="np")
        assert list(single.images) == [variant]
        np.testing.assert_allclose(pair.images[variant], single.images[variant], rtol=0, atol=PAIR_ATOL)
    # and the two images of the pair differ: the trained-looking adapter changes the result
    assert np.abs(pair.adapter - pair.baseline).max() > 0.05


def test_batched_pairs_equal_one_pair_at_a_time(any_pipe):
    """generate_pairs (what eval uses) must give each prompt/seed the images generate_pair gives,
    even for a stochastic scheduler and with the same prompt at two seeds in one batch."""
    prompts = [PROMPT, "a red robot jumping", PROMPT]
    seeds = [4, 9, 11]
    batch = any_pipe.generate_pairs(prompts, seeds, steps=STEPS, output_type="np")
    assert [(g.prompt, g.seed) for g in batch] == list(zip(prompts, seeds))
    assert all(g.timings["batch_pairs"] == 3 for g in batch)
    for prompt, seed, got in zip(prompts, seeds, batch):
        ref = any_pipe.generate_pair(prompt, seed=seed, steps=STEPS, output_type="np")
        for variant in ("baseline", "adapter"):
            np.testing.assert_allclose(got.images[variant], ref.images[variant], rtol=0, atol=PAIR_ATOL)
    assert np.abs(batch[0].baseline - batch[2].baseline).max() > 0.05  # other seed, other image


@pytest.mark.parametrize("prompts, seeds, message", [
    ("a cat", [1], "list of prompts"),
    (["a cat"], 1, "list of prompts"),
    ([], [], "at least one prompt"),
    (["a cat", "a dog"], [1], "got 2 prompts and 1 seeds"),
    (["a cat", "  "], [1, 2], "prompt must be a non-empty string"),
    (["a cat", "a dog"], [1, -2], "seed must be an integer"),
])
def test_generate_pairs_refuses_bad_batches(sd1_pipe, prompts, seeds, message):
    with pytest.raises(ValueError, match=message):
        sd1_pipe.generate_pairs(prompts, seeds, steps=1)


def test_eta_zero_adapter_reproduces_the_baseline(sd1_pipe, new_adapter):
    pipe = SURPipeline(sd1_pipe.sd, new_adapter(eta=0.0, trained=True))
    pipe.set_progress_bar_config(disable=True)
    cond, _ = pipe.encode(PROMPT)
    assert torch.equal(pipe.adapt(cond), cond)
    gen = _pair(pipe, seed=3)
    np.testing.assert_allclose(gen.adapter, gen.baseline, rtol=0, atol=1e-6)


def test_a_closed_prompt_gate_gives_the_baseline_and_the_generation_says_how_open_it_was(sd1_pipe, new_adapter):
    adapter = new_adapter(eta=0.5, trained=True, residual=True, gate="prompt")
    pipe = SURPipeline(sd1_pipe.sd, adapter)
    pipe.set_progress_bar_config(disable=True)
    with torch.no_grad():
        adapter.gate_score.bias.fill_(-100.0)
    closed = _pair(pipe, seed=3)
    assert closed.gate == 0.0
    np.testing.assert_array_equal(closed.adapter, closed.baseline)
    with torch.no_grad():
        adapter.gate_score.bias.fill_(100.0)
    opened = _pair(pipe, seed=3)
    assert opened.gate == pytest.approx(1.0) and np.abs(opened.adapter - opened.baseline).max() > 1e-3
    both = pipe.generate_pairs([PROMPT, "a cat"], [3, 4], steps=2, output_type="np")
    assert [g.gate for g in both] == pytest.approx([1.0, 1.0])
    assert _pair(sd1_pipe, seed=3).gate is None  # no gate, nothing to report


def test_eta_override_zero_is_the_baseline_and_the_config_value_is_the_default(sd1_pipe):
    configured = sd1_pipe.adapter.config.eta
    default, explicit, off = _pair(sd1_pipe, seed=3), _pair(sd1_pipe, seed=3, eta=configured), _pair(sd1_pipe, seed=3, eta=0)
    assert np.array_equal(default.adapter, explicit.adapter)
    np.testing.assert_allclose(off.adapter, off.baseline, rtol=0, atol=1e-6)
    np.testing.assert_allclose(off.baseline, default.baseline, rtol=0, atol=PAIR_ATOL)
    strong = _pair(sd1_pipe, seed=3, eta=1.0)
    assert np.abs(strong.adapter - default.adapter).max() > 0.05  # strength really changes the image


@pytest.mark.parametrize("eta", [-0.1, 1.5, float("nan"), "strong"])
def test_eta_out_of_range_is_refused(sd1_pipe, eta):
    with pytest.raises(ValueError, match="eta must be a number between 0 and 1"):
        _pair(sd1_pipe, eta=eta)


def test_spell_is_a_third_image_from_the_same_noise_and_batch(sd1_pipe):
    spell = "a red robot jumping, masterpiece, best quality"
    with_spell = _pair(sd1_pipe, seed=5, spell=spell)
    plain = _pair(sd1_pipe, seed=5)
    assert list(with_spell.images) == ["baseline", "adapter", "spell"]
    for variant in ("baseline", "adapter"):  # the extra row leaves the pair as it was
        np.testing.assert_allclose(with_spell.images[variant], plain.images[variant], rtol=0, atol=PAIR_ATOL)
    single = sd1_pipe.generate(spell, variant="baseline", seed=5, steps=STEPS, output_type="np")
    np.testing.assert_allclose(with_spell.images["spell"], single.baseline, rtol=0, atol=PAIR_ATOL)
    with pytest.raises(ValueError, match="spell must be a non-empty string"):
        _pair(sd1_pipe, spell="  ")


@pytest.mark.parametrize("negative_prompt, guidance", [(None, 7.5), ("blurry, low quality", 5.0), (None, 1.0)])
def test_only_the_conditional_embedding_is_adapted(sd1_pipe, monkeypatch, negative_prompt, guidance):
    """What reaches the UNet: the negative rows exactly as encoded, the conditional rows
    [cond, adapter(cond)] (official defect #2 mixed the two inside the adapter)."""
    unet = sd1_pipe.sd.unet
    seen = []
    original_forward = unet.forward

    def spy(sample, timestep, encoder_hidden_states, *args, **kwargs):
        seen.append(encoder_hidden_states.detach().clone())
        return original_forward(sample, timestep, encoder_hidden_states, *args, **kwargs)

    monkeypatch.setattr(unet, "forward", spy)
    sd1_pipe.generate_pair(PROMPT, seed=0, steps=2, guidance=guidance, negative_prompt=negative_prompt,
                           output_type="latent")
    monkeypatch.undo()

    assert len(seen) >= 2  # PNDM may call the UNet more than once a step; every call is checked
    cond, uncond = sd1_pipe.encode(PROMPT, negative_prompt, guidance)
    with torch.no_grad():
        adapted = sd1_pipe.adapter(cond).embeds
    assert not torch.allclose(adapted, cond, atol=1e-3)
    for states in seen:
        if guidance > 1.0:
            assert states.shape[0] == 4
            negatives, conditionals = states[:2], states[2:]
            for row in negatives:
                assert torch.equal(row, uncond[0]), "the negative embedding must reach the UNet unchanged"
        else:
            assert uncond is None and states.shape[0] == 2
            conditionals = states
        assert torch.equal(conditionals[0], cond[0])
        torch.testing.assert_close(conditionals[1], adapted[0], rtol=0, atol=1e-6)
    if negative_prompt is not None:  # an explicit negative is encoded, not the empty prompt
        assert not torch.equal(uncond, sd1_pipe.encode(PROMPT, None, guidance)[1])


def test_to_moves_and_casts_the_adapter_with_the_pipeline(sd1_base, adapter_folder, load_pipe, sd1_pipe):
    pipe = load_pipe(sd1_base, adapter_folder)
    reference = sd1_pipe.generate_pair(PROMPT, seed=5, steps=2, output_type="latent")

    pipe.to(dtype=torch.float64)
    assert pipe.adapter.dtype == torch.float64 == pipe.dtype == pipe.sd.text_encoder.dtype
    gen = pipe.generate_pair(PROMPT, seed=5, steps=2, output_type="latent")
    for variant in ("baseline", "adapter"):
        assert gen.images[variant].dtype == torch.float64
        torch.testing.assert_close(gen.images[variant].float(), reference.images[variant], rtol=1e-3, atol=1e-3)

    pipe.to(dtype=torch.bfloat16)
    assert pipe.adapter.dtype == torch.bfloat16 == pipe.dtype
    cond, _ = pipe.encode(PROMPT)
    assert cond.dtype == torch.bfloat16 and pipe.adapt(cond).dtype == torch.bfloat16
    pipe.to(device="cpu", dtype=torch.float32)
    assert pipe.adapter.dtype == torch.float32 and pipe.adapter.device.type == "cpu"


def test_default_output_is_pil_and_timings_are_reported(sd1_pipe):
    gen = sd1_pipe.generate_pair(PROMPT, seed=0, steps=1)
    assert set(gen.images) == {"baseline", "adapter"}
    assert gen.baseline.size == (32, 32) and gen.baseline.mode == "RGB"
    t = gen.timings
    assert set(t) == {"encode_s", "adapter_s", "denoise_s", "total_s"}
    assert all(v >= 0 for v in t.values())
    assert math.isclose(t["encode_s"] + t["adapter_s"] + t["denoise_s"], t["total_s"], rel_tol=1e-6)
    assert (gen.prompt, gen.seed, gen.steps, gen.guidance, gen.negative_prompt) == (PROMPT, 0, 1, 7.5, None)


# ----------------------------------------------------------------------------------- requests
@pytest.mark.parametrize("kwargs, field", [
    (dict(prompt=""), "prompt"),
    (dict(prompt="   "), "prompt"),
    (dict(prompt=None), "prompt"),
    (dict(prompt="x" * 1001), "prompt"),
    (dict(seed=-1), "seed"),
    (dict(seed="abc"), "seed"),
    (dict(seed=1.5), "seed"),
    (dict(seed=True), "seed"),
    (dict(seed=2**32), "seed"),
    (dict(seed=10**400), "seed"),            # too large for float(): still a clear ValueError
    (dict(guidance=10**400), "guidance"),
    (dict(prompt="a \ud800 cat"), "prompt"),  # a lone surrogate, which no tokenizer accepts
    (dict(steps=0), "steps"),
    (dict(steps=501), "steps"),
    (dict(steps=float("inf")), "steps"),
    (dict(guidance=float("nan")), "guidance"),
    (dict(guidance="lots"), "guidance"),
    (dict(guidance=-1), "guidance"),
    (dict(negative_prompt=3), "negative_prompt"),
])
def test_validate_request_names_the_bad_field(kwargs, field):
    request = {"prompt": "a cat", "seed": 0, "steps": 10, "guidance": 7.5, **kwargs}
    with pytest.raises(ValueError, match=rf"\b{field}\b"):
        validate_request(**request)


def test_validate_request_normalises_good_values():
    assert validate_request("  a cat ", "7", 10.0, "7.5", "") == ("a cat", 7, 10, 7.5, None)
    assert validate_request("a cat", 2**32 - 1, 500, 0, "blurry") == ("a cat", 2**32 - 1, 500, 0.0, "blurry")


def test_pipeline_validates_before_generating(sd1_pipe, monkeypatch):
    def must_not_run(*args, **kwargs):
        raise AssertionError("encoded a prompt for an invalid request")

    monkeypatch.setattr(sd1_pipe, "encode", must_not_run)
    monkeypatch.setattr(sd1_pipe, "conditioning", must_not_run)  # what generation encodes through
    with pytest.raises(ValueError, match="seed"):
        sd1_pipe.generate_pair(PROMPT, seed=-1)
    with pytest.raises(ValueError, match="steps"):
        sd1_pipe.generate(PROMPT, steps=0)
    with pytest.raises(ValueError, match="multiples of"):
        sd1_pipe.generate(PROMPT, height=30)


def test_unknown_variant_is_refused(sd1_pipe):
    with pytest.raises(ValueError, match=r"variant.*'baseline'.*'adapter'.*'both'"):
        sd1_pipe.generate(PROMPT, variant="both")


def test_unknown_preset_lists_the_available_ones():
    with pytest.raises(ValueError) as info:
        load_preset("nope")
    message = str(info.value)
    assert "'nope'" in message
    assert PRESETS and all(name in message for name in PRESETS)


def test_the_suite_runs_offline():
    import huggingface_hub.constants as hub

    assert hub.HF_HUB_OFFLINE, "HF_HUB_OFFLINE must be set before huggingface_hub is imported"
