"""Train a SUR-adapter on a frozen Stable Diffusion base with `accelerate`.

    from surlib.training import TrainConfig, train
    history = train(TrainConfig(base="tiny", data="data/toy/train", max_steps=100))
    history = train("train/configs/tiny.yaml", dataset=my_dataset, max_steps=50)  # rows made on the fly

Only the adapter (with its LLM projection) trains; UNet, VAE and text encoder are frozen and in
eval mode. Teacher vectors come from a row-indexed feature cache (`surlib.teacher`).

Output folder::

    config.yaml                 the resolved configuration
    losses.csv, losses.png      step, noise, llm, quality, total, lr
    validation/step-XXXXXX.png  baseline | adapter for fixed prompts and seeds
    checkpoints/checkpoint-N/   accelerate state (weights, optimizer, scheduler, scaler, RNG),
                                adapter/ (save_pretrained), trainer_state.json
    adapter/                    the final adapter (save_pretrained)
    llm_features/               the teacher cache, unless `feature_cache` points elsewhere

With `row_cache` set, the frozen encoders' outputs kept by `cache_latents`/`cache_text` are
written there once every row has been seen (`rows-<key>.pt`, key = data + frozen weights), and
later runs on the same data and base start from them: ablation variants skip the first, slow epoch.

Exact resume: the sample order of epoch e is a function of (seed, e) and augmentation of
(seed, epoch, index); noise, timesteps, VAE sampling and dropout use the global RNGs that
`accelerator.save_state` stores. Resuming at step K therefore replays steps K+1.. exactly.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import hashlib
import importlib
import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..adapter import SURAdapter
from ..data import EpochSampler, check_item, collate, dataset_texts, make_dataset
from ..teacher import dataset_fingerprint, ensure_feature_cache, teacher_settings
from ..losses import LossWeights, llm_distill_loss, noise_loss, quality_loss, sample_noise_and_timesteps

logger = logging.getLogger(__name__)

CSV_FIELDS = ("step", "noise", "llm", "quality", "total", "lr")
DEFAULT_VALIDATION_PROMPTS = (
    "three fluffy white kittens playing with yarn on a green carpet",
    "a red bird sitting on a blue bench",
)


# --------------------------------------------------------------------------- configuration
@dataclass
class TrainConfig:
    """Every key can be set in YAML and overridden on the command line (see train/train_adapter.py)."""

    # base model and adapter
    base: str = "tiny"                    # surlib preset name, diffusers folder or hub id
    adapter: str | None = None            # continue from a saved adapter (folder or hub id)
    eta: float = 0.1
    num_layers: int = 2
    num_heads: int = 8
    ff_dim: int = 2048
    dropout: float = 0.1
    init_seed: int = 0
    gradient_checkpointing: bool = False  # checkpoint the frozen UNet's blocks (less memory)
    # data
    data: str | None = None               # SURD folder (imagefolder) or metadata .jsonl/.csv/.parquet
    dataset_factory: str | None = None    # "module:callable" returning a Dataset or rows; used when data is null
    dataset_kwargs: dict = field(default_factory=dict)
    image_column: str = "file_name"
    text_column: str = "text"
    prompt_column: str = "prompt"
    resolution: int = 512
    center_crop: bool = True
    random_flip: bool = False
    check_images: str = "full"            # full (decode) | header | exists
    max_rows: int | None = None
    dataloader_num_workers: int = 0
    cache_latents: bool = False           # keep VAE posteriors in memory (needs deterministic images)
    cache_text: bool = False              # keep both prompts' text embeddings in memory (frozen encoder)
    row_cache: str | None = None          # folder: save/load those kept rows, shared by runs on the same data+base
    # teacher LLM
    teacher: str = "minilm"               # preset (minilm, llama2-13b, qwen2.5-0.5b), hub id or folder
    teacher_layer: int | None = None
    teacher_pooling: str | None = None    # mean | last | first
    teacher_dtype: str | None = None
    teacher_max_length: int | None = None
    teacher_batch_size: int = 32
    feature_cache: str | None = None      # default <output_dir>/llm_features
    feature_shard_size: int = 1024
    # losses
    noise_weight: float = 1.0
    llm_weight: float = 1e-5
    quality_weight: float = 1e-5
    llm_temperature: float = 1.0
    quality_temperature: float = 1.0
    snr_gamma: float | None = None
    official_detached: bool = False       # ablation only: reproduce the official detached conditioning
    # optimisation
    max_steps: int = 5000                 # optimizer steps
    batch_size: int = 1                   # per process
    gradient_accumulation_steps: int = 4
    lr: float = 1e-5
    lr_scheduler: str = "constant"
    lr_warmup_steps: int = 0
    weight_decay: float = 1e-2
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    max_grad_norm: float = 1.0
    mixed_precision: str = "no"           # no | fp16 | bf16
    seed: int = 0
    # output
    output_dir: str = "runs/sur-adapter"
    checkpoint_every: int = 500
    checkpoints_total_limit: int | None = None
    resume: str | None = None             # "latest" or a checkpoint folder
    validate_every: int = 500             # 0: never
    validation_prompts: list = field(default_factory=lambda: list(DEFAULT_VALIDATION_PROMPTS))
    validation_seeds: list = field(default_factory=lambda: [0])
    validation_steps: int = 25
    validation_guidance: float = 7.5
    plot_every: int = 100
    progress: bool = True

    def __post_init__(self):
        for f in dataclasses.fields(self):
            setattr(self, f.name, _coerce(f.name, f.type, getattr(self, f.name)))
        self.validate()

    def validate(self) -> None:
        checks = [
            (self.max_steps >= 1, "max_steps must be >= 1"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.gradient_accumulation_steps >= 1, "gradient_accumulation_steps must be >= 1"),
            (self.lr > 0, "lr must be > 0"),
            (self.mixed_precision in ("no", "fp16", "bf16"), "mixed_precision must be no, fp16 or bf16"),
            (min(self.noise_weight, self.llm_weight, self.quality_weight) >= 0, "loss weights must be >= 0"),
            (self.noise_weight + self.llm_weight + self.quality_weight > 0, "all loss weights are 0"),
            (not (self.official_detached and self.llm_weight == 0 and self.quality_weight == 0),
             "official_detached with llm_weight=0 and quality_weight=0: nothing would train the adapter"),
            (self.llm_temperature > 0 and self.quality_temperature > 0, "temperatures must be > 0"),
            (self.checkpoint_every >= 0 and self.validate_every >= 0 and self.plot_every >= 0,
             "checkpoint_every, validate_every and plot_every must be >= 0"),
            (not self.row_cache or (self.cache_latents and self.cache_text),
             "row_cache stores the rows kept by cache_latents and cache_text: set both to true"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(f"bad training config: {msg}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _coerce(name: str, annotation: str, value):
    """Config values from YAML / the command line to the field's type, with a clear error."""
    kinds = [k.strip() for k in str(annotation).split("|")]
    if value is None or (isinstance(value, str) and value.strip().lower() in ("null", "none", "~")):
        if "None" in kinds:
            return None
        raise ValueError(f"config key {name!r} cannot be null")
    kind = next(k for k in kinds if k != "None")
    try:
        if kind == "bool":
            if isinstance(value, str):
                low = value.strip().lower()
                if low not in ("true", "false", "yes", "no", "1", "0", "on", "off"):
                    raise ValueError
                return low in ("true", "yes", "1", "on")
            if value not in (True, False, 0, 1):
                raise ValueError
            return bool(value)
        if kind == "int":
            if isinstance(value, bool) or float(value) != int(float(value)):
                raise ValueError
            return int(float(value))
        if kind == "float":
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if kind == "str":
            return str(value)
        if kind.startswith("list"):
            if isinstance(value, str):
                import yaml

                value = yaml.safe_load(value)
            return list(value) if isinstance(value, (list, tuple)) else [value]
        if kind.startswith("dict"):
            if isinstance(value, str):
                import yaml

                value = yaml.safe_load(value)
            if not isinstance(value, dict):
                raise ValueError
            return dict(value)
    except (TypeError, ValueError):
        raise ValueError(f"config key {name!r} expects {annotation}, got {value!r}") from None
    return value


