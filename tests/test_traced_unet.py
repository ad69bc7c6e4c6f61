"""The CPU trace of a small UNet must be invisible: same numbers, eager whenever it cannot apply."""

import pytest
import torch
from diffusers import UNet2DConditionModel

from surlib.toy.traced_unet import TracedUNet


@pytest.fixture()
def unet():
    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
        norm_num_groups=8, cross_attention_dim=24, attention_head_dim=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    ).eval()


def _inputs(batch, size=8, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 4, size, size, generator=g), torch.tensor(321), torch.randn(batch, 7, 24, generator=g)


def test_trace_matches_eager_per_shape_and_follows_weight_changes(unet):
    x2, t, c2 = _inputs(2)
    x3, _, c3 = _inputs(3, size=16, seed=2)
    with torch.no_grad():
        eager2 = unet(x2, t, encoder_hidden_states=c2).sample
        eager3 = unet(x3, t, encoder_hidden_states=c3).sample
        traced_unet = TracedUNet(unet)
        assert torch.allclose(traced_unet(x2, t, encoder_hidden_states=c2).sample, eager2, atol=1e-6)
        assert torch.allclose(traced_unet(x3, t, c3, return_dict=False)[0], eager3, atol=1e-6)
        assert len(traced_unet._traces) == 2  # one trace per input shape
        unet.conv_in.weight.mul_(1.5)  # weights are shared with the trace, not copied
        traced = traced_unet(x2, t, encoder_hidden_states=c2).sample
        assert torch.allclose(traced, unet(x2, t, encoder_hidden_states=c2).sample, atol=1e-6)
        assert not torch.allclose(traced, eager2, atol=1e-3)
    assert "forward" not in vars(unet)  # the eager UNet is left as it was: nothing patched


def test_it_offers_the_unet_interface_a_pipeline_reads(unet):
    traced_unet = TracedUNet(unet)
    assert traced_unet.config is unet.config and traced_unet.config.in_channels == 4
    assert (traced_unet.dtype, traced_unet.device) == (torch.float32, torch.device("cpu"))
    assert [p is q for p, q in zip(traced_unet.parameters(), unet.parameters())] == [True] * len(list(unet.parameters()))


def test_gradients_training_mode_and_extra_arguments_stay_eager(unet):
    x, t, c = _inputs(2)
    traced_unet = TracedUNet(unet)
    text = c.clone().requires_grad_(True)
    traced_unet(x, t, encoder_hidden_states=text).sample.sum().backward()
    assert text.grad is not None and text.grad.abs().sum() > 0
    with torch.no_grad():
        traced_unet(x, torch.tensor([5, 9]), encoder_hidden_states=c)  # per-item timesteps
        traced_unet(x, t, encoder_hidden_states=c, cross_attention_kwargs={"scale": 1.0})
        traced_unet.train()
        traced_unet(x, t, encoder_hidden_states=c)
        assert traced_unet._traces == {}
        traced_unet.eval()  # back in eval mode, a plain call is traced again
        traced_unet(x, t, encoder_hidden_states=c)
    assert len(traced_unet._traces) == 1
