"""The frozen base model: loading it, and what its encoders make of a batch.

UNet, VAE and text encoder(s) never train; they sit on the training device in eval mode, and the
functions below run them under ``no_grad`` exactly as `StableDiffusionPipeline` /
`StableDiffusionXLPipeline` would.

SDXL bases condition their UNet on more than token embeddings (`added_cond_kwargs`): the pooled
vector of the row's prompt (never adapted: `surlib.conditioning` says why) and six "time ids",
the image's original size, the top-left corner of its crop and the target size. Training takes
the row's true ones (`surlib.data.ImageTransform.apply`), as SDXL itself was trained: with
them the frozen UNet's prediction is the base's best for that image, so the noise loss has no
size or crop mismatch that the adapter would learn to make up for and then carry to inference.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import nn

from ..bases import is_sdxl, load_base_pipeline, text_encoders, text_width


def load_base(base: str):
    """The base pipeline (fp32, CPU; `StableDiffusionPipeline` or `StableDiffusionXLPipeline`, as
    its model_index.json says) from a surlib preset name, a folder or a hub id."""
    from ..presets import PRESETS

    preset = PRESETS.get(base)
    if preset is not None and preset.base is None:
        # Training needs the eager UNet (gradients, gradient checkpointing), not the toy's traces.
        eager = {"traced": False} if base == "toy" else {}
        return preset.load(device="cpu", dtype=torch.float32, **eager).sd
    source = preset.base if preset is not None else base
    return load_base_pipeline(source, safety_checker=False)


class TextBatch(NamedTuple):
    """A batch's prompts through the frozen text encoder(s): the simple prompts' token embeddings
    and token mask, the complex prompts' token embeddings (None when not needed), for SDXL
    both prompts' pooled vectors (None for SD 1.x / 2.x), and the same two for the canonical
    captions when the batch has them (`canonical_column`). A plain tuple in this order works too
    (the kept-rows store holds tuples)."""

    simple: torch.Tensor
    mask: torch.Tensor
    complex: torch.Tensor | None = None
    pooled: torch.Tensor | None = None
    complex_pooled: torch.Tensor | None = None
    canonical: torch.Tensor | None = None
    canonical_pooled: torch.Tensor | None = None


@dataclass
class Frozen:
    """The frozen parts of the base model, on the training device, plus the training noise schedule.

    `sdxl` is the `StableDiffusionXLPipeline` the parts belong to when the base is SDXL (its
    `encode_prompt` and `_get_add_time_ids` make the conditioning exactly as at inference), else None."""

    unet: nn.Module
    vae: nn.Module
    text_encoder: nn.Module
    tokenizer: Any
    noise_scheduler: Any
    sdxl: Any = None

    @classmethod
    def from_pipeline(cls, sd, device=None, dtype: torch.dtype = torch.float32) -> "Frozen":
        from diffusers import DDPMScheduler

        for m in (sd.unet, sd.vae, *text_encoders(sd)):
            m.requires_grad_(False)
            m.eval().to(device=device)
            # SDXL's VAE overflows in fp16 (diffusers upcasts it to decode, `force_upcast`): it
            # stays in fp32 for encoding the training images.
            keep_fp32 = m is sd.vae and is_sdxl(sd) and dtype == torch.float16 and sd.vae.config.force_upcast
            if m.dtype != dtype and not keep_fp32:
                m.to(dtype=dtype)
        return cls(sd.unet, sd.vae, sd.text_encoder, sd.tokenizer, DDPMScheduler.from_config(sd.scheduler.config),
                   sdxl=sd if is_sdxl(sd) else None)

    @property
    def text_dim(self) -> int:
        """Width of the token embeddings the adapter rewrites (SDXL: both encoders together)."""
        return text_width(self.sdxl) if self.sdxl is not None else int(self.text_encoder.config.hidden_size)

    @property
    def text_encoders(self) -> list[nn.Module]:
        return text_encoders(self.sdxl) if self.sdxl is not None else [self.text_encoder]

    def added_cond_kwargs(self, pooled: torch.Tensor | None, latents: torch.Tensor,
                          original_size: torch.Tensor | None = None,
                          crop_top_left: torch.Tensor | None = None) -> dict[str, torch.Tensor] | None:
        """SDXL's extra UNet conditioning for a batch: the pooled text vectors and the time ids
        (original size, crop top-left, target size; each row's own, `(B, 2)` tensors as the
        dataset reports them, else the uncropped target size). None for SD 1.x / 2.x."""
        if self.sdxl is None:
            return None
        if pooled is None:
            raise ValueError("an SDXL base needs the prompts' pooled vectors (TextBatch.pooled)")
        scale = self.sdxl.vae_scale_factor
        target = (int(latents.shape[-2]) * scale, int(latents.shape[-1]) * scale)
        projection = (self.sdxl.text_encoder_2.config.projection_dim if self.sdxl.text_encoder_2 is not None
                      else int(pooled.shape[-1]))
        rows = []
        for i in range(latents.shape[0]):
            original = tuple(int(v) for v in original_size[i]) if original_size is not None else target
            crop = tuple(int(v) for v in crop_top_left[i]) if crop_top_left is not None else (0, 0)
            rows.append(self.sdxl._get_add_time_ids(original, crop, target, dtype=pooled.dtype,
                                                    text_encoder_projection_dim=projection))
        return {"text_embeds": pooled, "time_ids": torch.cat(rows).to(latents.device)}


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
    """The VAE posterior's parameters (mean and log-variance, stacked on channels). A VAE kept in
    fp32 (SDXL's under fp16 training) runs in fp32 even inside the training step's autocast."""
    in_fp32 = torch.autocast(vae.device.type, enabled=False) if vae.dtype == torch.float32 else nullcontext()
    with in_fp32:
        return vae.encode(pixel_values.to(device=vae.device, dtype=vae.dtype)).latent_dist.parameters


def sample_latents(vae, params: torch.Tensor) -> torch.Tensor:
    """Sample the posterior and scale as SD expects (``(z - shift) * scaling_factor``)."""
    from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

    z = DiagonalGaussianDistribution(params).sample()
    shift = getattr(vae.config, "shift_factor", None)
    if shift is not None:
        z = z - shift
    return z * vae.config.scaling_factor


@torch.no_grad()
def encode_prompts_sdxl(sd, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(token embeddings, token mask, pooled vectors) exactly as `StableDiffusionXLPipeline.encode_prompt`
    makes them (no CFG); the mask is the first tokenizer's (both tokenize alike; it pools the
    adapter's states for the distillation loss)."""
    encoder = sd.text_encoder_2 if sd.text_encoder_2 is not None else sd.text_encoder
    embeds, _, pooled, _ = sd.encode_prompt(list(prompts), device=encoder.device, num_images_per_prompt=1,
                                            do_classifier_free_guidance=False)
    tokenizer = sd.tokenizer if sd.tokenizer is not None else sd.tokenizer_2
    mask = tokenizer(list(prompts), padding="max_length", max_length=tokenizer.model_max_length,
                     truncation=True, return_tensors="pt").attention_mask
    return embeds, mask.to(embeds.device), pooled


def encode_batch_text(frozen: Frozen, batch: dict, with_complex: bool = True) -> TextBatch:
    """A batch's simple prompts (and complex ones, `with_complex`; canonical captions whenever the
    batch has them) through the frozen encoder(s)."""
    def encode(prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor | None]:
        if frozen.sdxl is not None:
            embeds, _, pooled = encode_prompts_sdxl(frozen.sdxl, prompts)
            return embeds, pooled
        return encode_prompts(frozen.tokenizer, frozen.text_encoder, prompts)[0], None

    if frozen.sdxl is not None:
        simple, mask, pooled = encode_prompts_sdxl(frozen.sdxl, batch["text"])
    else:
        (simple, mask), pooled = encode_prompts(frozen.tokenizer, frozen.text_encoder, batch["text"]), None
    complex_embeds, complex_pooled = encode(batch["prompt"]) if with_complex else (None, None)
    canonical, canonical_pooled = encode(batch["canonical"]) if "canonical" in batch else (None, None)
    return TextBatch(simple, mask, complex_embeds, pooled, complex_pooled, canonical, canonical_pooled)


__all__ = ["load_base", "Frozen", "TextBatch", "encode_prompts", "encode_prompts_sdxl", "encode_latent_params",
           "sample_latents", "encode_batch_text"]