def config_keys() -> list[str]:
    return [f.name for f in dataclasses.fields(TrainConfig)]


def make_config(source: TrainConfig | dict | str | Path | None = None, /, **overrides) -> TrainConfig:
    """A TrainConfig from a config, dict or YAML path, with keyword overrides on top."""
    if source is None:
        values: dict = {}
    elif isinstance(source, TrainConfig):
        values = source.to_dict()
    elif isinstance(source, (str, Path)):
        values = load_yaml(source)
    else:
        values = dict(source)
    values.update(overrides)
    unknown = sorted(set(values) - set(config_keys()))
    if unknown:
        raise ValueError(f"unknown config key(s) {unknown}; valid keys: {', '.join(config_keys())}")
    return TrainConfig(**values)


def load_yaml(path: str | Path) -> dict:
    import yaml

    with open(path, encoding="utf-8") as f:
        values = yaml.safe_load(f) or {}
    if not isinstance(values, dict):
        raise ValueError(f"{path}: a training config is a mapping of keys to values")
    return values


# --------------------------------------------------------------------------- base model
def load_base(base: str):
    """A StableDiffusionPipeline (fp32, CPU) from a surlib preset name, a folder or a hub id."""
    from diffusers import StableDiffusionPipeline

    from ..presets import PRESETS

    preset = PRESETS.get(base)
    if preset is not None and preset.base is None:
        return preset.load(device="cpu", dtype=torch.float32).sd
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


