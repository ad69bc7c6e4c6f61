"""SDXL bases: paired generation, training and the preset, on a tiny random SDXL built here.

The tiny SDXL has the real classes at toy sizes: a CLIP text encoder and a CLIP text encoder
with projection (32 + 32 = 64-wide concatenated token embeddings, as 768 + 1280 = 2048 in SDXL
base 1.0), a UNet with the "text_time" addition embedding, a VAE, the Euler scheduler. It is
saved with `save_pretrained` and loaded back through `SURPipeline.from_pretrained`, the preset
and the trainer's base loading, as users load a real one.
"""

from __future__ import annotations

import dataclasses
import json
import logging

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
from safetensors.torch import load_file
from test_data import make_surd_folder

import surlib.presets as presets
from surlib import SURAdapter, SURPipeline, load_preset
from surlib.bases import base_pipeline_class
from surlib.data import ImageTransform, SURDataset, collate
from surlib.losses import LossWeights
from surlib.tiny import build_tiny_sdxl
from surlib.training import Frozen, encode_batch_text, load_base, make_config, train
from surlib.training.loop import AdapterWithTeacher, compute_losses

PROMPT = "three white kittens playing with yarn"
STEPS = 3
PAIR_ATOL = 1e-4  # batch of two vs batch of one through the same CPU kernels
XL_WIDTH = 64     # 32 + 32
SDXL_ID = "stabilityai/stable-diffusion-xl-base-1.0"


