"""surlib.convert: official SUR-adapter checkpoints (Qrange-group/SUR-adapter layout) -> SURAdapter.

The "official" state dicts here are built from plain torch modules with the official key names
and shapes; the reference forward is written out by hand from those tensors.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from surlib import SURAdapter, SURPipeline
from surlib.convert import PAPER_BASE, convert_official_state_dict, eta_from_path, load_official_adapter

HEADS = 8  # fixed in the official code


def official_state_dict(width=32, depth=2, ff=64, seed=0) -> dict[str, torch.Tensor]:
    """A state dict with the official names: an unused `encoder_layer`, `transformer_encoder`,
    `attention.{query,key,value}_layer`, `attention.output_layer` (Linear-ReLU-Linear), `fc`."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    root = nn.Module()
    root.encoder_layer = nn.TransformerEncoderLayer(width, HEADS, dim_feedforward=ff)  # batch_first=False
    root.transformer_encoder = nn.TransformerEncoder(root.encoder_layer, depth, enable_nested_tensor=False)
    root.attention = nn.Module()
    root.attention.query_layer = nn.Linear(width, width)
    root.attention.key_layer = nn.Linear(width, width)
    root.attention.value_layer = nn.Linear(width, width)
    root.attention.output_layer = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width))
    root.fc = nn.Linear(width, width)
    state = root.state_dict()
    # "Train" it: move every used weight away from its init (and away from the unused copy).
    for key, value in state.items():
        if not key.startswith("encoder_layer."):
            state[key] = value + 0.05 * torch.randn(value.shape, generator=gen)
    return state