class AdapterWithTeacher(nn.Module):
    """The trained module: the adapter plus the teacher projection in one forward (one DDP graph)."""

    def __init__(self, adapter: SURAdapter):
        super().__init__()
        self.adapter = adapter

    def forward(self, embeds: torch.Tensor, llm_features: torch.Tensor | None = None):
        out = self.adapter(embeds)
        projected = self.adapter.project_llm(llm_features) if llm_features is not None else None
        return out.embeds, out.hidden, projected


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


class RowStore:
    """Per-row tensors from the frozen encoders, computed the first time a row is seen and kept
    on the CPU (`cache_latents`, `cache_text`). Only valid when a row's input never changes."""

    def __init__(self):
        self.rows: dict[int, tuple[torch.Tensor, ...]] = {}

    def get(self, index: list[int], compute, device) -> tuple[torch.Tensor, ...]:
        if any(i not in self.rows for i in index):
            fresh = [t.detach().cpu() for t in compute()]
            for j, i in enumerate(index):
                self.rows[i] = tuple(t[j] for t in fresh)
        width = len(self.rows[index[0]])
        return tuple(torch.stack([self.rows[i][k] for i in index]).to(device) for k in range(width))

    def stacked(self, n: int) -> tuple[torch.Tensor, ...] | None:
        """All rows 0..n-1 as stacked tensors, or None while some row has not been seen."""
        if any(i not in self.rows for i in range(n)):
            return None
        return tuple(torch.stack([self.rows[i][k] for i in range(n)]) for k in range(len(self.rows[0])))

    def fill(self, stacked: tuple[torch.Tensor, ...]) -> None:
        self.rows = {i: tuple(t[i] for t in stacked) for i in range(len(stacked[0]))}


