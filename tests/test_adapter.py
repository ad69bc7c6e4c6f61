"""SURAdapter on its own: initialisation, the output formula, eval mode, per-prompt attention,
save/load, width checks, and that the noise loss's gradient reaches it through the UNet."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from surlib import SURAdapter

WIDTH = 32
TOKENS = 7


def _x(batch=2, width=WIDTH, seed=0):
    return torch.randn(batch, TOKENS, width, generator=torch.Generator().manual_seed(seed))


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_init_seed_makes_identical_adapters_and_leaves_global_rng_alone(new_adapter):
    torch.manual_seed(123)
    expected_draw = torch.rand(3)
    torch.manual_seed(123)
    a = new_adapter(init_seed=7, trained=False)
    draw_after = torch.rand(3)
    b = new_adapter(init_seed=7, trained=False)
    c = new_adapter(init_seed=8, trained=False)
    assert _same_weights(a, b)
    assert not _same_weights(a, c)
    assert not torch.equal(a.llm_proj.weight, c.llm_proj.weight)  # the LLM projection is seeded too
    assert torch.equal(draw_after, expected_draw), "building an adapter must not consume the global RNG"


def test_fresh_adapter_has_zero_fc_and_outputs_scaled_input(new_adapter):
    adapter = new_adapter(eta=0.1, trained=False)
    assert torch.count_nonzero(adapter.fc.weight) == 0 and torch.count_nonzero(adapter.fc.bias) == 0
    x = _x()
    out = adapter(x)
    assert torch.equal(out.embeds, 0.9 * x)
    assert out.hidden.shape == x.shape


def test_eta_zero_is_identity_even_when_trained(new_adapter):
    adapter = new_adapter(eta=0.0, trained=True)
    x = _x()
    assert torch.equal(adapter(x).embeds, x)


def test_output_is_eta_blend_of_fc_and_input(new_adapter):
    adapter = new_adapter(eta=0.3, trained=True)
    x = _x()
    with torch.no_grad():
        out = adapter(x)
        h = adapter.attention(out.hidden, x)
        expected = 0.3 * adapter.fc(h) + 0.7 * x
    torch.testing.assert_close(out.embeds, expected)
    assert (out.embeds - x).abs().max() > 1e-2  # a trained adapter really changes the embedding


def test_residual_form_starts_as_the_identity_and_adds_eta_fc(new_adapter):
    fresh = new_adapter(eta=0.1, trained=False, residual=True)
    x = _x()
    assert torch.equal(fresh(x).embeds, x)  # the paper's form gives 0.9 * x here
    adapter = new_adapter(eta=0.3, trained=True, residual=True)
    with torch.no_grad():
        out = adapter(x)
        expected = x + 0.3 * adapter.fc(adapter.attention(out.hidden, x))
        torch.testing.assert_close(out.embeds, expected)
        assert torch.equal(adapter(x, eta=0.0).embeds, x)
        # same weights, paper's form: a different map, so the form is part of the checkpoint
        paper = new_adapter(eta=0.3, trained=True)
        assert (paper(x).embeds - out.embeds).abs().max() > 1e-2


def test_residual_form_and_gate_round_trip_and_old_configs_load_in_the_paper_form(tmp_path, new_adapter):
    adapter = new_adapter(eta=0.2, residual=True)
    adapter.save_pretrained(tmp_path / "residual")
    assert json.loads((tmp_path / "residual" / "config.json").read_text())["residual"] is True
    loaded = SURAdapter.from_pretrained(tmp_path / "residual")
    x = _x()
    with torch.no_grad():
        assert loaded.config.residual is True and torch.equal(loaded(x).embeds, adapter(x).embeds)
    # an adapter saved before the option existed has no "residual" key: it is the paper's form
    paper = new_adapter(eta=0.2)
    paper.save_pretrained(tmp_path / "old")
    config = json.loads((tmp_path / "old" / "config.json").read_text())
    del config["residual"]
    (tmp_path / "old" / "config.json").write_text(json.dumps(config))
    old = SURAdapter.from_pretrained(tmp_path / "old")
    with torch.no_grad():
        assert old.config.residual is False and torch.equal(old(x).embeds, paper(x).embeds)
    # the gate's weights travel with the adapter
    gated = new_adapter(eta=0.2, residual=True, gate="prompt")
    with torch.no_grad():
        gated.gate_score.weight.normal_(generator=torch.Generator().manual_seed(3))
    gated.save_pretrained(tmp_path / "gated")
    with safe_open(str(tmp_path / "gated" / "diffusion_pytorch_model.safetensors"), framework="pt") as f:
        assert {"gate_score.weight", "gate_score.bias"} <= set(f.keys())
    again = SURAdapter.from_pretrained(tmp_path / "gated")
    with torch.no_grad():
        assert torch.equal(again(x).embeds, gated(x).embeds) and _same_weights(again, gated)
        assert again.config.gate == "prompt" and not torch.equal(again(x).embeds, x)


def test_token_gate_scales_each_tokens_change_and_a_closed_gate_passes_it_exactly(new_adapter):
    x = _x()
    fresh = new_adapter(trained=False, residual=True, gate="token")
    assert torch.equal(fresh(x).embeds, x)
    torch.testing.assert_close(fresh.gates(x), torch.full((2, TOKENS, 1), math.tanh(1.0)))
    ungated = new_adapter(eta=0.3, residual=True)
    gated = new_adapter(eta=0.3, residual=True, gate="token")
    with torch.no_grad():
        gated.gate_score.weight.copy_(x[0, 0] / x[0, 0].pow(2).sum() * -3.0)  # token 0 of prompt 0: w.x = -3
        gated.gate_score.bias.fill_(0.5)
        gates = gated.gates(x)
        out, plain = gated(x).embeds, ungated(x).embeds
    assert gates.shape == (2, TOKENS, 1)
    is_open = gates[..., 0] > 0
    assert not is_open[0, 0] and is_open.sum() >= 8 and gates.max() < 1
    assert torch.equal(out[0, 0], x[0, 0])  # closed: bit for bit the input
    torch.testing.assert_close(out, x + gates * (plain - x))
    assert (out - x).abs().amax(dim=-1)[is_open].min() > 1e-4  # the open tokens still change


def test_prompt_gate_opens_on_a_soft_max_of_its_tokens_and_passes_a_closed_prompt_whole(new_adapter):
    x = _x()
    ungated = new_adapter(eta=0.3, residual=True)
    gated = new_adapter(eta=0.3, residual=True, gate="prompt")
    with torch.no_grad():
        gated.gate_score.weight.copy_(x[1, 2] / x[1, 2].pow(2).sum() * 2.0)  # token 2 of prompt 1 scores high
        gated.gate_score.bias.fill_(-100.0)  # ...but not enough: every token closed
        assert gated.gates(x).shape == (2, 1, 1) and gated.gates(x).max() == 0.0
        assert torch.equal(gated(x).embeds, x)
        gated.gate_score.bias.fill_(0.0)  # prompt 1's token 2 scores 2: its whole prompt opens
        scores = gated.gate_score(x)
        gates = gated.gates(x)
        out, plain = gated(x).embeds, ungated(x).embeds
    soft_max = torch.logsumexp(scores[..., 0], dim=1) - math.log(TOKENS)
    torch.testing.assert_close(gates[:, 0, 0], torch.relu(torch.tanh(soft_max)))
    assert gates[1, 0, 0] > 0
    torch.testing.assert_close(out, x + gates * (plain - x))
    assert (out[1] - x[1]).abs().amax(dim=-1).min() > 1e-4  # every token of the open prompt changes


@pytest.mark.parametrize("gate", ["token", "prompt"])
def test_identity_rows_can_close_the_gate(new_adapter, gate):
    """What the gate is for: trained on prompts to leave alone, it closes on them and the output
    becomes exactly the input there, not just near it."""
    adapter = new_adapter(eta=0.3, residual=True, gate=gate).train()
    from surlib.losses import identity_loss

    x = _x(4)
    opt = torch.optim.AdamW(adapter.gate_score.parameters(), lr=0.05)
    for _ in range(100):
        opt.zero_grad()
        identity_loss(adapter(x).embeds, x).backward()
        opt.step()
    adapter.eval()
    with torch.no_grad():
        assert torch.equal(adapter(x).embeds, x)
        assert adapter.gates(x).max() == 0.0


def test_eval_mode_is_default_and_deterministic(new_adapter):
    adapter = new_adapter(dropout=0.5)
    assert not adapter.training
    x = _x()
    with torch.no_grad():
        first, second = adapter(x).embeds, adapter(x).embeds
        assert torch.equal(first, second)
        adapter.train()
        torch.manual_seed(0)
        dropped_1 = adapter(x).embeds
        dropped_2 = adapter(x).embeds
        assert not torch.equal(dropped_1, dropped_2), "dropout 0.5 in train mode should change outputs"
        adapter.eval()
        torch.testing.assert_close(adapter(x).embeds, first, rtol=0, atol=1e-6)


def test_attention_is_per_prompt_not_across_the_batch(new_adapter):
    """Official defect #2: batch_first=False made the transformer attend across the batch."""
    adapter = new_adapter()
    a, b = _x(1, seed=1), _x(1, seed=2)
    with torch.no_grad():
        alone = adapter(a)
        with_b = adapter(torch.cat([a, b]))
        b_first = adapter(torch.cat([b, a, b]))
    for batched in (with_b.embeds[:1], b_first.embeds[1:2]):
        torch.testing.assert_close(batched, alone.embeds, rtol=0, atol=1e-5)
    torch.testing.assert_close(with_b.hidden[:1], alone.hidden, rtol=0, atol=1e-5)