@pytest.fixture(scope="module")
def sdxl_base(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("sdxl")
    build_tiny_sdxl(root / "work", text_dims=(32, 32), seed=0).save_pretrained(root / "base")
    return str(root / "base")


@pytest.fixture(scope="module")
def xl_adapter_folder(tmp_path_factory, new_adapter) -> str:
    folder = tmp_path_factory.mktemp("xl_adapter") / "adapter"
    new_adapter(XL_WIDTH, eta=0.25, init_seed=7).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def xl_pipe(sdxl_base, xl_adapter_folder, load_pipe) -> SURPipeline:
    """Shared tiny SDXL pipeline with a trained-looking 64-wide adapter. Do not mutate it."""
    return load_pipe(sdxl_base, xl_adapter_folder)


def _pair(pipe, seed=1, **kw):
    return pipe.generate_pair(PROMPT, seed=seed, steps=STEPS, output_type="np", **kw)


def _spy_unet(monkeypatch, unet) -> list[dict]:
    """Record what each UNet call receives (a test-only spy; the library never patches)."""
    seen, forward = [], unet.forward

    def spy(sample, timestep, encoder_hidden_states=None, *args, **kwargs):
        added = kwargs.get("added_cond_kwargs") or {}
        seen.append({"sample": sample.detach().clone(), "states": encoder_hidden_states.detach().clone(),
                     **{k: v.detach().clone() for k, v in added.items()}})
        return forward(sample, timestep, encoder_hidden_states, *args, **kwargs)

    monkeypatch.setattr(unet, "forward", spy)
    return seen


# ----------------------------------------------------------------------------------- loading
def test_the_base_loads_as_the_class_its_model_index_names(xl_pipe, sdxl_base, sd1_base, tmp_path):
    assert type(xl_pipe.sd) is StableDiffusionXLPipeline and xl_pipe.adapter.config.text_dim == XL_WIDTH
    assert xl_pipe.sd.unet.config.cross_attention_dim == XL_WIDTH
    assert xl_pipe.sd.unet.config.addition_embed_type == "text_time"
    assert base_pipeline_class(sdxl_base) is StableDiffusionXLPipeline
    assert base_pipeline_class(sd1_base) is StableDiffusionPipeline
    other = tmp_path / "other"
    other.mkdir()
    (other / "model_index.json").write_text(json.dumps({"_class_name": "KandinskyPipeline"}))
    with pytest.raises(ValueError, match="is a KandinskyPipeline .* pairs with StableDiffusionPipeline or "
                                         "StableDiffusionXLPipeline bases"):
        SURPipeline.from_pretrained(str(other), adapter=xl_pipe.adapter, device="cpu")


def test_an_adapter_of_another_width_is_refused_naming_both_widths(xl_pipe, new_adapter, sd1_pipe):
    with pytest.raises(ValueError) as info:
        SURPipeline(xl_pipe.sd, new_adapter(32))  # an SD-1-wide adapter on the SDXL base
    message = str(info.value)
    assert "adapter text width 32 does not match" in message and "width 64" in message
    assert "(32 + 32, concatenated)" in message and "2048 = SDXL" in message
    with pytest.raises(ValueError, match="adapter text width 64 does not match the base model's text encoder "
                                         "width 32"):
        SURPipeline(sd1_pipe.sd, new_adapter(XL_WIDTH))


# ----------------------------------------------------------------------------------- generation
@pytest.mark.parametrize("negative_prompt, guidance", [(None, 5.0), ("blurry, low quality", 5.0), (None, 1.0)])
def test_one_batch_identical_noise_pooled_kept_and_negative_never_adapted(xl_pipe, monkeypatch, negative_prompt,
                                                                           guidance):
    """What reaches the UNet: one batch of [negatives.., baseline, adapter], the same starting
    noise in every row, the negative rows as encoded, the adapter row adapted, and the prompt's
    own pooled vector (and the same time ids) on both images of the pair."""
    seen = _spy_unet(monkeypatch, xl_pipe.sd.unet)
    xl_pipe.generate_pair(PROMPT, seed=0, steps=2, guidance=guidance, negative_prompt=negative_prompt,
                          output_type="latent")
    monkeypatch.undo()
    assert len(seen) == 2  # Euler: one UNet call per step, the whole pair in it
    c = xl_pipe.conditioning(PROMPT, negative_prompt, guidance)
    with torch.no_grad():
        adapted = xl_pipe.adapter(c.embeds).embeds
    assert not torch.allclose(adapted, c.embeds, atol=1e-3)
    cfg = guidance > 1.0
    for call in seen:
        assert call["states"].shape == (4 if cfg else 2, 77, XL_WIDTH)
        states, pooled = (call["states"][2:], call["text_embeds"][2:]) if cfg else (call["states"], call["text_embeds"])
        if cfg:
            for row in range(2):
                assert torch.equal(call["states"][row], c.negative[0])
                assert torch.equal(call["text_embeds"][row], c.negative_pooled[0])
        assert torch.equal(states[0], c.embeds[0])
        torch.testing.assert_close(states[1], adapted[0], rtol=0, atol=1e-6)
        assert torch.equal(pooled[0], c.pooled[0]) and torch.equal(pooled[1], c.pooled[0])
        assert (call["time_ids"] == call["time_ids"][0]).all()
    first = seen[0]["sample"]
    assert all(torch.equal(row, first[0]) for row in first)  # identical starting noise
    if negative_prompt is None and cfg:  # SDXL's empty negative is zeros (force_zeros_for_empty_prompt)
        assert not c.negative.any() and not c.negative_pooled.any()
    if negative_prompt is not None:
        assert c.negative.abs().max() > 0.1


def test_pair_equals_single_generations_and_seeds_decide(xl_pipe):
    pair, again, other = _pair(xl_pipe, seed=4), _pair(xl_pipe, seed=4), _pair(xl_pipe, seed=5)
    assert pair.baseline.shape == (32, 32, 3) and pair.baseline.std() > 0.01
    assert pair.nsfw == {"baseline": False, "adapter": False}  # SDXL has no checker: never flagged
    for variant in ("baseline", "adapter"):
        single = xl_pipe.generate(PROMPT, variant=variant, seed=4, steps=STEPS, output_type="np")
        np.testing.assert_allclose(pair.images[variant], single.images[variant], rtol=0, atol=PAIR_ATOL)
        assert np.array_equal(pair.images[variant], again.images[variant])
        assert np.abs(pair.images[variant] - other.images[variant]).max() > 0.05
    assert np.abs(pair.adapter - pair.baseline).max() > 0.05


def test_eta_zero_is_the_baseline(xl_pipe, new_adapter):
    off = _pair(xl_pipe, seed=3, eta=0)
    np.testing.assert_allclose(off.adapter, off.baseline, rtol=0, atol=1e-6)
    default, explicit = _pair(xl_pipe, seed=3), _pair(xl_pipe, seed=3, eta=0.25)
    assert np.array_equal(default.adapter, explicit.adapter)
    np.testing.assert_allclose(off.baseline, default.baseline, rtol=0, atol=PAIR_ATOL)
    assert np.abs(_pair(xl_pipe, seed=3, eta=1.0).adapter - default.adapter).max() > 0.05
    zero = SURPipeline(xl_pipe.sd, new_adapter(XL_WIDTH, eta=0.0))
    zero.set_progress_bar_config(disable=True)
    gen = _pair(zero, seed=3)
    np.testing.assert_allclose(gen.adapter, gen.baseline, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="eta must be a number between 0 and 1"):
        _pair(xl_pipe, eta=1.5)


def test_batched_pairs_equal_one_pair_at_a_time(xl_pipe):
    prompts, seeds = [PROMPT, "a red robot jumping", PROMPT], [4, 9, 11]
    batch = xl_pipe.generate_pairs(prompts, seeds, steps=STEPS, output_type="np")
    assert [(g.prompt, g.seed) for g in batch] == list(zip(prompts, seeds))
    for prompt, seed, got in zip(prompts, seeds, batch):
        ref = xl_pipe.generate_pair(prompt, seed=seed, steps=STEPS, output_type="np")
        for variant in ("baseline", "adapter"):
            np.testing.assert_allclose(got.images[variant], ref.images[variant], rtol=0, atol=PAIR_ATOL)
    assert np.abs(batch[0].baseline - batch[2].baseline).max() > 0.05


def test_spell_is_the_base_given_the_spell_with_its_own_pooled_vector(xl_pipe, monkeypatch):
    spell = "a red robot jumping, masterpiece, best quality"
    seen = _spy_unet(monkeypatch, xl_pipe.sd.unet)
    with_spell = _pair(xl_pipe, seed=5, spell=spell)
    monkeypatch.undo()
    assert list(with_spell.images) == ["baseline", "adapter", "spell"]
    c = xl_pipe.conditioning([PROMPT, spell], None, 7.5)
    torch.testing.assert_close(seen[0]["text_embeds"][3:], c.pooled[[0, 0, 1]], rtol=0, atol=0)
    plain = _pair(xl_pipe, seed=5)
    for variant in ("baseline", "adapter"):
        np.testing.assert_allclose(with_spell.images[variant], plain.images[variant], rtol=0, atol=PAIR_ATOL)
    single = xl_pipe.generate(spell, variant="baseline", seed=5, steps=STEPS, output_type="np")
    np.testing.assert_allclose(with_spell.images["spell"], single.baseline, rtol=0, atol=PAIR_ATOL)
    assert np.abs(with_spell.images["spell"] - with_spell.baseline).max() > 0.05


# ----------------------------------------------------------------------------------- the preset
def test_the_sdxl_preset_needs_an_adapter_of_its_width(monkeypatch, tmp_path):
    preset = presets.PRESETS["sdxl"]
    assert (preset.base, preset.default_steps, preset.default_guidance, preset.text_dim) == (SDXL_ID, 30, 5.0, 2048)
    monkeypatch.delenv("SUR_ADAPTER", raising=False)
    with pytest.raises(ValueError, match=f"this preset \\({SDXL_ID}\\) has no published SUR-adapter yet.*SUR_ADAPTER"):
        load_preset("sdxl", device="cpu")
    sd15_wide = tmp_path / "sd15-adapter"
    SURAdapter(text_dim=768, llm_dim=8, num_layers=1, num_heads=4, ff_dim=16).save_pretrained(sd15_wide)
    monkeypatch.setenv("SUR_ADAPTER", str(sd15_wide))
    # Refused before the base is looked for (offline here, so a download attempt would fail otherwise).
    with pytest.raises(ValueError, match=f"adapter text width 768 does not match {SDXL_ID}'s text width 2048"):
        load_preset("sdxl", device="cpu")


def test_the_sdxl_preset_end_to_end_on_the_tiny_base(monkeypatch, sdxl_base, xl_adapter_folder):
    monkeypatch.setitem(presets.PRESETS, "sdxl", dataclasses.replace(presets.PRESETS["sdxl"], base=sdxl_base,
                                                                     text_dim=XL_WIDTH))
    monkeypatch.setenv("SUR_ADAPTER", xl_adapter_folder)
    pipe = load_preset("sdxl", device="cpu", dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    assert type(pipe.sd) is StableDiffusionXLPipeline and pipe.adapter.config.eta == 0.25
    assert pipe.generate_pair("a cat", seed=0, steps=1, output_type="np").adapter.shape == (32, 32, 3)
    calls = []
    monkeypatch.setattr(presets.SURPipeline, "from_pretrained", lambda base, **kw: calls.append(kw))
    load_preset("sdxl", device="cpu", dtype=torch.float16)
    load_preset("sdxl", device="cpu", dtype=torch.float32)
    assert calls[0]["variant"] == "fp16" and "variant" not in calls[1]  # the repo's fp16 files, in fp16 only


# ----------------------------------------------------------------------------------- training
def test_image_geometry_is_reported_for_the_size_conditioning():
    image = np.zeros((40, 48, 3), dtype=np.uint8)  # resized to 32 x 38, then cropped to 32 x 32
    done = ImageTransform(32, center_crop=True).apply(image)
    assert done.pixel_values.shape == (3, 32, 32) and done.original_size == (40, 48) and done.crop_top_left == (0, 3)
    assert torch.equal(done.pixel_values, ImageTransform(32, center_crop=True)(image))  # __call__ unchanged
    mirrored = 0
    for seed in range(12):
        plain = ImageTransform(32, center_crop=False).apply(image, torch.Generator().manual_seed(seed))
        turned = ImageTransform(32, center_crop=False, random_flip=True).apply(image,
                                                                                torch.Generator().manual_seed(seed))
        top, left = plain.crop_top_left
        assert top == 0 and 0 <= left <= 6
        # the same crop is drawn; a flip puts its left edge where the mirrored crop's is (38 - 32 - left)
        assert turned.crop_top_left in ((0, left), (0, 6 - left))
        mirrored += turned.crop_top_left == (0, 6 - left) and left != 3
    assert mirrored > 0


@pytest.fixture(scope="module")
def xl_rows(tmp_path_factory):
    """A SURD-style folder (40 x 48 images) and released-style vectors {simple prompt: tensor}."""
    root = tmp_path_factory.mktemp("xl_rows")
    folder = make_surd_folder(root / "data", n=6)
    texts = [json.loads(line)["text"] for line in (folder / "metadata.jsonl").read_text().splitlines()]
    gen = torch.Generator().manual_seed(0)
    torch.save({t: torch.randn(12, generator=gen) for t in texts}, root / "39.pt")
    return folder, root / "39.pt"


def test_losses_give_the_unet_the_rows_pooled_vectors_and_size_ids(sdxl_base, xl_rows, monkeypatch):
    """compute_losses on the SDXL base: the UNet gets the adapted tokens, the simple prompt's
    pooled vector (the spell's on spell rows) and each row's time ids; only the adapter gets
    gradients."""
    folder, _ = xl_rows
    sd = load_base(sdxl_base)
    assert type(sd) is StableDiffusionXLPipeline
    frozen = Frozen.from_pipeline(sd)
    assert frozen.text_dim == XL_WIDTH and len(frozen.text_encoders) == 2
    batch = collate([SURDataset(folder, resolution=32)[i] for i in range(3)])
    assert batch["original_size"].tolist() == [[40, 48]] * 3 and batch["crop_top_left"].tolist() == [[0, 3]] * 3
    module = AdapterWithTeacher(SURAdapter(text_dim=XL_WIDTH, llm_dim=12, num_heads=4, ff_dim=64))
    embeds, _, pooled, _ = sd.encode_prompt(batch["text"], device="cpu", do_classifier_free_guidance=False)
    _, _, complex_pooled, _ = sd.encode_prompt(batch["prompt"], device="cpu", do_classifier_free_guidance=False)
    for spell_fraction, expected_pooled in ((0.0, pooled), (1.0, complex_pooled)):
        seen = _spy_unet(monkeypatch, frozen.unet)
        terms = compute_losses(module, frozen, batch, LossWeights(1.0, 1.0, 1.0, 1.0),
                               llm_features=torch.randn(3, 12), spell_fraction=spell_fraction)
        monkeypatch.undo()
        assert len(seen) == 1 and torch.isfinite(terms["total"])
        assert torch.equal(seen[0]["text_embeds"], expected_pooled)
        assert seen[0]["time_ids"].tolist() == [[40, 48, 0, 3, 32, 32]] * 3
        if spell_fraction == 0.0:
            assert terms["llm"] > 0 and terms["quality"] > 0
            with torch.no_grad():
                torch.testing.assert_close(seen[0]["states"], module.adapter(embeds).embeds)
    text = encode_batch_text(frozen, batch)
    assert torch.equal(text.pooled, pooled) and torch.equal(text.complex_pooled, complex_pooled)
    assert text.mask.shape == (3, 77) and torch.equal(text.simple, embeds)
    terms["total"].backward()
    assert module.adapter.fc.weight.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for m in (frozen.unet, frozen.vae, *frozen.text_encoders)
               for p in m.parameters())
    # canonical rows: the canonical caption's tokens go to the adapter and its pooled vector to the UNet
    batch["canonical"] = [f"one plain picture of {t}" for t in batch["text"]]
    canonical, _, canonical_pooled, _ = sd.encode_prompt(batch["canonical"], device="cpu",
                                                         do_classifier_free_guidance=False)
    text = encode_batch_text(frozen, batch)
    assert torch.equal(text.canonical, canonical) and torch.equal(text.canonical_pooled, canonical_pooled)
    seen = _spy_unet(monkeypatch, frozen.unet)
    compute_losses(module, frozen, batch, LossWeights(1.0, 0.0, 0.0, 1.0), text=text, canonical_fraction=1.0)
    monkeypatch.undo()
    assert torch.equal(seen[0]["text_embeds"], canonical_pooled)
    with torch.no_grad():
        torch.testing.assert_close(seen[0]["states"], module.adapter(canonical).embeds)


def test_training_on_the_sdxl_base_with_released_vectors(sdxl_base, xl_rows, tmp_path, monkeypatch, caplog):
    """A few steps on the tiny SDXL with the SURD release's vector format: finite losses, the
    adapter moved, the frozen parts did not, and the saved adapter pairs with the base."""
    import surlib.training.loop as loop

    folder, vectors = xl_rows
    used = []
    monkeypatch.setattr(loop, "load_base", lambda base: used.append(load_base(base)) or used[-1])
    history = train(make_config(
        base=sdxl_base, data=str(folder), teacher_vectors=str(vectors), resolution=32, max_steps=4, batch_size=2,
        gradient_accumulation_steps=1, lr=1e-3, llm_weight=1.0, quality_weight=0.1, num_layers=1, num_heads=4,
        ff_dim=64, cache_latents=True, cache_text=True, output_dir=str(tmp_path / "run"), checkpoint_every=0,
        validate_every=3, validation_prompts=["two red robots"], validation_steps=1, plot_every=0,
        progress=False))
    assert [r["step"] for r in history] == [1, 2, 3, 4]  # step 4 reads the kept rows of epoch 1
    assert all(np.isfinite(r[k]) and r[k] > 0 for r in history for k in ("noise", "llm", "quality", "total"))
    saved = SURAdapter.from_pretrained(tmp_path / "run" / "adapter")
    assert (saved.config.text_dim, saved.config.llm_dim, saved.config.base_model) == (XL_WIDTH, 12, sdxl_base)
    fresh = SURAdapter(**{k: v for k, v in saved.config.items() if not k.startswith("_")})
    changed = [k for k, v in fresh.state_dict().items() if not torch.equal(v, saved.state_dict()[k])]
    assert "fc.weight" in changed and not any(k.startswith("llm_proj") for k in changed)
    for part in ("unet", "vae", "text_encoder", "text_encoder_2"):  # the trained-with parts equal the saved base
        on_disk = load_file(f"{sdxl_base}/{part}/" + ("model.safetensors" if "text" in part
                                                      else "diffusion_pytorch_model.safetensors"))
        live = getattr(used[0], part).state_dict()
        assert all(torch.equal(on_disk[k], live[k]) for k in on_disk), part
    assert (tmp_path / "run" / "validation" / "step-000003.png").exists()
    with caplog.at_level(logging.WARNING, logger="surlib.pipeline"):
        pipe = SURPipeline.from_pretrained(sdxl_base, adapter=str(tmp_path / "run" / "adapter"), device="cpu")
    assert not [r for r in caplog.records if r.name == "surlib.pipeline"]  # its own base: no warning
    pipe.set_progress_bar_config(disable=True)
    pair = pipe.generate_pair(PROMPT, seed=0, steps=2, output_type="np")
    assert np.abs(pair.adapter - pair.baseline).max() > 0  # the trained adapter changes the image


def test_the_sdxl_training_config_is_the_paper_recipe_on_sdxl():
    """train/configs/sdxl.yaml (the documented command) differs from the paper's SD 1.5 recipe
    only where SDXL does."""
    from pathlib import Path

    configs = Path(__file__).resolve().parents[1] / "train" / "configs"
    xl, paper = make_config(configs / "sdxl.yaml").to_dict(), make_config(configs / "paper.yaml").to_dict()
    differ = {k for k in xl if xl[k] != paper[k]}
    assert differ == {"base", "resolution", "teacher_vectors", "output_dir", "validation_steps", "validation_guidance"}
    assert (xl["base"], xl["resolution"], xl["teacher_vectors"]) == ("sdxl", 1024, "sur_data/39.pt")
    assert (xl["validation_steps"], xl["validation_guidance"]) == (presets.SDXL_STEPS, presets.SDXL_GUIDANCE)
