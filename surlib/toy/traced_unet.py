"""A UNet that runs plain CPU inference calls through TorchScript traces, one per input shape.

Why: the toy UNet is tiny (16x16 latents), so on a CPU a step costs more in Python and operator
dispatch than in arithmetic. A trace replays the same operators without the Python, so it gives
the same outputs as the eager UNet (tests/test_traced_unet.py and the toy preset's test compare
them) in less time (`python bench/bench_pair.py` prints the traced/eager ratio; the figures, and
why `torch.compile` lost, are in docs/toy_world.md).

`TracedUNet(unet)` sits in a pipeline's `unet` slot and offers what StableDiffusionPipeline and
SURPipeline use of a UNet2DConditionModel: `config`, `dtype`, `device`, and `forward` with its
signature and output. Plain no-grad float32 CPU calls of an eval-mode UNet (one timestep, no
extra conditioning) run the trace made for their input shapes; every other call (gradients,
training mode, a GPU, half precision, per-item timesteps, extra arguments) runs the eager UNet,
`.unet`, unchanged. A trace reads the UNet's own parameters, so weights changed in place are
followed. The toy preset installs it on a CPU; `load_preset("toy", traced=False)` does not.

When torch.jit goes away (deprecated upstream; requirements.txt pins a torch that has it): load
the toy preset with `traced=False` (same images, slower) until a replacement - `torch.export`
with an ahead-of-time compiled CPU package, or `torch.compile` once it builds fast on 2 cores -
matches the trace in `bench/bench_pair.py`, then put that behind this same interface.
"""

from __future__ import annotations

import warnings

import torch
from diffusers import UNet2DConditionModel
from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput

__all__ = ["TracedUNet"]


class _PlainCall(torch.nn.Module):
    """unet(sample, t, text) -> tensor: the positional signature a trace needs."""

    def __init__(self, unet: UNet2DConditionModel):
        super().__init__()
        self.unet = unet  # registered, so the trace holds the UNet's own parameters

    def forward(self, sample, timestep, encoder_hidden_states):
        return self.unet(sample, timestep, encoder_hidden_states=encoder_hidden_states, return_dict=False)[0]


class TracedUNet(torch.nn.Module):
    """`unet` with per-shape traces for plain CPU inference (see the module docstring).

    `max_shapes` bounds the traces kept (batch sizes differ between the app, eval and bench);
    the oldest is dropped first."""

    def __init__(self, unet: UNet2DConditionModel, max_shapes: int = 8):
        super().__init__()
        self.unet = unet
        self.max_shapes = int(max_shapes)
        self._traces: dict[tuple, torch.jit.ScriptModule | None] = {}

    @property
    def config(self):
        return self.unet.config

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.dtype

    @property
    def device(self) -> torch.device:
        return self.unet.device

    def _traceable(self, sample, timestep, encoder_hidden_states, args, kwargs) -> bool:
        plain = not args and all(v is None for v in kwargs.values())
        return (plain and not torch.is_grad_enabled() and not self.unet.training
                and sample.device.type == "cpu" and sample.dtype == torch.float32
                and self.unet.dtype == torch.float32 and self.unet.device.type == "cpu"
                and isinstance(encoder_hidden_states, torch.Tensor)
                and isinstance(timestep, torch.Tensor) and timestep.ndim == 0)

    def _trace_for(self, sample, timestep, encoder_hidden_states):
        key = (tuple(sample.shape), tuple(encoder_hidden_states.shape), timestep.dtype)
        if key not in self._traces:
            if len(self._traces) >= self.max_shapes:
                self._traces.pop(next(iter(self._traces)))
            # Shape-dependent branches in diffusers warn during tracing; the per-shape key makes
            # them constants on purpose.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    self._traces[key] = torch.jit.trace(_PlainCall(self.unet),
                                                        (sample, timestep, encoder_hidden_states),
                                                        check_trace=False)
                except Exception:  # noqa: BLE001 - a shape that cannot be traced runs eager
                    self._traces[key] = None
        return self._traces[key]

    def forward(self, sample, timestep, encoder_hidden_states=None, *args, return_dict: bool = True, **kwargs):
        trace = (self._trace_for(sample, timestep, encoder_hidden_states)
                 if self._traceable(sample, timestep, encoder_hidden_states, args, kwargs) else None)
        if trace is None:
            return self.unet(sample, timestep, encoder_hidden_states, *args, return_dict=return_dict, **kwargs)
        out = trace(sample, timestep, encoder_hidden_states)
        return UNet2DConditionOutput(sample=out) if return_dict else (out,)