def test_tokens_of_one_prompt_do_attend_to_each_other(new_adapter):
    """The other half of defect #2: the transformer mixes a prompt's tokens (with the official
    layout and batch 1 every token only saw itself)."""
    adapter = new_adapter()
    x = _x(1)
    y = x.clone()
    y[0, -1] += 1.0  # change only the last token
    with torch.no_grad():
        hx, hy = adapter(x).hidden, adapter(y).hidden
    assert (hx[0, 0] - hy[0, 0]).abs().max() > 1e-4


def test_save_load_round_trip(tmp_path, new_adapter):
    adapter = new_adapter(eta=0.37, init_seed=11, base_model="tiny-sd1")
    adapter.save_pretrained(tmp_path)

    weights = tmp_path / "diffusion_pytorch_model.safetensors"
    assert weights.is_file()
    with safe_open(str(weights), framework="pt") as f:
        keys = set(f.keys())
    assert {"llm_proj.weight", "llm_proj.bias", "fc.weight"} <= keys
    assert not any(k.startswith("encoder_layer") or "value" in k for k in keys), "no unused layers saved"
    saved_config = json.loads((tmp_path / "config.json").read_text())
    assert saved_config["eta"] == 0.37 and saved_config["base_model"] == "tiny-sd1"

    loaded = SURAdapter.from_pretrained(tmp_path)
    public = lambda cfg: {k: v for k, v in dict(cfg).items() if not k.startswith("_")}  # noqa: E731
    assert public(loaded.config) == public(adapter.config)
    assert loaded.config.eta == 0.37
    assert _same_weights(loaded, adapter)
    assert not loaded.training
    x, llm = _x(), torch.randn(2, 16)
    with torch.no_grad():
        assert torch.equal(loaded(x).embeds, adapter(x).embeds)
        assert torch.equal(loaded.project_llm(llm), adapter.project_llm(llm))


