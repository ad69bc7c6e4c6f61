"""The training loop: a SUR-adapter on a frozen Stable Diffusion (1.x, 2.x or XL) base, with `accelerate`.

Only the adapter (with its LLM projection) trains; UNet, VAE and text encoder(s) are frozen
(`frozen.py`, which also makes SDXL's extra UNet conditioning). Teacher vectors come from a
row-indexed feature cache (`surlib.feature_cache`), kept encoder outputs from `row_cache.py`,
losses.csv from `tracking.py`, checkpoints from `checkpoints.py`, the validation grid from
`validation.py`.

Exact resume: the sample order of epoch e is a function of (seed, e) and augmentation of
(seed, epoch, index); noise, timesteps, VAE sampling and dropout use the global RNGs that
`accelerator.save_state` stores. Resuming at step K therefore replays steps K+1.. exactly.
"""

from __future__ import annotations

import importlib
import json
import logging
import math
from pathlib import Path

import torch
from torch import nn

from ..adapter import SURAdapter
from ..data import check_item, collate, dataset_texts, make_dataset
from ..feature_cache import dataset_fingerprint, ensure_feature_cache
from ..losses import (LossWeights, gate_loss, identity_loss, llm_distill_loss, noise_loss, quality_loss,
                      sample_noise_and_timesteps)
from ..surd import released_teacher_cache
from ..teacher import teacher_settings
from .checkpoints import find_checkpoint, load_checkpoint, save_checkpoint
from .config import TrainConfig, make_config
from .frozen import Frozen, TextBatch, encode_batch_text, encode_latent_params, load_base, sample_latents
from .row_cache import KeptRows, row_file
from .sampler import EpochSampler
from .tracking import LOSS_TERMS, LossTracker, read_history
from .validation import validation_grid

logger = logging.getLogger(__name__)


class AdapterWithTeacher(nn.Module):
    """The trained module: the adapter plus the teacher projection in one forward (one DDP graph)."""

    def __init__(self, adapter: SURAdapter):
        super().__init__()
        self.adapter = adapter

    def forward(self, embeds: torch.Tensor, llm_features: torch.Tensor | None = None):
        out = self.adapter(embeds)
        projected = self.adapter.project_llm(llm_features) if llm_features is not None else None
        return out.embeds, out.hidden, projected, out.gate_score


