"""The frozen base model: loading it, and what its encoders make of a batch.

UNet, VAE and text encoder never train; they sit on the training device in eval mode, and the
functions below run them under ``no_grad`` exactly as `StableDiffusionPipeline` would.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


def load_base(base: str):
    """A StableDiffusionPipeline (fp32, CPU) from a surlib preset name, a folder or a hub id."""
    from diffusers import StableDiffusionPipeline

    from ..presets import PRESETS

    preset = PRESETS.get(base)
    if preset is not None and preset.base is None:
        # Training needs the eager UNet (gradients, gradient checkpointing), not the toy's traces.
        eager = {"traced": False} if base == "toy" else {}
        return preset.load(device="cpu", dtype=torch.float32, **eager).sd
    source = preset.base if preset is not None else base
    return StableDiffusionPipeline.from_pretrained(source, safety_checker=None, requires_safety_checker=False)


@dataclass
class Frozen:
    """The frozen parts of the base model, on the training device, plus the training noise schedule."""

    unet: nn.Module
    vae: nn.Module
    text_encoder: nn.Module
    tokenizer: Any
    noise_scheduler: Any

    @classmethod
    def from_pipeline(cls, sd, device=None, dtype: torch.dtype = torch.float32) -> "Frozen":
        from diffusers import DDPMScheduler

        parts = []
        for m in (sd.unet, sd.vae, sd.text_encoder):
            m.requires_grad_(False)
            m.eval().to(device=device)
            if m.dtype != dtype:
                m.to(dtype=dtype)
            parts.append(m)
        return cls(*parts, sd.tokenizer, DDPMScheduler.from_config(sd.scheduler.config))

    @property
    def text_dim(self) -> int:
        return int(self.text_encoder.config.hidden_size)


@torch.no_grad()
def encode_prompts(tokenizer, text_encoder, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Text embeddings exactly as `StableDiffusionPipeline.encode_prompt` makes them (no clip
    skip, no CFG), plus the tokenizer's attention mask (used to pool the adapter's states)."""
    enc = tokenizer(list(prompts), padding="max_length", max_length=tokenizer.model_max_length,
                    truncation=True, return_tensors="pt")
    device = text_encoder.device
    use_mask = getattr(text_encoder.config, "use_attention_mask", False)
    attention = enc.attention_mask.to(device) if use_mask else None
    embeds = text_encoder(enc.input_ids.to(device), attention_mask=attention)[0]
    return embeds.to(dtype=text_encoder.dtype), enc.attention_mask.to(device)


@torch.no_grad()
def encode_latent_params(vae, pixel_values: torch.Tensor) -> torch.Tensor:
    """The VAE posterior's parameters (mean and log-variance, stacked on channels)."""
    return vae.encode(pixel_values.to(device=vae.device, dtype=vae.dtype)).latent_dist.parameters


def sample_latents(vae, params: torch.Tensor) -> torch.Tensor:
    """Sample the posterior and scale as SD expects (``(z - shift) * scaling_factor``)."""
    from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

    z = DiagonalGaussianDistribution(params).sample()
    shift = getattr(vae.config, "shift_factor", None)
    if shift is not None:
        z = z - shift
    return z * vae.config.scaling_factor


def encode_batch_text(frozen: Frozen, batch: dict, with_complex: bool = True) -> tuple[torch.Tensor, ...]:
    """(simple-prompt embeddings, their token mask[, complex-prompt embeddings]) of a batch."""
    simple, mask = encode_prompts(frozen.tokenizer, frozen.text_encoder, batch["text"])
    if not with_complex:
        return simple, mask
    return simple, mask, encode_prompts(frozen.tokenizer, frozen.text_encoder, batch["prompt"])[0]


__all__ = ["load_base", "Frozen", "encode_prompts", "encode_latent_params", "sample_latents", "encode_batch_text"]