def test_wrong_widths_are_refused_with_both_widths_named(new_adapter):
    adapter = new_adapter()
    with pytest.raises(ValueError, match=r"\(batch, tokens, 32\).*\(2, 7, 48\)"):
        adapter(_x(width=48))
    with pytest.raises(ValueError, match=r"\b32\b.*\b1024\b"):
        adapter.check_text_width(1024)
    adapter.check_text_width(WIDTH)  # the matching width passes
    with pytest.raises(ValueError, match=r"\b15\b.*llm_dim=16"):
        adapter.project_llm(torch.zeros(1, 15))


@pytest.mark.parametrize("kwargs, message", [
    (dict(eta=1.5), "eta"),
    (dict(eta=-0.1), "eta"),
    (dict(text_dim=30, num_heads=4), "divisible"),
    (dict(residual="yes"), "residual must be true or false, got 'yes'"),
    (dict(gate="tokens"), "gate must be one of None, 'token', 'prompt', got 'tokens'"),
])
def test_bad_configs_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SURAdapter(**{"text_dim": WIDTH, "llm_dim": 16, "num_heads": 4, "ff_dim": 64, **kwargs})


def test_casts_input_to_its_own_dtype(new_adapter):
    adapter = new_adapter().to(torch.float64)
    out = adapter(_x())
    assert out.embeds.dtype == torch.float64


def test_noise_loss_gradient_reaches_the_adapter_through_the_unet(sd1_base, sd1_pipe, new_adapter):
    """Official defect #1: `torch.tensor(...)` detached the conditioning, so the noise MSE never
    trained the adapter. Here the UNet is frozen and the gradient must still arrive."""
    from diffusers import DDPMScheduler, UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(sd1_base, subfolder="unet").requires_grad_(False)
    noise_scheduler = DDPMScheduler.from_pretrained(sd1_base, subfolder="scheduler")
    adapter = new_adapter(trained=True).train()  # trained-looking: a zero fc blocks the path to the body
    cond, _ = sd1_pipe.encode(["a red cat", "two dogs"], guidance=1.0)

    gen = torch.Generator().manual_seed(0)
    latents = torch.randn(2, 4, 16, 16, generator=gen)
    noise = torch.randn(latents.shape, generator=gen)
    timesteps = torch.tensor([10, 500])
    noisy = noise_scheduler.add_noise(latents, noise, timesteps)

    pred = unet(noisy, timesteps, encoder_hidden_states=adapter(cond).embeds).sample
    loss = torch.nn.functional.mse_loss(pred, noise)
    loss.backward()

    assert all(p.grad is None for p in unet.parameters())
    grads = {
        "fc.weight": adapter.fc.weight.grad,
        "attention.to_q.weight": adapter.attention.to_q.weight.grad,
        "attention.ff.0.weight": adapter.attention.ff[0].weight.grad,
        "transformer.layers.0.self_attn.in_proj_weight": adapter.transformer.layers[0].self_attn.in_proj_weight.grad,
        "transformer.layers.1.linear1.weight": adapter.transformer.layers[1].linear1.weight.grad,
    }
    for name, grad in grads.items():
        assert grad is not None and torch.isfinite(grad).all(), name
        assert grad.abs().sum() > 0, f"no gradient reached {name}"
    assert adapter.llm_proj.weight.grad is None  # not on the noise-loss path
