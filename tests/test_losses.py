"""The three losses, one by one, and the noise loss's gradient into the adapter (official defect #1)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from diffusers import DDPMScheduler, StableDiffusionPipeline

from surlib import SURAdapter
from surlib.losses import llm_distill_loss, min_snr_weights, noise_loss, quality_loss, sample_noise_and_timesteps
from surlib.training import Frozen, TextBatch, encode_prompts


class EchoUNet(torch.nn.Module):
    """Predicts a fixed tensor (plus 0 * the conditioning, to keep a graph), to check targets."""

    def __init__(self, prediction):
        super().__init__()
        self.prediction = prediction
        self.register_buffer("_dtype_probe", torch.zeros(()))

    @property
    def dtype(self):
        return self._dtype_probe.dtype

    def forward(self, noisy, t, cond):
        return SimpleNamespace(sample=self.prediction + 0 * cond.mean())


def _scheduler(kind="epsilon"):
    return DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, prediction_type=kind)


@pytest.mark.parametrize("kind", ["epsilon", "v_prediction"])
def test_noise_loss_target_follows_prediction_type(kind):
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(3, 4, 8, 8, generator=g)
    noise, t = sample_noise_and_timesteps(latents, 1000, generator=g)
    sched = _scheduler(kind)
    target = noise if kind == "epsilon" else sched.get_velocity(latents, noise, t)
    cond = torch.randn(3, 5, 16)
    assert noise_loss(EchoUNet(target), sched, latents, cond, noise, t).item() == pytest.approx(0.0, abs=1e-10)
    wrong = noise_loss(EchoUNet(torch.zeros_like(target)), sched, latents, cond, noise, t)
    assert wrong.item() == pytest.approx(target.pow(2).mean().item(), rel=1e-5)


@pytest.mark.parametrize("kind", ["epsilon", "v_prediction"])
def test_min_snr_weighting(kind):
    sched = _scheduler(kind)
    t = torch.tensor([1, 100, 500, 999])
    w = min_snr_weights(sched, t, gamma=5.0)
    a = sched.alphas_cumprod[t].double()
    snr = a / (1 - a)
    assert snr[0] > 5.0 > snr[-1]  # both sides of gamma are exercised
    # By hand: snr = a / (1 - a), so 1 / snr = (1 - a) / a and 1 / (snr + 1) = 1 - a.
    if kind == "epsilon":  # min(snr, 5) / snr: 5 (1 - a) / a where clipped, else 1
        expect = torch.where(snr > 5.0, 5.0 * (1 - a) / a, torch.ones_like(a))
    else:  # min(snr, 5) / (snr + 1): 5 (1 - a) where clipped, else a
        expect = torch.where(snr > 5.0, 5.0 * (1 - a), a)
    assert torch.allclose(w.double(), expect, rtol=1e-4)
    assert w[-1].item() == pytest.approx(1.0 if kind == "epsilon" else a[-1].item(), rel=1e-4)
    latents, noise = torch.randn(4, 4, 8, 8), torch.randn(4, 4, 8, 8)
    unet = EchoUNet(torch.zeros(4, 4, 8, 8))
    cond = torch.zeros(4, 2, 3)
    target = noise if kind == "epsilon" else sched.get_velocity(latents, noise, t)
    per_sample = target.pow(2).mean(dim=(1, 2, 3)).double()
    huge_gamma = noise_loss(unet, sched, latents, cond, noise, t, snr_gamma=1e9)
    # gamma above every SNR: weights 1 for epsilon, alphas_cumprod for a velocity target
    weights = torch.ones_like(a) if kind == "epsilon" else a
    assert huge_gamma.item() == pytest.approx((per_sample * weights).mean().item(), rel=1e-4)


def test_v_min_snr_starves_the_highest_noise_step_and_gamma_zero_turns_it_off():
    """Why `--snr-gamma 0` exists: with a velocity target, Min-SNR weights the steps near pure
    noise (where layout and count are decided) close to zero; 0 means plain MSE, every step alike."""
    sched = _scheduler("v_prediction")
    t = torch.tensor([999, 999])
    assert min_snr_weights(sched, t, gamma=5.0).max().item() < 0.01
    latents, noise = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    unet = EchoUNet(torch.zeros(2, 4, 8, 8))
    cond = torch.zeros(2, 2, 3)
    plain = noise_loss(unet, sched, latents, cond, noise, t)
    assert noise_loss(unet, sched, latents, cond, noise, t, snr_gamma=0).item() == plain.item()
    assert noise_loss(unet, sched, latents, cond, noise, t, snr_gamma=5.0).item() < 0.01 * plain.item()
    with pytest.raises(ValueError, match="snr_gamma must be > 0 for Min-SNR, or 0 / None for plain MSE; got -1"):
        noise_loss(unet, sched, latents, cond, noise, t, snr_gamma=-1)


def test_llm_distill_loss_pools_real_tokens_and_moves_only_the_student():
    torch.manual_seed(0)
    teacher = torch.randn(2, 8)
    hidden = teacher[:, None, :].repeat(1, 5, 1)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    hidden[0, 3:] = 20 * torch.randn(2, 8, generator=torch.Generator().manual_seed(0))  # pads must not count
    assert llm_distill_loss(hidden, teacher, mask).item() == pytest.approx(0.0, abs=1e-6)
    assert llm_distill_loss(hidden, teacher).item() > 1.0  # without the mask the pads dominate

    h = torch.randn(2, 5, 8, requires_grad=True)
    proj = torch.randn(2, 8, requires_grad=True)
    loss = llm_distill_loss(h, proj, mask, temperature=2.0)
    loss.backward()
    assert loss.item() > 0 and h.grad.abs().sum() > 0
    assert proj.grad is None  # the teacher is a target: it gets no gradient
    assert h.grad[0, 3:].abs().sum() == 0  # no gradient into padding
    # KL(teacher || student), times T^2
    p = torch.softmax(proj.detach() / 2, -1)
    q = torch.softmax((h.detach() * mask[..., None]).sum(1) / mask.sum(1, keepdim=True) / 2, -1)
    expect = (p * (p.log() - q.log())).sum(-1).mean() * 4
    assert loss.item() == pytest.approx(expect.item(), rel=1e-5)
    with pytest.raises(ValueError, match="expected hidden"):
        llm_distill_loss(torch.randn(2, 5, 8), torch.randn(2, 7))


def test_quality_loss_is_per_token_and_only_moves_the_adapter():
    complex_embeds = torch.randn(2, 6, 8, requires_grad=True)
    assert quality_loss(complex_embeds.detach().clone(), complex_embeds).item() == pytest.approx(0.0, abs=1e-6)
    adapted = torch.randn(2, 6, 8, requires_grad=True)
    loss = quality_loss(adapted, complex_embeds)
    loss.backward()
    assert adapted.grad.abs().sum() > 0 and complex_embeds.grad is None
    p = torch.softmax(complex_embeds.detach(), -1)
    q = torch.softmax(adapted.detach(), -1)
    assert loss.item() == pytest.approx((p * (p.log() - q.log())).sum((-1, -2)).mean().item(), rel=1e-5)
    doubled = quality_loss(adapted.detach().repeat(1, 2, 1), complex_embeds.detach().repeat(1, 2, 1))
    assert doubled.item() == pytest.approx(2 * loss.item(), rel=1e-5)  # summed over tokens (official scale)
    with pytest.raises(ValueError, match="same shape"):
        quality_loss(adapted, complex_embeds[:, :3])


@pytest.fixture(scope="module")
def frozen(sd1_base):
    return Frozen.from_pipeline(StableDiffusionPipeline.from_pretrained(sd1_base))


def _adapter_grads(frozen, official_detached: bool):
    torch.manual_seed(0)  # same fc init and dropout masks in both calls
    adapter = SURAdapter(text_dim=32, llm_dim=16, num_heads=4, ff_dim=64, init_seed=0).train()
    with torch.no_grad():  # a trained-looking fc (a fresh one is zero, so only fc itself would get gradient)
        adapter.fc.weight.normal_(0, 0.1)
    embeds, _ = encode_prompts(frozen.tokenizer, frozen.text_encoder, ["two red robots", "a cat"])
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(2, 4, 16, 16, generator=g)
    noise, t = sample_noise_and_timesteps(latents, 1000, generator=g)
    out = adapter(embeds).embeds
    loss = noise_loss(frozen.unet, frozen.noise_scheduler, latents, out, noise, t, official_detached=official_detached)
    if loss.requires_grad:
        loss.backward()
    return {n: p.grad for n, p in adapter.named_parameters()}, loss


def test_noise_loss_alone_trains_the_adapter_unless_officially_detached(frozen):
    assert all(not p.requires_grad for p in frozen.unet.parameters()) and not frozen.unet.training
    grads, loss = _adapter_grads(frozen, official_detached=False)
    assert loss.item() > 0
    for name in ("fc.weight", "attention.to_q.weight", "transformer.layers.0.linear1.weight"):
        assert grads[name] is not None and grads[name].abs().sum() > 0, name
    detached, loss_d = _adapter_grads(frozen, official_detached=True)
    assert loss_d.item() == pytest.approx(loss.item(), rel=1e-6)  # same value, no gradient path
    assert all(g is None or g.abs().sum() == 0 for g in detached.values())


def test_noise_loss_alone_lowers_itself_on_a_fixed_draw(frozen):
    adapter = SURAdapter(text_dim=32, llm_dim=16, num_heads=4, ff_dim=64, dropout=0.0, eta=0.5).train()
    embeds, _ = encode_prompts(frozen.tokenizer, frozen.text_encoder, ["two red robots", "a cat"])
    g = torch.Generator().manual_seed(1)
    latents = torch.randn(2, 4, 16, 16, generator=g)
    noise, t = sample_noise_and_timesteps(latents, 1000, generator=g)
    opt = torch.optim.Adam(adapter.parameters(), lr=1e-2)
    losses = []
    for _ in range(8):
        loss = noise_loss(frozen.unet, frozen.noise_scheduler, latents, adapter(embeds).embeds, noise, t)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_distillation_moves_the_adapter_and_leaves_the_teacher_projection_unchanged():
    """The official code froze the projection; if it trains, the KL can go to zero by moving the
    teacher side alone. Here only the adapter may move, and it does, lowering the KL."""
    from surlib.training.loop import AdapterWithTeacher

    adapter = SURAdapter(text_dim=32, llm_dim=16, num_heads=4, ff_dim=64, dropout=0.0, init_seed=0).train()
    module = AdapterWithTeacher(adapter)
    trainable = [n for n, p in module.named_parameters() if p.requires_grad]
    assert trainable and not any("llm_proj" in n for n in trainable)
    proj_before = adapter.llm_proj.weight.detach().clone()
    body_before = adapter.transformer.layers[0].linear1.weight.detach().clone()
    g = torch.Generator().manual_seed(0)
    embeds, feats = torch.randn(4, 6, 32, generator=g), torch.randn(4, 16, generator=g)
    mask = torch.ones(4, 6, dtype=torch.long)
    opt = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=1e-3)
    losses = []
    for _ in range(30):
        _, hidden, projected, _ = module(embeds, feats)
        loss = llm_distill_loss(hidden, projected, mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert torch.equal(adapter.llm_proj.weight, proj_before)
    assert (adapter.transformer.layers[0].linear1.weight - body_before).abs().max() > 1e-4
    assert losses[-1] < 0.5 * losses[0]
    # frozen after a save/load round trip too (requires_grad is not saved, the init sets it)
    assert not SURAdapter.from_config(adapter.config).llm_proj.weight.requires_grad


def test_identity_loss_is_relative_and_eta_squared_for_a_fresh_paper_form_adapter():
    from surlib.losses import identity_loss

    x = torch.randn(3, 5, 8, generator=torch.Generator().manual_seed(0))
    assert identity_loss(x.clone(), x).item() == pytest.approx(0.0, abs=1e-7)
    assert identity_loss(2 * x, x).item() == pytest.approx(1.0, rel=1e-6)
    fresh = SURAdapter(text_dim=8, llm_dim=4, num_heads=2, ff_dim=16, eta=0.1)
    assert identity_loss(fresh(x).embeds, x).item() == pytest.approx(0.01, rel=1e-5)
    residual = SURAdapter(text_dim=8, llm_dim=4, num_heads=2, ff_dim=16, eta=0.1, residual=True)
    assert identity_loss(residual(x).embeds, x).item() == 0.0
    assert identity_loss(x[:0], x[:0]).item() == 0.0
    with pytest.raises(ValueError, match="same shape"):
        identity_loss(x, x[:, :2])


def test_gate_loss_is_a_hinge_on_the_row_type():
    from surlib.losses import gate_loss

    scores = torch.tensor([-2.0, 0.0, 0.5, 3.0]).reshape(4, 1, 1)
    closed = torch.tensor([True, True, False, False])
    # closed rows want score <= -1: 0 and 1; open rows want >= +1: 0.5 and 0
    assert gate_loss(scores, closed).item() == pytest.approx((0 + 1 + 0.5 + 0) / 4)
    assert gate_loss(scores, closed, margin=0.0).item() == pytest.approx(0.0)
    assert gate_loss(scores[:0], closed[:0]).item() == 0.0
    s = scores.clone().requires_grad_(True)
    gate_loss(s, closed).backward()
    assert s.grad.flatten().tolist() == [0.0, 0.25, -0.25, 0.0]  # push closed rows down, open rows up


def test_gate_weight_trains_the_prompt_gate_to_sort_identity_rows_from_narrative_ones(frozen):
    """compute_losses with gate_weight: the gate term reaches the gate's parameters and a few steps
    close the gate on spell rows and open it on narrative ones."""
    from surlib.losses import LossWeights
    from surlib.training.loop import AdapterWithTeacher, compute_losses

    adapter = SURAdapter(text_dim=32, llm_dim=16, num_heads=4, ff_dim=64, dropout=0.0, residual=True,
                         gate="prompt").train()
    module = AdapterWithTeacher(adapter)
    simple, mask = encode_prompts(frozen.tokenizer, frozen.text_encoder, ["two crimson androids", "a kitten"] * 2)
    spells, _ = encode_prompts(frozen.tokenizer, frozen.text_encoder, ["2 robots, red", "1 cat"] * 2)
    text = TextBatch(simple, mask, spells)
    batch, params = {"pixel_values": torch.zeros(4, 3, 32, 32)}, torch.zeros(4, 8, 4, 4)
    weights = LossWeights(noise=0.0, llm=0.0, quality=0.0, identity=1.0, gate=1.0)
    opt = torch.optim.AdamW(adapter.gate_score.parameters(), lr=0.05)
    for step in range(60):
        torch.manual_seed(step)
        terms = compute_losses(module, frozen, batch, weights, latent_params=params, text=text, spell_fraction=0.5)
        opt.zero_grad()
        terms["total"].backward()
        opt.step()
    adapter.eval()
    with torch.no_grad():
        assert adapter.gates(spells).max() == 0.0  # the spells pass exactly
        assert adapter.gates(simple).min() > 0.7  # the narrative prompts are rewritten
    with pytest.raises(ValueError, match="gate_weight needs an adapter with a prompt gate"):
        compute_losses(AdapterWithTeacher(SURAdapter(text_dim=32, llm_dim=16, num_heads=4, ff_dim=64)), frozen,
                       batch, weights, latent_params=params, text=text, spell_fraction=0.5)


def test_spell_rows_feed_the_spell_to_the_adapter_and_take_the_identity_term(frozen):
    from surlib.losses import LossWeights
    from surlib.training.loop import AdapterWithTeacher, compute_losses

    adapter = SURAdapter(text_dim=32, llm_dim=16, num_heads=4, ff_dim=64, dropout=0.0, eta=0.1).train()
    module = AdapterWithTeacher(adapter)
    simple, mask = encode_prompts(frozen.tokenizer, frozen.text_encoder, ["two red robots", "a cat"])
    spells, _ = encode_prompts(frozen.tokenizer, frozen.text_encoder, ["2 robots, red", "1 cat"])
    batch = {"pixel_values": torch.zeros(2, 3, 32, 32)}
    params = torch.zeros(2, 8, 4, 4)  # VAE posterior (mean, logvar) of zeros
    w = LossWeights(noise=0.0, llm=1.0, quality=0.0, identity=1.0)
    feats = torch.randn(2, 16)
    torch.manual_seed(0)
    all_spells = compute_losses(module, frozen, batch, w, llm_features=feats, latent_params=params,
                                text=(simple, mask, spells), spell_fraction=1.0)
    # every row is a spell: a fresh adapter's identity term is eta^2 and no LLM term is taken
    assert all_spells["identity"].item() == pytest.approx(0.01, rel=1e-4)
    assert all_spells["llm"].item() == 0.0
    none = compute_losses(module, frozen, batch, w, llm_features=feats, latent_params=params,
                          text=(simple, mask, spells), spell_fraction=0.0)
    assert none["identity"].item() == 0.0 and none["llm"].item() > 0
    with pytest.raises(ValueError, match="complex prompts"):
        compute_losses(module, frozen, batch, w, latent_params=params, text=(simple, mask), spell_fraction=0.5)


def test_canonical_rows_feed_the_canonical_caption_and_share_one_draw_with_spell_rows(frozen):
    """One uniform draw per row decides spell, canonical or narrative; a canonical row's adapter
    input is its canonical caption, it takes the identity term and no LLM term."""
    from surlib.losses import LossWeights
    from surlib.training.loop import compute_losses

    class Recorder(torch.nn.Module):  # an identity "adapter" that keeps what it was given
        def forward(self, embeds, llm_features=None):
            self.seen = embeds.clone()
            return embeds, embeds, None if llm_features is None else embeds.mean(dim=1), None

    simple, mask = encode_prompts(frozen.tokenizer, frozen.text_encoder, ["two crimson androids", "a kitten",
                                                                           "five violet men", "a trio of bots"])
    spells, _ = encode_prompts(frozen.tokenizer, frozen.text_encoder, ["2 robots, red", "1 cat", "5 people", "3 robots"])
    canon, _ = encode_prompts(frozen.tokenizer, frozen.text_encoder, ["two red robots", "one cat",
                                                                       "five purple people", "three robots"])
    text = TextBatch(simple, mask, spells, canonical=canon)
    batch, params = {"pixel_values": torch.zeros(4, 3, 32, 32)}, torch.zeros(4, 8, 4, 4)
    w = LossWeights(noise=1.0, llm=0.0, quality=0.0, identity=1.0)
    module = Recorder()
    kinds = []
    for seed in range(12):
        torch.manual_seed(seed)
        terms = compute_losses(module, frozen, batch, w, latent_params=params, text=text,
                               spell_fraction=0.3, canonical_fraction=0.4)
        for i in range(4):  # every row is exactly one of the three
            (kind,) = [k for k, x in (("spell", spells), ("canonical", canon), ("narrative", simple))
                       if torch.equal(module.seen[i], x[i])]
            kinds.append(kind)
    assert all(kinds.count(k) >= 5 for k in ("spell", "canonical", "narrative")), kinds
    torch.manual_seed(0)
    compute_losses(module, frozen, batch, w, latent_params=params, text=text, spell_fraction=0.5,
                   canonical_fraction=0.5)
    assert all(torch.equal(module.seen[i], spells[i]) or torch.equal(module.seen[i], canon[i]) for i in range(4))
    assert terms["identity"].item() == 0.0  # the recorder changes nothing: identity is exact
    torch.manual_seed(0)
    compute_losses(module, frozen, batch, w, latent_params=params, text=text, canonical_fraction=1.0)
    assert torch.equal(module.seen, canon)
    torch.manual_seed(0)
    compute_losses(module, frozen, batch, w, latent_params=params, text=text, spell_fraction=0.0)
    assert torch.equal(module.seen, simple)  # no draw without a fraction: narrative rows only
    with pytest.raises(ValueError, match="no 'canonical' texts .*canonical_column"):
        compute_losses(module, frozen, batch, w, latent_params=params, text=(simple, mask, spells),
                       canonical_fraction=0.5)


def test_a_fresh_adapter_on_canonical_rows_scores_eta_squared_and_no_llm_term(frozen):
    from surlib.losses import LossWeights
    from surlib.training.loop import AdapterWithTeacher, compute_losses

    module = AdapterWithTeacher(SURAdapter(text_dim=32, llm_dim=16, num_heads=4, ff_dim=64, dropout=0.0, eta=0.1))
    simple, mask = encode_prompts(frozen.tokenizer, frozen.text_encoder, ["two crimson androids", "a kitten"])
    canon, _ = encode_prompts(frozen.tokenizer, frozen.text_encoder, ["two red robots", "one cat"])
    terms = compute_losses(module, frozen, {"pixel_values": torch.zeros(2, 3, 32, 32)},
                           LossWeights(noise=0.0, llm=1.0, quality=0.0, identity=1.0),
                           llm_features=torch.randn(2, 16), latent_params=torch.zeros(2, 8, 4, 4),
                           text=TextBatch(simple, mask, canonical=canon), canonical_fraction=1.0)
    assert terms["identity"].item() == pytest.approx(0.01, rel=1e-4)
    assert terms["llm"].item() == 0.0
