"""The diffusers pipelines a SUR-adapter pairs with: which one a base is, loading it, its text width.

Two families. `StableDiffusionPipeline` (SD 1.x / 2.x): one CLIP text encoder, whose last hidden
state is the UNet's cross-attention input and the adapter's input. `StableDiffusionXLPipeline`
(SDXL): two CLIP text encoders whose penultimate hidden states are concatenated along features
(768 + 1280 = 2048 for base 1.0) — that concatenation is the cross-attention input and the
adapter's input — plus a pooled vector from the second encoder's projection, which the UNet adds
to its timestep embedding (see `surlib.conditioning` for what the pair does with it).

Which family a base is comes from its `model_index.json` (`_class_name`), the file diffusers
itself reads to assemble a pipeline, so a folder or hub id loads as what it says it is. Any other
pipeline class is refused by name rather than loaded into a class it was not saved as.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import DiffusionPipeline, StableDiffusionPipeline, StableDiffusionXLPipeline

BASE_PIPELINES: dict[str, type] = {
    "StableDiffusionPipeline": StableDiffusionPipeline,
    "StableDiffusionXLPipeline": StableDiffusionXLPipeline,
}
# What `DiffusionPipeline.load_config` accepts of the keywords a caller passes for loading.
_CONFIG_KWARGS = ("cache_dir", "revision", "token", "local_files_only", "force_download", "proxies")


def base_pipeline_class(base: str, **load_kwargs) -> type:
    """The diffusers pipeline class of `base` (a folder or hub id), from its `model_index.json`."""
    config = DiffusionPipeline.load_config(str(base), **{k: v for k, v in load_kwargs.items()
                                                         if k in _CONFIG_KWARGS})
    name = config.get("_class_name")
    if name not in BASE_PIPELINES:
        raise ValueError(f"base model {base} is a {name} (its model_index.json says so); a SUR-adapter "
                         f"pairs with {' or '.join(BASE_PIPELINES)} bases")
    return BASE_PIPELINES[name]


def load_base_pipeline(base: str, torch_dtype: torch.dtype | None = None, safety_checker: bool = True,
                       **load_kwargs) -> Any:
    """`base` loaded with its own pipeline class (`base_pipeline_class`). `safety_checker=False`
    leaves SD's checker out; SDXL pipelines have none, so the flag does not apply to them."""
    cls = base_pipeline_class(base, **load_kwargs)
    if cls is StableDiffusionPipeline and not safety_checker:
        load_kwargs.update(safety_checker=None, requires_safety_checker=False)
    return cls.from_pretrained(str(base), torch_dtype=torch_dtype, **load_kwargs)


def is_sdxl(sd) -> bool:
    return isinstance(sd, StableDiffusionXLPipeline)


def text_encoders(sd) -> list:
    """The pipeline's text encoders in the order their outputs are concatenated."""
    if is_sdxl(sd):
        return [e for e in (sd.text_encoder, sd.text_encoder_2) if e is not None]
    return [sd.text_encoder]


def text_width(sd) -> int:
    """Width of the token embeddings the pipeline feeds its UNet, which the adapter rewrites:
    the text encoder's hidden size, or for SDXL the sum over both encoders."""
    return sum(int(e.config.hidden_size) for e in text_encoders(sd))


def text_width_source(sd) -> str:
    """Where `text_width` comes from, for error messages."""
    encoders = text_encoders(sd)
    if len(encoders) == 1:
        return "the base model's text encoder"
    parts = " + ".join(str(e.config.hidden_size) for e in encoders)
    return f"the base model's two text encoders ({parts}, concatenated)"


__all__ = ["BASE_PIPELINES", "base_pipeline_class", "load_base_pipeline", "is_sdxl", "text_encoders",
           "text_width", "text_width_source"]