def compute_losses(module: nn.Module, frozen: Frozen, batch: dict, weights: LossWeights, *,
                   llm_features: torch.Tensor | None = None, latent_params: torch.Tensor | None = None,
                   text: tuple[torch.Tensor, ...] | None = None, snr_gamma: float | None = None,
                   official_detached: bool = False, llm_temperature: float = 1.0,
                   quality_temperature: float = 1.0, spell_fraction: float = 0.0,
                   canonical_fraction: float = 0.0) -> dict[str, torch.Tensor]:
    """One micro-batch: the loss terms and their weighted total (a graph into `module`).

    `latent_params` (VAE posteriors) and `text` (`encode_batch_text`) may come precomputed.
    Identity rows teach the adapter to leave a prompt that already works alone. One uniform draw
    per row (global RNG) makes a row, with probability `spell_fraction`, a spell row (its adapter
    input is its spell instead of its simple prompt) and with probability `canonical_fraction` a
    canonical row (its canonical caption: a narrative in words the base knows), with the same
    image either way. Their noise loss is the base's own task, their identity term keeps the
    output near the input, and they take no LLM term (the teacher saw the simple prompt)."""
    if latent_params is None:
        latent_params = encode_latent_params(frozen.vae, batch["pixel_values"])
    latents = sample_latents(frozen.vae, latent_params)
    if text is None:
        text = encode_batch_text(frozen, batch, with_complex=weights.quality > 0 or spell_fraction > 0)
    text = TextBatch(*text)
    simple, mask, pooled = text.simple, text.mask, text.pooled
    complex_embeds = text.complex if weights.quality or spell_fraction else None
    spell = torch.zeros(simple.shape[0], dtype=torch.bool, device=simple.device)
    canonical = spell.clone()
    if spell_fraction and complex_embeds is None:
        raise ValueError("spell_fraction needs the complex prompts' embeddings (text with three parts)")
    if canonical_fraction and text.canonical is None:
        raise ValueError("canonical_fraction needs the canonical captions' embeddings: the batch has no "
                         "'canonical' texts (set canonical_column to the data column that holds them)")
    if spell_fraction or canonical_fraction:
        draw = torch.rand(simple.shape[0], device=simple.device)
        spell = draw < spell_fraction
        canonical = (draw >= spell_fraction) & (draw < spell_fraction + canonical_fraction)
    # SDXL: an identity row is the base's own task, pooled vector included
    for rows, embeds_, pooled_ in ((spell, complex_embeds, text.complex_pooled),
                                   (canonical, text.canonical, text.canonical_pooled)):
        if rows.any():
            simple = torch.where(rows[:, None, None], embeds_.to(simple.dtype), simple)
            if pooled is not None:
                pooled = torch.where(rows[:, None], pooled_.to(pooled.dtype), pooled)
    identity = spell | canonical
    added = frozen.added_cond_kwargs(pooled, latents, batch.get("original_size"), batch.get("crop_top_left"))
    noise, timesteps = sample_noise_and_timesteps(latents, frozen.noise_scheduler.config.num_train_timesteps)
    use_llm = weights.llm > 0 and llm_features is not None and not bool(identity.all())
    embeds, hidden, projected, gate_score = module(simple, llm_features if use_llm else None)
    if weights.gate and gate_score is None:
        raise ValueError("gate_weight needs an adapter with a prompt gate (gate: prompt)")
    zero = embeds.new_zeros((), dtype=torch.float32)
    narrative = ~identity
    terms = {
        "noise": (noise_loss(frozen.unet, frozen.noise_scheduler, latents, embeds, noise, timesteps,
                             snr_gamma=snr_gamma, official_detached=official_detached, added_cond_kwargs=added)
                  if weights.noise else zero),
        "llm": (llm_distill_loss(hidden[narrative], projected[narrative], mask[narrative], llm_temperature)
                if use_llm else zero),
        "quality": quality_loss(embeds, complex_embeds, quality_temperature) if weights.quality else zero,
        "identity": (identity_loss(embeds[identity], simple[identity])
                     if weights.identity and identity.any() else zero),
        "gate": gate_loss(gate_score, identity) if weights.gate else zero,
    }
    terms["total"] = (weights.noise * terms["noise"] + weights.llm * terms["llm"]
                      + weights.quality * terms["quality"] + weights.identity * terms["identity"]
                      + weights.gate * terms["gate"])
    return terms


def _build_dataset(cfg: TrainConfig, dataset):
    """The training rows: a dataset passed to train(), else `data`, else `dataset_factory`."""
    if dataset is None and cfg.data is None and cfg.dataset_factory:
        module, _, attr = cfg.dataset_factory.partition(":")
        if not attr:
            raise ValueError(f"dataset_factory must look like 'package.module:callable', got {cfg.dataset_factory!r}")
        dataset = getattr(importlib.import_module(module), attr)(**cfg.dataset_kwargs)
    if dataset is None:
        if cfg.data is None:
            raise ValueError("no training data: set `data` (a SURD folder or metadata file), "
                             "`dataset_factory`, or pass dataset= to train()")
        return make_dataset(cfg.data, resolution=cfg.resolution, center_crop=cfg.center_crop,
                            random_flip=cfg.random_flip, image_column=cfg.image_column,
                            text_column=cfg.text_column, prompt_column=cfg.prompt_column,
                            canonical_column=cfg.canonical_column,
                            check_images=cfg.check_images, seed=cfg.seed, max_rows=cfg.max_rows)
    return make_dataset(dataset, resolution=cfg.resolution, center_crop=cfg.center_crop,
                        random_flip=cfg.random_flip, seed=cfg.seed)


