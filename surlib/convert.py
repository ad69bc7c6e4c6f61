"""Load checkpoints of the official SUR-adapter code (Qrange-group/SUR-adapter) into `SURAdapter`.

The official training script saves `adapter.state_dict()` of its `Adapter(depth, adapter_weight,
sd_text_size)` with `torch.save` (`adapter.pt`, `adapter_checkpoint<step>.pt`). Its key names and
ours:

    official                                        surlib
    transformer_encoder.layers.{i}.<layer keys>     transformer.layers.{i}.<layer keys>
    attention.query_layer.{weight,bias}             attention.to_q.{weight,bias}
    attention.key_layer.{weight,bias}               attention.to_k.{weight,bias}
    attention.output_layer.{0,2}.{weight,bias}      attention.ff.{0,2}.{weight,bias}
    fc.{weight,bias}                                fc.{weight,bias}
    encoder_layer.*                                 dropped (a copy the encoder never uses)
    attention.value_layer.*                         dropped (never used: values are the input)
    (absent)                                        llm_proj: kept at our seeded init, untrained

What the file does not hold, and the caller must give: `eta` (the script's `--adapter_weight`;
the official demo parsed it out of the folder name, e.g. `..._adapterw0.1`) and the LLM width.

The official transformer ran with `batch_first=False` on (batch, tokens, width) input, so it
attended across the batch instead of across a prompt's tokens (see docs/method.md, defect
2). The weight layout is the same either way; a converted adapter applies them as intended, over
each prompt's tokens. It therefore does not reproduce the official code's outputs exactly: with
the official batch of one during training, each token's transformer only ever saw itself.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Mapping

import torch

from .adapter import SURAdapter

# nn.TransformerEncoderLayer parameter names (the same in both codebases).
_LAYER_KEYS = frozenset({
    "self_attn.in_proj_weight", "self_attn.in_proj_bias",
    "self_attn.out_proj.weight", "self_attn.out_proj.bias",
    "linear1.weight", "linear1.bias", "linear2.weight", "linear2.bias",
    "norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias",
})
_RENAMES = {
    "attention.query_layer.weight": "attention.to_q.weight",
    "attention.query_layer.bias": "attention.to_q.bias",
    "attention.key_layer.weight": "attention.to_k.weight",
    "attention.key_layer.bias": "attention.to_k.bias",
    "attention.output_layer.0.weight": "attention.ff.0.weight",
    "attention.output_layer.0.bias": "attention.ff.0.bias",
    "attention.output_layer.2.weight": "attention.ff.2.weight",
    "attention.output_layer.2.bias": "attention.ff.2.bias",
    "fc.weight": "fc.weight",
    "fc.bias": "fc.bias",
}
_DROPPED_PREFIXES = ("encoder_layer.", "attention.value_layer.")
_LAYER_RE = re.compile(r"^transformer_encoder\.layers\.(\d+)\.(.+)$")
OFFICIAL_NUM_HEADS = 8  # hard-coded in the official Adapter; not recoverable from the weights
_CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors")


def _strip_wrappers(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Accept `{"state_dict": {...}}` and DataParallel/DDP `module.` prefixes."""
    if "state_dict" in state_dict and isinstance(state_dict["state_dict"], Mapping):
        state_dict = state_dict["state_dict"]
    state_dict = dict(state_dict)
    if state_dict and all(k.startswith("module.") for k in state_dict):
        state_dict = {k[len("module."):]: v for k, v in state_dict.items()}
    return state_dict