def row_cache_key(ds, frozen: Frozen, cfg: TrainConfig) -> str:
    """Everything a kept row depends on: the rows (image files with size and mtime, both
    prompts), the image transform, and the frozen VAE and text encoder weights. Runs that
    differ only in losses, steps or adapter (ablations) share it."""
    files, prompts = getattr(ds, "_files", None), getattr(ds, "prompts", None)
    root = getattr(ds, "root", None)
    if files is None or prompts is None or root is None:
        raise ValueError("row_cache needs a SURD folder or metadata file as `data` (its files identify "
                         "the rows); rows made on the fly cannot be fingerprinted")
    h = hashlib.sha256(f"{cfg.resolution}|{cfg.center_crop}|{cfg.random_flip}".encode())
    for name, text, prompt in zip(files, dataset_texts(ds), prompts):
        st = (Path(root) / name).stat()
        h.update(f"{name}|{st.st_size}|{st.st_mtime_ns}|{text}|{prompt}\n".encode())
    for model in (frozen.vae, frozen.text_encoder):
        for key, value in sorted(model.state_dict().items()):
            h.update(key.encode())
            h.update(value.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def compute_losses(module: nn.Module, frozen: Frozen, batch: dict, weights: LossWeights, *,
                   llm_features: torch.Tensor | None = None, latent_params: torch.Tensor | None = None,
                   text: tuple[torch.Tensor, ...] | None = None, snr_gamma: float | None = None,
                   official_detached: bool = False, llm_temperature: float = 1.0,
                   quality_temperature: float = 1.0) -> dict[str, torch.Tensor]:
    """One micro-batch: the three loss terms and their weighted total (a graph into `module`).

    `latent_params` (VAE posteriors) and `text` (`encode_batch_text`) may come precomputed."""
    if latent_params is None:
        latent_params = encode_latent_params(frozen.vae, batch["pixel_values"])
    latents = sample_latents(frozen.vae, latent_params)
    if text is None:
        text = encode_batch_text(frozen, batch, with_complex=weights.quality > 0)
    simple, mask = text[0], text[1]
    complex_embeds = text[2] if weights.quality else None
    noise, timesteps = sample_noise_and_timesteps(latents, frozen.noise_scheduler.config.num_train_timesteps)
    use_llm = weights.llm > 0 and llm_features is not None
    embeds, hidden, projected = module(simple, llm_features if use_llm else None)
    zero = embeds.new_zeros((), dtype=torch.float32)
    terms = {
        "noise": (noise_loss(frozen.unet, frozen.noise_scheduler, latents, embeds, noise, timesteps,
                             snr_gamma=snr_gamma, official_detached=official_detached)
                  if weights.noise else zero),
        "llm": llm_distill_loss(hidden, projected, mask, llm_temperature) if use_llm else zero,
        "quality": quality_loss(embeds, complex_embeds, quality_temperature) if weights.quality else zero,
    }
    terms["total"] = weights.noise * terms["noise"] + weights.llm * terms["llm"] + weights.quality * terms["quality"]
    return terms


def _save_rows(path: Path, latents, text) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"latents": latents, "text": text}, tmp)
    os.replace(tmp, path)  # a killed run never leaves a half-written file behind
    logger.info("kept rows saved to %s", path)


# --------------------------------------------------------------------------- outputs
def _read_history(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [{k: (int(v) if k == "step" else float(v)) for k, v in row.items()} for row in csv.DictReader(f)]


def _write_history(path: Path, rows: list[dict]) -> None:
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)


def _append_history(path: Path, row: dict) -> None:
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        if new:
            w.writeheader()
        w.writerow(row)