def _make_adapter(cfg: TrainConfig, text_dim: int, llm_dim: int | None) -> SURAdapter:
    """A new adapter sized from the base (text width) and the teacher cache (LLM width), or the
    saved one to continue (checked against both). Without a teacher (llm_weight 0) the unused
    projection is made text_dim wide."""
    if cfg.adapter:
        adapter = SURAdapter.from_pretrained(cfg.adapter)
        adapter.check_text_width(text_dim)
        for key in ("residual", "gate"):
            saved, asked = getattr(adapter.config, key), getattr(cfg, key)
            if saved != asked:
                raise ValueError(f"adapter {cfg.adapter} was trained with {key}={saved} but the config says "
                                 f"{key}={asked}: set {key}: {json.dumps(saved)} to continue it")
        if llm_dim is not None and adapter.config.llm_dim != llm_dim:
            raise ValueError(f"adapter {cfg.adapter} has llm_dim {adapter.config.llm_dim} but teacher "
                             f"{cfg.teacher_vectors or cfg.teacher} gives {llm_dim}-d vectors")
        return adapter
    return SURAdapter(text_dim=text_dim, llm_dim=llm_dim or text_dim, num_layers=cfg.num_layers,
                      num_heads=cfg.num_heads, ff_dim=cfg.ff_dim, dropout=cfg.dropout, eta=cfg.eta,
                      init_seed=cfg.init_seed, base_model=cfg.base, residual=cfg.residual, gate=cfg.gate)


