"""Tiny random Stable Diffusion pipelines built locally (no hub access).

Tests, benchmarks and the CI demo need real diffusers pipelines of the SD 1.x, SD 2.x and SDXL
shapes; these are the same classes as the real ones at toy sizes, built from a seed.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    EulerDiscreteScheduler,
    PNDMScheduler,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer


def _byte_vocab() -> list[str]:
    """The 256 printable stand-ins CLIP's byte-level BPE uses for raw bytes."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = list(keep), 0
    for b in range(256):
        if b not in keep:
            chars.append(256 + extra)
            extra += 1
    return [chr(c) for c in chars]


def tiny_clip_tokenizer(folder: str | Path, max_length: int = 77) -> CLIPTokenizer:
    """A character-level CLIP tokenizer (no merges): real class, vocabulary of a few hundred."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokens = _byte_vocab()
    vocab = {t: i for i, t in enumerate(tokens + [t + "</w>" for t in tokens])}
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=max_length)
    return tok


def build_tiny_sd(
    workdir: str | Path,
    text_dim: int = 32,
    sd2_style: bool = False,
    seed: int = 0,
    image_size: int = 32,
    text_encoder=None,
    tokenizer=None,
) -> StableDiffusionPipeline:
    """A random SD-1.x-shaped pipeline (or SD-2.x-shaped with `sd2_style`: linear projections,
    v-prediction, another text width). Pass `text_encoder`/`tokenizer` to use a real encoder."""
    torch.manual_seed(seed)
    if text_encoder is None:
        text_encoder = CLIPTextModel(CLIPTextConfig(
            hidden_size=text_dim, intermediate_size=2 * text_dim, num_attention_heads=4,
            num_hidden_layers=2, vocab_size=600, max_position_embeddings=77,
            projection_dim=text_dim, hidden_act="gelu" if sd2_style else "quick_gelu",
        ))
        tokenizer = tiny_clip_tokenizer(Path(workdir) / "tokenizer_src")
    text_dim = text_encoder.config.hidden_size
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=8, sample_size=image_size,
    )
    unet = UNet2DConditionModel(
        sample_size=image_size // 2, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(16, 32), norm_num_groups=8, cross_attention_dim=text_dim,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        attention_head_dim=(2, 4) if sd2_style else 4, use_linear_projection=sd2_style,
    )
    sched_kwargs = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1)
    if sd2_style:
        scheduler = DDIMScheduler(prediction_type="v_prediction", clip_sample=False,
                                  set_alpha_to_one=False, **sched_kwargs)
    else:
        scheduler = PNDMScheduler(skip_prk_steps=True, **sched_kwargs)
    return StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder.eval(), tokenizer=tokenizer, unet=unet.eval(),
        scheduler=scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )


def _tiny_clip_config(width: int, act: str, tokenizer: CLIPTokenizer) -> CLIPTextConfig:
    """The special token ids are the tokenizer's: CLIP pools at the end-of-text token, which
    SDXL's pooled vector is, so it must be found in the input."""
    return CLIPTextConfig(hidden_size=width, intermediate_size=2 * width, num_attention_heads=4,
                          num_hidden_layers=2, vocab_size=600, max_position_embeddings=77,
                          projection_dim=width, hidden_act=act, bos_token_id=tokenizer.bos_token_id,
                          eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)


def build_tiny_sdxl(workdir: str | Path, text_dims: tuple[int, int] = (32, 32), seed: int = 0,
                    image_size: int = 32, time_embed_dim: int = 8) -> StableDiffusionXLPipeline:
    """A random SDXL-shaped pipeline: a CLIP text encoder and a CLIP text encoder with projection
    (whose hidden states are concatenated: `sum(text_dims)` wide, as 768 + 1280 = 2048 in SDXL
    base), a UNet with the "text_time" addition embedding (pooled text vector plus six size/crop
    ids), a VAE with SDXL's scaling factor, the Euler scheduler, the empty negative as zeros."""
    torch.manual_seed(seed)
    width_1, width_2 = text_dims
    work = Path(workdir)
    tokenizer, tokenizer_2 = tiny_clip_tokenizer(work / "tokenizer_src"), tiny_clip_tokenizer(work / "tokenizer_2_src")
    text_encoder = CLIPTextModel(_tiny_clip_config(width_1, "quick_gelu", tokenizer))
    text_encoder_2 = CLIPTextModelWithProjection(_tiny_clip_config(width_2, "gelu", tokenizer_2))
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=8, sample_size=image_size,
        scaling_factor=0.13025, force_upcast=True,
    )
    unet = UNet2DConditionModel(
        sample_size=image_size // 2, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(16, 32), norm_num_groups=8, cross_attention_dim=width_1 + width_2,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, transformer_layers_per_block=(1, 2),
        addition_embed_type="text_time", addition_time_embed_dim=time_embed_dim,
        projection_class_embeddings_input_dim=6 * time_embed_dim + text_encoder_2.config.projection_dim,
    )
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       steps_offset=1, timestep_spacing="leading")
    return StableDiffusionXLPipeline(
        vae=vae, text_encoder=text_encoder.eval(), text_encoder_2=text_encoder_2.eval(), tokenizer=tokenizer,
        tokenizer_2=tokenizer_2, unet=unet.eval(), scheduler=scheduler, force_zeros_for_empty_prompt=True,
        add_watermarker=False,
    )