def convert_official_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an official `Adapter` state dict to `SURAdapter` names, dropping unused layers.

    Raises ValueError listing every key it does not recognise. Completeness (missing keys) is
    checked by `load_official_adapter`, which knows the expected layer count.
    """
    state_dict = _strip_wrappers(state_dict)
    converted: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for key, value in state_dict.items():
        if key.startswith(_DROPPED_PREFIXES):
            continue
        layer = _LAYER_RE.match(key)
        if layer and layer.group(2) in _LAYER_KEYS:
            converted[f"transformer.layers.{layer.group(1)}.{layer.group(2)}"] = value
        elif key in _RENAMES:
            converted[_RENAMES[key]] = value
        else:
            unknown.append(key)
    if unknown:
        hint = ""
        if any(k.startswith(("transformer.layers.", "attention.to_q", "llm_proj")) for k in unknown):
            hint = " (this looks like a surlib adapter already: load it with SURAdapter.from_pretrained)"
        raise ValueError(
            f"not an official SUR-adapter checkpoint: {len(unknown)} unknown key(s): "
            f"{_listing(sorted(unknown))}{hint}"
        )
    if not converted:
        raise ValueError("not an official SUR-adapter checkpoint: no adapter weights found")
    return converted


def _read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if path.is_dir():
        candidates = sorted(p for p in path.iterdir() if p.suffix in _CHECKPOINT_SUFFIXES)
        if len(candidates) != 1:
            found = ", ".join(p.name for p in candidates) or "none"
            raise ValueError(f"expected exactly one checkpoint file ({'/'.join(_CHECKPOINT_SUFFIXES)}) "
                             f"in {path}, found: {found}; pass the file itself")
        path = candidates[0]
    if not path.is_file():
        raise FileNotFoundError(f"no official SUR-adapter checkpoint at {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    # weights_only: an official checkpoint is a plain state dict; refuse arbitrary pickles.
    return torch.load(path, map_location="cpu", weights_only=True)


def load_official_adapter(
    path_or_state_dict: str | Path | Mapping[str, torch.Tensor],
    eta: float | None = None,
    llm_dim: int = 5120,
    *,
    num_heads: int = OFFICIAL_NUM_HEADS,
    dropout: float = 0.1,
    init_seed: int = 0,
    base_model: str | None = None,
) -> SURAdapter:
    """An official checkpoint (file, folder with one file, or state dict) as a `SURAdapter`.

    `eta` is required: the official file does not store it. Text width, layer count and
    feed-forward width are read from the weights; `llm_proj` (absent from official files) keeps
    its seeded initialisation and a warning says so. The result is in eval mode, float32.
    """
    if eta is None:
        raise ValueError(
            "eta is required: official SUR-adapter checkpoints do not store it. Pass the value the "
            "adapter was trained with (the training script's --adapter_weight, which the official "
            "scripts put in the output folder name as 'adapterw<eta>'; the paper's runs used 0.1)"
        )
    eta = float(eta)
    if isinstance(path_or_state_dict, Mapping):
        state_dict = path_or_state_dict
    else:
        state_dict = _read_checkpoint(path_or_state_dict)
    converted = convert_official_state_dict(state_dict)

    layer_ids = {int(m.group(1)) for k in converted if (m := re.match(r"^transformer\.layers\.(\d+)\.", k))}
    if not layer_ids:
        raise ValueError("official SUR-adapter checkpoint is incomplete: no transformer_encoder.layers.<i>.* "
                         "keys, so the transformer depth and text width cannot be read")
    first = min(layer_ids)
    width_keys = [f"transformer.layers.{first}.self_attn.in_proj_weight", f"transformer.layers.{first}.norm1.weight",
                  f"transformer.layers.{first}.linear1.weight", "attention.to_q.weight", "fc.weight"]
    width_key = next((k for k in width_keys if k in converted), None)
    if width_key is None:
        raise ValueError("official SUR-adapter checkpoint is incomplete: none of "
                         f"{', '.join(width_keys)} is present to read the text width from")
    text_dim = int(converted[width_key].shape[-1])
    ff_key = f"transformer.layers.{first}.linear1.weight"
    ff_dim = int(converted[ff_key].shape[0]) if ff_key in converted else 2048

    adapter = SURAdapter(text_dim=text_dim, llm_dim=llm_dim, num_layers=max(layer_ids) + 1,
                         num_heads=num_heads, ff_dim=ff_dim, dropout=dropout, eta=eta,
                         init_seed=init_seed, base_model=base_model)
    expected = {k: v for k, v in adapter.state_dict().items() if not k.startswith("llm_proj.")}
    missing = sorted(set(expected) - set(converted))
    if missing:
        raise ValueError(f"official SUR-adapter checkpoint is incomplete: {len(missing)} missing key(s): "
                         + _listing([_official_name(k) for k in missing]))
    mismatched = [f"{_official_name(k)}: {tuple(converted[k].shape)}, expected {tuple(v.shape)}"
                  for k, v in expected.items() if converted[k].shape != v.shape]
    if mismatched:
        raise ValueError(f"official SUR-adapter checkpoint has inconsistent shapes (text width {text_dim} "
                         f"read from {_official_name(width_key)}): " + "; ".join(mismatched))

    adapter.load_state_dict(converted, strict=False)
    warnings.warn(
        "official SUR-adapter checkpoints do not contain the LLM projection: `llm_proj` keeps its "
        f"seeded random initialisation (init_seed={init_seed}) and is untrained. Inference does not "
        "use it; retrain it before using the distillation loss.",
        UserWarning, stacklevel=2,
    )
    return adapter.eval()


def _listing(keys: list[str], limit: int = 40) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... and {len(keys) - limit} more" if len(keys) > limit else "")


def _official_name(key: str) -> str:
    """Our key name back in the official naming, for error messages."""
    for official, ours in _RENAMES.items():
        if key == ours:
            return official
    return key.replace("transformer.layers.", "transformer_encoder.layers.", 1)


__all__ = ["convert_official_state_dict", "load_official_adapter"]