def train(config: TrainConfig | dict | str | Path | None = None, /, dataset=None, **overrides) -> list[dict]:
    """Train (or resume) and return the loss history: one dict per optimizer step with keys
    step, noise, llm, quality, total, lr (earlier steps of a resumed run included).

    `dataset`: optional map-style Dataset of ``dict(pixel_values in [-1, 1], text, prompt, index)``
    (or a sequence of (image, text, prompt) rows), used instead of ``config.data``.
    """
    from accelerate import Accelerator, DistributedDataParallelKwargs
    from accelerate.utils import GradientAccumulationPlugin, set_seed
    from diffusers.optimization import get_scheduler
    from tqdm.auto import tqdm

    cfg = make_config(config, **overrides)
    out = Path(cfg.output_dir)
    mixed = cfg.mixed_precision
    if mixed == "fp16" and not torch.cuda.is_available():
        logger.warning("fp16 mixed precision needs a GPU; training in fp32 on the CPU")
        mixed = "no"
    tracker = LossTracker(out, cfg.plot_every)
    accelerator = Accelerator(
        mixed_precision=mixed,
        gradient_accumulation_plugin=GradientAccumulationPlugin(
            num_steps=cfg.gradient_accumulation_steps, sync_with_dataloader=False),
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=cfg.llm_weight == 0)],
        log_with=[tracker],
    )
    main = accelerator.is_main_process
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(mixed, torch.float32)
    if main:
        out.mkdir(parents=True, exist_ok=True)
        import yaml

        (out / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))

    # ---- data and teacher features (main process first: it checks images and fills the cache)
    with accelerator.main_process_first():
        ds = _build_dataset(cfg, dataset)
        check_item(ds, cfg.canonical_column)
        texts = dataset_texts(ds)
        if len(texts) != len(ds):
            raise ValueError(f"dataset has {len(ds)} items but {len(texts)} texts")
        cache = None
        if cfg.llm_weight > 0 and cfg.teacher_vectors:
            # Released vectors (SURD's 39.pt): no teacher model; rows without a vector are dropped.
            ds, cache = released_teacher_cache(ds, cfg.teacher_vectors)
            texts = dataset_texts(ds)
        elif cfg.llm_weight > 0:
            settings = teacher_settings(cfg.teacher, cfg.teacher_layer, cfg.teacher_pooling, cfg.teacher_dtype,
                                        cfg.teacher_max_length)
            cache = ensure_feature_cache(texts, cfg.feature_cache or out / "llm_features", settings,
                                         device=accelerator.device, batch_size=cfg.teacher_batch_size,
                                         shard_size=cfg.feature_shard_size, progress=cfg.progress and main)
    if cfg.cache_latents and not getattr(getattr(ds, "transform", None), "deterministic", True):
        raise ValueError("cache_latents needs the same image every epoch: set random_flip=false and center_crop=true")

    # ---- models
    sd = load_base(cfg.base)
    if cfg.gradient_checkpointing:
        sd.unet.enable_gradient_checkpointing()
    frozen = Frozen.from_pipeline(sd, accelerator.device, weight_dtype)
    adapter = _make_adapter(cfg, frozen.text_dim, cache.width if cache is not None else None)
    adapter.train()
    module = AdapterWithTeacher(adapter)
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2),
                                  eps=cfg.adam_epsilon, weight_decay=cfg.weight_decay)
    n_proc = accelerator.num_processes
    lr_scheduler = get_scheduler(cfg.lr_scheduler, optimizer=optimizer,
                                 num_warmup_steps=cfg.lr_warmup_steps * n_proc,
                                 num_training_steps=cfg.max_steps * n_proc)
    module, optimizer, lr_scheduler = accelerator.prepare(module, optimizer, lr_scheduler)

    # ---- data order: a function of (seed, epoch) only, so resuming replays it exactly
    sampler = EpochSampler(len(ds), cfg.batch_size, seed=cfg.seed, world=n_proc, rank=accelerator.process_index)
    loader = torch.utils.data.DataLoader(
        ds, batch_size=cfg.batch_size, sampler=sampler, drop_last=sampler.drop_last, collate_fn=collate,
        num_workers=cfg.dataloader_num_workers, generator=torch.Generator().manual_seed(cfg.seed),
        pin_memory=accelerator.device.type == "cuda")
    bpe = sampler.batches_per_epoch

    # ---- resume or start
    global_step = 0
    history: list[dict] = []
    ckpt = find_checkpoint(out, cfg.resume) if cfg.resume else None
    if cfg.resume == "latest" and ckpt is None and main:
        logger.warning("resume=latest but %s has no checkpoint: starting a new run", out)
    if ckpt is not None:
        state = load_checkpoint(accelerator, ckpt)
        global_step = int(state["step"])
        if state.get("data_fingerprint") != dataset_fingerprint(texts):
            logger.warning("resuming %s on different data than it was trained on", ckpt)
        history = [r for r in read_history(tracker.csv_path) if r["step"] <= global_step]
        if main:
            logger.info("resumed from %s at step %d", ckpt, global_step)
    else:
        set_seed(cfg.seed, device_specific=True)
    if main:
        tracker.begin(history)  # (re)writes losses.csv with the rows kept so far
    accelerator.init_trackers("sur-adapter")

    weights = LossWeights(cfg.noise_weight, cfg.llm_weight, cfg.quality_weight, cfg.identity_weight, cfg.gate_weight)
    # The complex prompt is always kept when rows are shared: a no-quality run's file serves the rest.
    with_complex = weights.quality > 0 or cfg.spell_fraction > 0 or bool(cfg.row_cache)
    kept = KeptRows(len(ds), row_file(cfg.row_cache, ds, frozen, cfg) if cfg.row_cache else None)
    unwrapped = accelerator.unwrap_model(module)

    def checkpoint(step: int) -> None:
        save_checkpoint(accelerator, out, step, unwrapped.adapter, total_limit=cfg.checkpoints_total_limit,
                        state={"micro_step": step * cfg.gradient_accumulation_steps,
                               "data_fingerprint": dataset_fingerprint(texts)})

    def validate(step: int) -> None:
        if not (main and cfg.validation_prompts and cfg.validation_seeds):
            return
        devices = [accelerator.device] if accelerator.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):  # validation must not shift the training RNG
            validation_grid(sd, unwrapped.adapter, cfg.validation_prompts, cfg.validation_seeds,
                            cfg.validation_steps, cfg.validation_guidance, out / "validation" / f"step-{step:06d}.png")
        unwrapped.adapter.train()

    micro = global_step * cfg.gradient_accumulation_steps
    window: list[dict] = []
    bar = tqdm(total=cfg.max_steps, initial=global_step, desc="train", unit="step",
               disable=not (main and cfg.progress))
    last_saved = last_validated = global_step
    module.train()
    while global_step < cfg.max_steps:
        epoch, start = divmod(micro, bpe)
        sampler.set_epoch(epoch, start)
        if hasattr(ds, "set_epoch"):
            ds.set_epoch(epoch)
        for batch in loader:
            index, dev = batch["index"], accelerator.device
            batch["pixel_values"] = batch["pixel_values"].to(dev)
            llm = cache.lookup(index).to(dev) if cache is not None else None
            rows = index.tolist()
            params_lat = (kept.latents.get(rows, lambda: [encode_latent_params(frozen.vae, batch["pixel_values"])],
                                           dev)[0] if cfg.cache_latents else None)
            text = (kept.text.get(rows, lambda: encode_batch_text(frozen, batch, with_complex), dev)
                    if cfg.cache_text else None)
            if main:
                kept.save_when_complete()
            with accelerator.accumulate(module):
                with accelerator.autocast():
                    terms = compute_losses(
                        module, frozen, batch, weights, llm_features=llm, latent_params=params_lat, text=text,
                        snr_gamma=cfg.snr_gamma,
                        official_detached=cfg.official_detached, llm_temperature=cfg.llm_temperature,
                        quality_temperature=cfg.quality_temperature, spell_fraction=cfg.spell_fraction,
                        canonical_fraction=cfg.canonical_fraction)
                accelerator.backward(terms["total"])
                lr = optimizer.param_groups[0]["lr"]
                if accelerator.sync_gradients and cfg.max_grad_norm:
                    accelerator.clip_grad_norm_(params, cfg.max_grad_norm)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            micro += 1
            window.append({k: v.detach().float() for k, v in terms.items()})
            if not accelerator.sync_gradients:
                continue
            global_step += 1
            stacked = torch.stack([torch.stack([w[k] for k in LOSS_TERMS]) for w in window])
            means = accelerator.reduce(stacked.mean(dim=0), reduction="mean").tolist()
            window = []
            values = {**dict(zip(LOSS_TERMS, means)), "lr": lr}
            history.append({"step": global_step, **values})
            accelerator.log(values, step=global_step)  # losses.csv, and losses.png every plot_every
            bar.update(1)
            bar.set_postfix(loss=f"{values['total']:.4g}", noise=f"{values['noise']:.4g}")
            if not all(math.isfinite(v) for v in means):
                raise FloatingPointError(f"non-finite loss at step {global_step}: {history[-1]}")
            if cfg.checkpoint_every and global_step % cfg.checkpoint_every == 0:
                checkpoint(global_step)
                last_saved = global_step
            if cfg.validate_every and global_step % cfg.validate_every == 0:
                validate(global_step)
                last_validated = global_step
            if global_step >= cfg.max_steps:
                break
    bar.close()

    if cfg.checkpoint_every and last_saved != global_step:
        checkpoint(global_step)
    if cfg.validate_every and last_validated != global_step:
        validate(global_step)
    accelerator.wait_for_everyone()
    if main:
        unwrapped.adapter.eval()
        unwrapped.adapter.save_pretrained(out / "adapter")
        logger.info("saved the adapter to %s", out / "adapter")
    accelerator.end_training()  # the tracker draws the final losses.png
    return history


__all__ = ["train", "compute_losses", "AdapterWithTeacher"]
