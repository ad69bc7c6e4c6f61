"""TorchScript traces of a small UNet for CPU inference.

Why: the toy UNet is tiny (32/64/64 channels on 16x16 latents), so on a CPU a step costs
more in Python and operator dispatch than in arithmetic. A trace replays the same operators
without the Python, which makes the toy UNet's forward about 1.6x faster on 2 cores with
bit-identical outputs (`bench/bench_pair.py` measures it). `torch.compile` was slower to build
(about 100 s on 2 cores) and slower to run here.

`trace_unet(unet)` keeps the UNet a normal diffusers model and only routes plain inference
calls through a trace made for that exact input shape; everything else (gradients, a GPU,
half precision, extra conditioning) runs the eager forward unchanged.
"""

from __future__ import annotations

import warnings

import torch
from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput

_TRACE_LIMIT = 8  # input shapes kept (batch sizes differ between the app, eval and bench)


class _PlainCall(torch.nn.Module):
    """unet(sample, t, text) -> tensor: the positional signature a trace needs."""

    def __init__(self, unet, eager_forward):
        super().__init__()
        self.unet = unet  # registered, so the trace holds the UNet's own parameters
        self._eager_forward = eager_forward

    def forward(self, sample, timestep, encoder_hidden_states):
        return self._eager_forward(sample, timestep, encoder_hidden_states=encoder_hidden_states,
                                   return_dict=False)[0]


def _traceable(unet, sample, timestep, encoder_hidden_states, args, kwargs) -> bool:
    plain = not args and all(v is None for k, v in kwargs.items() if k != "return_dict")
    return (plain and not torch.is_grad_enabled() and not unet.training and sample.device.type == "cpu"
            and sample.dtype == torch.float32 and unet.dtype == torch.float32
            and unet.device.type == "cpu" and isinstance(encoder_hidden_states, torch.Tensor)
            and isinstance(timestep, torch.Tensor) and timestep.ndim == 0)


def _trace(module, inputs):
    # Shape-dependent branches in diffusers warn during tracing; the per-shape key makes them
    # constants on purpose. torch.jit is deprecated upstream but kept in torch <= 2.14 (pinned).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return torch.jit.trace(module, inputs, check_trace=False)
        except Exception:  # noqa: BLE001 - any tracing failure just means "run eager"
            return None


def trace_unet(unet):
    """Make plain no-grad float32 CPU calls of `unet` run a per-shape trace; returns `unet`.

    A trace reads the weights at call time (they are shared, not copied), so loading new
    weights in place keeps it correct; `untrace_unet` restores the plain forward."""
    if getattr(unet, "_eager_forward", None) is not None:
        return unet
    eager = unet.forward
    traces: dict[tuple, torch.jit.ScriptModule | None] = {}

    def forward(sample, timestep, encoder_hidden_states=None, *args, return_dict: bool = True, **kwargs):
        if not _traceable(unet, sample, timestep, encoder_hidden_states, args, kwargs):
            return eager(sample, timestep, encoder_hidden_states, *args, return_dict=return_dict, **kwargs)
        key = (tuple(sample.shape), tuple(encoder_hidden_states.shape), timestep.dtype)
        if key not in traces:
            if len(traces) >= _TRACE_LIMIT:
                traces.pop(next(iter(traces)))
            traces[key] = _trace(_PlainCall(unet, eager), (sample, timestep, encoder_hidden_states))
        if traces[key] is None:  # this shape could not be traced: stay eager
            return eager(sample, timestep, encoder_hidden_states, return_dict=return_dict)
        out = traces[key](sample, timestep, encoder_hidden_states)
        return UNet2DConditionOutput(sample=out) if return_dict else (out,)

    unet._eager_forward = eager
    unet._traces = traces
    unet.forward = forward
    return unet


def untrace_unet(unet):
    """Back to the plain eager forward (drops the traces)."""
    eager = getattr(unet, "_eager_forward", None)
    if eager is not None:
        if getattr(eager, "__func__", None) is type(unet).forward:
            del unet.forward  # the class's own forward again
        else:
            unet.forward = eager  # someone else's wrapper was there before us
        del unet._eager_forward, unet._traces
    return unet


__all__ = ["trace_unet", "untrace_unet"]