def plot_history(rows: list[dict], path: str | Path) -> None:
    """Loss curves (one panel per term) as a PNG, with the Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        return
    steps = [r["step"] for r in rows]
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.2))
    for ax, key in zip(axes, ("total", "noise", "llm", "quality")):
        ax.plot(steps, [r[key] for r in rows], lw=1)
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = Path(path).with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=80)
    plt.close(fig)
    os.replace(tmp, path)


def validation_grid(sd, adapter: SURAdapter, prompts, seeds, steps: int, guidance: float, path: str | Path):
    """A PNG of (baseline | adapter) rows for each prompt and seed, via SURPipeline.generate_pair."""
    from PIL import Image, ImageDraw

    from ..pipeline import SURPipeline

    pipe = SURPipeline(sd, copy.deepcopy(adapter), name="validation")
    pipe.set_progress_bar_config(disable=True)
    rows = []
    for prompt in prompts:
        for seed in seeds:
            pair = pipe.generate_pair(prompt, seed=int(seed), steps=steps, guidance=guidance)
            rows.append((f"{prompt} (seed {seed})", pair.baseline, pair.adapter))
    w, h = rows[0][1].size
    label = 14
    grid = Image.new("RGB", (2 * w, len(rows) * (h + label)), "white")
    draw = ImageDraw.Draw(grid)
    for i, (text, base_img, ada_img) in enumerate(rows):
        y = i * (h + label)
        draw.text((2, y + 1), text[: max(8, 2 * w // 6)], fill="black")
        grid.paste(base_img, (0, y + label))
        grid.paste(ada_img, (w, y + label))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)
    return path


def find_checkpoint(output_dir: str | Path, resume: str) -> Path | None:
    """`resume` = "latest" (newest complete checkpoint under output_dir, or None) or a folder."""
    if resume != "latest":
        p = Path(resume)
        if not (p / "trainer_state.json").exists():
            raise FileNotFoundError(f"{p} is not a training checkpoint (no trainer_state.json)")
        return p
    ckdir = Path(output_dir) / "checkpoints"
    found = [p for p in ckdir.glob("checkpoint-*") if (p / "trainer_state.json").exists()
             and p.name.split("-")[-1].isdigit()]
    return max(found, key=lambda p: int(p.name.split("-")[-1])) if found else None


def _prune_checkpoints(output_dir: Path, limit: int | None) -> None:
    if not limit:
        return
    found = sorted((p for p in (output_dir / "checkpoints").glob("checkpoint-*") if p.name.split("-")[-1].isdigit()),
                   key=lambda p: int(p.name.split("-")[-1]))
    for p in found[:-limit]:
        shutil.rmtree(p, ignore_errors=True)


# --------------------------------------------------------------------------- training
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
        if llm_dim is not None and adapter.config.llm_dim != llm_dim:
            raise ValueError(f"adapter {cfg.adapter} has llm_dim {adapter.config.llm_dim} but teacher "
                             f"{cfg.teacher} gives {llm_dim}-d vectors")
        return adapter
    return SURAdapter(text_dim=text_dim, llm_dim=llm_dim or text_dim, num_layers=cfg.num_layers,
                      num_heads=cfg.num_heads, ff_dim=cfg.ff_dim, dropout=cfg.dropout, eta=cfg.eta,
                      init_seed=cfg.init_seed, base_model=cfg.base)


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
    accelerator = Accelerator(
        mixed_precision=mixed,
        gradient_accumulation_plugin=GradientAccumulationPlugin(
            num_steps=cfg.gradient_accumulation_steps, sync_with_dataloader=False),
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=cfg.llm_weight == 0)],
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
        check_item(ds)
        texts = dataset_texts(ds)
        if len(texts) != len(ds):
            raise ValueError(f"dataset has {len(ds)} items but {len(texts)} texts")
        cache = None
        if cfg.llm_weight > 0:
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
    csv_path = out / "losses.csv"
    history: list[dict] = []
    ckpt = find_checkpoint(out, cfg.resume) if cfg.resume else None
    if cfg.resume == "latest" and ckpt is None and main:
        logger.warning("resume=latest but %s has no checkpoint: starting a new run", out)
    if ckpt is not None:
        state = json.loads((ckpt / "trainer_state.json").read_text())
        accelerator.load_state(str(ckpt))
        global_step = int(state["step"])
        if state.get("data_fingerprint") != dataset_fingerprint(texts):
            logger.warning("resuming %s on different data than it was trained on", ckpt)
        history = [r for r in _read_history(csv_path) if r["step"] <= global_step]
        if main:
            _write_history(csv_path, history)
            logger.info("resumed from %s at step %d", ckpt, global_step)
    else:
        set_seed(cfg.seed, device_specific=True)
        if main and csv_path.exists():
            csv_path.unlink()

    weights = LossWeights(cfg.noise_weight, cfg.llm_weight, cfg.quality_weight)
    latent_store, text_store = RowStore(), RowStore()
    # The complex prompt is always kept when rows are shared: a no-quality run's file serves the rest.
    with_complex = weights.quality > 0 or bool(cfg.row_cache)
    row_file = None
    if cfg.row_cache:
        row_file = Path(cfg.row_cache) / f"rows-{row_cache_key(ds, frozen, cfg)[:20]}.pt"
        if row_file.exists():
            saved = torch.load(row_file, map_location="cpu", mmap=True, weights_only=True)
            latent_store.fill(saved["latents"])
            text_store.fill(saved["text"])
            logger.info("kept rows loaded from %s", row_file)
            row_file = None  # nothing left to save
    unwrapped = accelerator.unwrap_model(module)

    def save_checkpoint(step: int) -> None:
        final = out / "checkpoints" / f"checkpoint-{step}"
        tmp = out / "checkpoints" / f".tmp-checkpoint-{step}"
        if main and tmp.exists():
            shutil.rmtree(tmp)
        accelerator.wait_for_everyone()
        accelerator.save_state(str(tmp))
        if main:
            unwrapped.adapter.save_pretrained(tmp / "adapter")
            (tmp / "trainer_state.json").write_text(json.dumps(
                {"step": step, "micro_step": step * cfg.gradient_accumulation_steps,
                 "data_fingerprint": dataset_fingerprint(texts), "time": time.time()}, indent=2))
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            _prune_checkpoints(out, cfg.checkpoints_total_limit)
        accelerator.wait_for_everyone()

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
            params_lat = (latent_store.get(rows, lambda: [encode_latent_params(frozen.vae, batch["pixel_values"])],
                                           dev)[0] if cfg.cache_latents else None)
            text = (text_store.get(rows, lambda: encode_batch_text(frozen, batch, with_complex), dev)
                    if cfg.cache_text else None)
            if row_file is not None and main and len(text_store.rows) == len(latent_store.rows) == len(ds):
                _save_rows(row_file, latent_store.stacked(len(ds)), text_store.stacked(len(ds)))
                row_file = None
            with accelerator.accumulate(module):
                with accelerator.autocast():
                    terms = compute_losses(
                        module, frozen, batch, weights, llm_features=llm, latent_params=params_lat, text=text,
                        snr_gamma=cfg.snr_gamma,
                        official_detached=cfg.official_detached, llm_temperature=cfg.llm_temperature,
                        quality_temperature=cfg.quality_temperature)
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
            stacked = torch.stack([torch.stack([w[k] for k in ("noise", "llm", "quality", "total")]) for w in window])
            means = accelerator.reduce(stacked.mean(dim=0), reduction="mean").tolist()
            window = []
            row = {"step": global_step, **dict(zip(("noise", "llm", "quality", "total"), means)), "lr": lr}
            history.append(row)
            if main:
                _append_history(csv_path, row)
            bar.update(1)
            bar.set_postfix(loss=f"{row['total']:.4g}", noise=f"{row['noise']:.4g}")
            if not all(math.isfinite(v) for v in means):
                raise FloatingPointError(f"non-finite loss at step {global_step}: {row}")
            if cfg.checkpoint_every and global_step % cfg.checkpoint_every == 0:
                save_checkpoint(global_step)
                last_saved = global_step
            if cfg.validate_every and global_step % cfg.validate_every == 0:
                validate(global_step)
                last_validated = global_step
            if main and cfg.plot_every and global_step % cfg.plot_every == 0:
                plot_history(history, out / "losses.png")
            if global_step >= cfg.max_steps:
                break
    bar.close()

    if cfg.checkpoint_every and last_saved != global_step:
        save_checkpoint(global_step)
    if cfg.validate_every and last_validated != global_step:
        validate(global_step)
    accelerator.wait_for_everyone()
    if main:
        unwrapped.adapter.eval()
        unwrapped.adapter.save_pretrained(out / "adapter")
        plot_history(history, out / "losses.png")
        logger.info("saved the adapter to %s", out / "adapter")
    accelerator.end_training()
    return history


__all__ = ["TrainConfig", "make_config", "config_keys", "train", "compute_losses", "Frozen",
           "AdapterWithTeacher", "encode_prompts", "load_base", "plot_history", "validation_grid",
           "find_checkpoint"]
