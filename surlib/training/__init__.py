"""Train a SUR-adapter on a frozen Stable Diffusion (1.x, 2.x or XL) base with `accelerate`.

    from surlib.training import TrainConfig, train
    history = train(TrainConfig(base="tiny", data="data/toy/train", max_steps=100))
    history = train("train/configs/tiny.yaml", dataset=my_dataset, max_steps=50)  # rows made on the fly

One concept per module: `config` (TrainConfig, YAML, overrides), `frozen` (the base model and its
encoders), `row_cache` (kept encoder outputs), `tracking` (losses.csv / losses.png),
`checkpoints`, `validation` (the image grid) and `loop` (train, compute_losses).

Output folder::

    config.yaml                 the resolved configuration
    losses.csv, losses.png      step, noise, llm, quality, total, lr
    validation/step-XXXXXX.png  baseline | adapter for fixed prompts and seeds
    checkpoints/checkpoint-N/   accelerate state (weights, optimizer, scheduler, scaler, RNG),
                                adapter/ (save_pretrained), trainer_state.json
    adapter/                    the final adapter (save_pretrained)
    llm_features/               the teacher cache, unless `feature_cache` points elsewhere
"""

from .checkpoints import find_checkpoint
from .config import TrainConfig, config_keys, load_yaml, make_config
from .frozen import (Frozen, TextBatch, encode_batch_text, encode_latent_params, encode_prompts, encode_prompts_sdxl,
                     load_base, sample_latents)
from .loop import AdapterWithTeacher, compute_losses, train
from .row_cache import RowStore
from .tracking import plot_history
from .validation import validation_grid

__all__ = ["TrainConfig", "make_config", "config_keys", "load_yaml", "train", "compute_losses", "Frozen",
           "TextBatch", "AdapterWithTeacher", "encode_prompts", "encode_prompts_sdxl", "encode_latent_params",
           "encode_batch_text", "sample_latents", "load_base", "RowStore", "plot_history", "validation_grid",
           "find_checkpoint"]
