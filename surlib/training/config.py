"""The training configuration: one typed dataclass, read from YAML and overridden by keywords.

Types are checked and coerced by pydantic (a pydantic dataclass), so YAML's strings such as
``1e-5`` become floats and ``"false"`` a bool. Two loosenings the command line relies on are
added here: the words null / none / ~ mean None, and a single value given for a list key is a
one-item list. Errors name the key and the type it expects; unknown keys are listed with the
valid ones.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ConfigDict, ValidationError, ValidationInfo, field_validator
from pydantic.dataclasses import dataclass

DEFAULT_VALIDATION_PROMPTS = (
    "three fluffy white kittens playing with yarn on a green carpet",
    "a red bird sitting on a blue bench",
)
NULL_WORDS = ("null", "none", "~")


@dataclass(config=ConfigDict(extra="forbid", coerce_numbers_to_str=True))
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
    residual: bool = False                # adapter output x + eta*fc(h) instead of the paper's eta*fc(h) + (1-eta)*x
    gate: str | None = None               # token | prompt: a gate on the adapter's change (closed: the input passes exactly)
    gradient_checkpointing: bool = False  # checkpoint the frozen UNet's blocks (less memory)
    # data
    data: str | None = None               # SURD folder (imagefolder) or metadata .jsonl/.csv/.parquet
    dataset_factory: str | None = None    # "module:callable" returning a Dataset or rows; used when data is null
    dataset_kwargs: dict = field(default_factory=dict)
    image_column: str = "file_name"
    text_column: str = "text"
    prompt_column: str = "prompt"
    canonical_column: str | None = None   # extra column of captions the base already renders right (identity rows)
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
    teacher_vectors: str | None = None    # released vectors {simple prompt: tensor} (SURD's 39.pt) instead of
                                          # running the teacher; rows without one are skipped (surlib.surd)
    # losses
    noise_weight: float = 1.0
    llm_weight: float = 1e-5
    quality_weight: float = 1e-5
    llm_temperature: float = 1.0
    quality_temperature: float = 1.0
    snr_gamma: float | None = None
    official_detached: bool = False       # ablation only: reproduce the official detached conditioning
    spell_fraction: float = 0.0           # share of rows whose adapter input is the spell (complex prompt)
    canonical_fraction: float = 0.0       # share of rows whose adapter input is the canonical_column caption
    identity_weight: float = 0.0          # on both kinds of rows: keep the adapter's output near its input
    gate_weight: float = 0.0              # gate: prompt only: teach the gate to close on identity rows, open on the rest
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

    @field_validator("*", mode="before")
    @classmethod
    def _loosen(cls, value: Any, info: ValidationInfo) -> Any:
        """What pydantic's own coercion does not do: null words, YAML text for lists and dicts,
        a scalar for a list, and no bools for numbers (True is not a learning rate)."""
        kind = str(cls.__dataclass_fields__[info.field_name].type)
        if isinstance(value, os.PathLike):  # paths (output_dir=Path(...)) are kept as strings
            return os.fspath(value)
        if isinstance(value, str) and value.strip().lower() in NULL_WORDS:
            return None
        if kind in ("list", "dict") and isinstance(value, str):
            value = yaml.safe_load(value)
        if kind == "list" and not isinstance(value, (list, tuple)):
            return [value]
        if isinstance(value, bool) and kind.split(" |")[0] in ("int", "float"):
            raise ValueError("a bool is not a number")
        if isinstance(value, str) and kind.startswith("int"):
            try:  # "1e3" and "4.0" name whole numbers; the int check itself is pydantic's
                return float(value)
            except ValueError:
                return value
        return value

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        checks = [
            (self.max_steps >= 1, "max_steps must be >= 1"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.gradient_accumulation_steps >= 1, "gradient_accumulation_steps must be >= 1"),
            (self.lr > 0, "lr must be > 0"),
            (self.mixed_precision in ("no", "fp16", "bf16"), "mixed_precision must be no, fp16 or bf16"),
            (min(self.noise_weight, self.llm_weight, self.quality_weight, self.identity_weight,
                 self.gate_weight) >= 0,
             "loss weights must be >= 0"),
            (0.0 <= self.spell_fraction <= 1.0, "spell_fraction must be in [0, 1]"),
            (0.0 <= self.canonical_fraction <= 1.0, "canonical_fraction must be in [0, 1]"),
            (self.spell_fraction + self.canonical_fraction <= 1.0,
             "spell_fraction + canonical_fraction must be <= 1 (they are shares of the same rows)"),
            (self.canonical_fraction == 0 or bool(self.canonical_column),
             "canonical_fraction needs canonical_column: the data column holding the canonical captions"),
            (self.identity_weight == 0 or self.spell_fraction + self.canonical_fraction > 0,
             "identity_weight applies to spell and canonical rows: set spell_fraction or canonical_fraction > 0"),
            (self.gate in (None, "token", "prompt"), f"gate must be token, prompt or null, got {self.gate!r}"),
            (self.gate is None or self.identity_weight > 0,
             "a gate learns where to close from the identity rows: set identity_weight > 0 with spell or "
             "canonical rows"),
            (self.gate_weight == 0 or self.gate == "prompt",
             "gate_weight trains a prompt gate: set gate: prompt (a token gate has no per-token labels)"),
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


def config_keys() -> list[str]:
    return [f.name for f in dataclasses.fields(TrainConfig)]


def _clear_error(error: ValidationError) -> ValueError:
    """pydantic's report as one line naming the first bad key and what it expects."""
    first = error.errors()[0]
    name = str(first["loc"][0]) if first["loc"] else ""
    if name not in TrainConfig.__dataclass_fields__:  # a check of validate(), or _loosen's refusal
        return ValueError(str(first.get("ctx", {}).get("error", first["msg"])))
    if first["input"] is None:
        return ValueError(f"config key {name!r} cannot be null")
    kind = TrainConfig.__dataclass_fields__[name].type
    return ValueError(f"config key {name!r} expects {kind}, got {first['input']!r}")


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
    try:
        return TrainConfig(**values)
    except ValidationError as e:
        raise _clear_error(e) from None


def load_yaml(path: str | Path) -> dict:
    with open(path, encoding="utf-8") as f:
        values = yaml.safe_load(f) or {}
    if not isinstance(values, dict):
        raise ValueError(f"{path}: a training config is a mapping of keys to values")
    return values


__all__ = ["TrainConfig", "make_config", "config_keys", "load_yaml", "DEFAULT_VALIDATION_PROMPTS"]