def _layer(x, sd, p):
    """Post-norm nn.TransformerEncoderLayer (ReLU, eval) on one prompt's tokens x: (L, D)."""
    L, D = x.shape
    q, k, v = (x @ sd[p + "self_attn.in_proj_weight"].T + sd[p + "self_attn.in_proj_bias"]).chunk(3, dim=-1)
    heads = lambda t: t.reshape(L, HEADS, D // HEADS).transpose(0, 1)  # noqa: E731
    w = (heads(q) @ heads(k).transpose(-1, -2) / math.sqrt(D // HEADS)).softmax(-1)
    attn = (w @ heads(v)).transpose(0, 1).reshape(L, D)
    attn = attn @ sd[p + "self_attn.out_proj.weight"].T + sd[p + "self_attn.out_proj.bias"]
    x = F.layer_norm(x + attn, (D,), sd[p + "norm1.weight"], sd[p + "norm1.bias"])
    ff = F.relu(x @ sd[p + "linear1.weight"].T + sd[p + "linear1.bias"])
    ff = ff @ sd[p + "linear2.weight"].T + sd[p + "linear2.bias"]
    return F.layer_norm(x + ff, (D,), sd[p + "norm2.weight"], sd[p + "norm2.bias"])


def official_forward(x, sd, eta, depth=2):
    """The official math for one prompt x: (L, D), tokens as the sequence. Returns (out, h)."""
    lin = lambda t, name: t @ sd[name + ".weight"].T + sd[name + ".bias"]  # noqa: E731
    h = x
    for i in range(depth):
        h = _layer(h, sd, f"transformer_encoder.layers.{i}.")
    q, k = lin(h, "attention.query_layer"), lin(x, "attention.key_layer")
    weights = (q @ k.T / math.sqrt(x.shape[-1])).softmax(-1)
    mixed = weights @ x + x  # values are the input itself; value_layer is never used
    res = lin(F.relu(lin(mixed, "attention.output_layer.0")), "attention.output_layer.2") + mixed
    return eta * lin(res, "fc") + (1 - eta) * x, h


def _load(state, **kw):
    kw.setdefault("eta", 0.1)
    kw.setdefault("llm_dim", 16)
    with pytest.warns(UserWarning, match="llm_proj"):
        return load_official_adapter(state, **kw)


def test_keys_are_renamed_and_unused_layers_dropped():
    state = official_state_dict()
    converted = convert_official_state_dict(state)
    ours = SURAdapter(text_dim=32, llm_dim=16, ff_dim=64).state_dict()
    assert set(converted) == {k for k in ours if not k.startswith("llm_proj.")}
    assert torch.equal(converted["attention.to_q.weight"], state["attention.query_layer.weight"])
    assert torch.equal(converted["attention.ff.2.bias"], state["attention.output_layer.2.bias"])
    assert torch.equal(converted["transformer.layers.1.norm2.weight"],
                       state["transformer_encoder.layers.1.norm2.weight"])


def test_converted_adapter_reproduces_the_official_math_on_one_prompt():
    state = official_state_dict(seed=1)
    adapter = _load(state, eta=0.3)
    x = torch.randn(1, 9, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        out = adapter(x)
    expected, hidden = official_forward(x[0], state, eta=0.3)
    torch.testing.assert_close(out.hidden[0], hidden, rtol=0, atol=1e-5)
    torch.testing.assert_close(out.embeds[0], expected, rtol=0, atol=1e-5)
    assert (out.embeds[0] - x[0]).abs().max() > 1e-2  # the comparison is not trivially x == x


def test_batches_are_converted_per_prompt_not_as_the_official_code_ran():
    state = official_state_dict(seed=3)
    adapter = _load(state, eta=0.5)
    x = torch.randn(2, 9, 32, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        out = adapter(x).embeds
        for i in range(2):
            torch.testing.assert_close(out[i], official_forward(x[i], state, eta=0.5)[0], rtol=0, atol=1e-5)
        # The official module (batch_first=False) fed (1, L, D) treats the tokens as a batch of
        # sequences of length 1: each token only sees itself. The converter fixes that (defect 2).
        official_layout = nn.TransformerEncoder(nn.TransformerEncoderLayer(32, HEADS, 64), 2,
                                                enable_nested_tensor=False).eval()
        official_layout.load_state_dict({k[len("transformer_encoder."):]: v for k, v in state.items()
                                         if k.startswith("transformer_encoder.")})
        as_run = official_layout(x[:1])
        assert not torch.allclose(as_run, adapter(x[:1]).hidden, atol=1e-3)


def test_width_depth_and_feed_forward_are_read_from_the_weights():
    adapter = _load(official_state_dict(width=48, depth=3, ff=96), eta=0.2, llm_dim=24)
    cfg = adapter.config
    assert (cfg.text_dim, cfg.num_layers, cfg.ff_dim, cfg.num_heads, cfg.llm_dim) == (48, 3, 96, 8, 24)
    assert cfg.eta == 0.2 and not adapter.training
    assert adapter.llm_proj.weight.shape == (48, 24)


def test_eta_must_be_given():
    with pytest.raises(ValueError, match=r"eta is required.*adapter_weight"):
        load_official_adapter(official_state_dict())
    with pytest.raises(ValueError, match="eta"):
        load_official_adapter(official_state_dict(), eta=1.5, llm_dim=16)


def test_eta_is_read_from_a_path_that_carries_it(tmp_path):
    """The official scripts name the output folder ..._adapterw<eta>; the demo parses it from there."""
    folder = tmp_path / "runwayml_fp16" / "test_llm13B_llml39_lr1e-05_llmw1e-05_promptw1e-05_adapterw0.3"
    folder.mkdir(parents=True)
    torch.save(official_state_dict(), folder / "adapter_checkpoint1000.pt")
    assert eta_from_path(folder / "adapter_checkpoint1000.pt") == 0.3
    assert eta_from_path("a/adapterw1e-01/x.pt") == 0.1 and eta_from_path("adapter.pt") is None
    assert _load(folder / "adapter_checkpoint1000.pt", eta=None).config.eta == 0.3
    assert _load(folder / "adapter_checkpoint1000.pt", eta=0.5).config.eta == 0.5  # explicit wins
    assert _load(folder, eta=None, base_model=PAPER_BASE).config.base_model == PAPER_BASE
    torch.save(official_state_dict(), tmp_path / "adapter.pt")
    with pytest.raises(ValueError, match=r"eta is required.*no 'adapterw<eta>'.*0\.1"):
        load_official_adapter(tmp_path / "adapter.pt")


def test_a_truncated_or_foreign_file_is_refused(tmp_path):
    torch.save(official_state_dict(), tmp_path / "full.pt")
    data = (tmp_path / "full.pt").read_bytes()
    for name, content in (("cut.pt", data[: len(data) // 3]), ("empty.pt", b""), ("text.pt", b"<html>404</html>")):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match="corrupt or truncated") as info:
            load_official_adapter(tmp_path / name, eta=0.1, llm_dim=16)
        assert name in str(info.value)
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="not a state dict"):
        load_official_adapter(tmp_path / "list.pt", eta=0.1)


def test_llm_proj_keeps_the_seeded_init_and_warns():
    with pytest.warns(UserWarning, match="untrained"):
        adapter = load_official_adapter(official_state_dict(), eta=0.1, llm_dim=16, init_seed=4)
    fresh = SURAdapter(text_dim=32, llm_dim=16, ff_dim=64, init_seed=4)
    assert torch.equal(adapter.llm_proj.weight, fresh.llm_proj.weight)


def test_unknown_keys_are_listed():
    state = official_state_dict()
    state["attention.gate.weight"] = torch.zeros(3)
    state["transformer_encoder.layers.0.norm3.weight"] = torch.zeros(3)
    with pytest.raises(ValueError, match="2 unknown") as info:
        convert_official_state_dict(state)
    assert "attention.gate.weight" in str(info.value)
    assert "transformer_encoder.layers.0.norm3.weight" in str(info.value)


def test_missing_keys_are_listed_with_official_names():
    state = official_state_dict(depth=2)
    del state["fc.bias"], state["transformer_encoder.layers.1.norm2.weight"], state["attention.key_layer.weight"]
    with pytest.raises(ValueError, match="3 missing") as info:
        load_official_adapter(state, eta=0.1, llm_dim=16)
    for key in ("fc.bias", "transformer_encoder.layers.1.norm2.weight", "attention.key_layer.weight"):
        assert key in str(info.value)


def test_inconsistent_shapes_are_refused():
    state = official_state_dict(width=32)
    state["fc.weight"] = torch.zeros(16, 16)
    with pytest.raises(ValueError, match="fc.weight"):
        load_official_adapter(state, eta=0.1, llm_dim=16)


def test_a_surlib_state_dict_gets_a_hint():
    with pytest.raises(ValueError, match="from_pretrained"):
        convert_official_state_dict(SURAdapter(text_dim=32, llm_dim=16, ff_dim=64).state_dict())


def test_loads_from_files_and_folders(tmp_path):
    state = official_state_dict()
    wrapped = {f"module.{k}": v for k, v in state.items()}  # as saved from a DDP-wrapped model
    torch.save(wrapped, tmp_path / "adapter.pt")
    from_file = _load(tmp_path / "adapter.pt")
    from_folder = _load(str(tmp_path))
    from_dict = _load(state)
    for other in (from_folder, from_dict):
        assert all(torch.equal(v, other.state_dict()[k]) for k, v in from_file.state_dict().items())
    torch.save(state, tmp_path / "adapter_checkpoint500.pt")
    with pytest.raises(ValueError, match="exactly one checkpoint"):
        load_official_adapter(tmp_path, eta=0.1)
    with pytest.raises(FileNotFoundError):
        load_official_adapter(tmp_path / "nope.pt", eta=0.1)


def test_converted_adapter_runs_in_the_pipeline(sd1_pipe, tmp_path):
    adapter = _load(official_state_dict(width=32), eta=0.1)
    adapter.save_pretrained(tmp_path)  # and becomes an ordinary surlib adapter on disk
    pipe = SURPipeline(sd1_pipe.sd, SURAdapter.from_pretrained(tmp_path))
    pipe.set_progress_bar_config(disable=True)
    gen = pipe.generate_pair("a cat", seed=0, steps=1, output_type="np")
    assert gen.adapter.shape == gen.baseline.shape == (32, 32, 3)
    assert abs(gen.adapter - gen.baseline).max() > 0
