"""Named model presets: one small registry that the app, eval and bench share."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from .adapter import SURAdapter
from .convert import PAPER_BASE, PAPER_ETA, PAPER_REPO, eta_from_path, load_official_adapter, paper_adapter, with_eta
from .devices import default_device, default_dtype
from .pipeline import SURPipeline


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    load: Callable[..., SURPipeline]
    base: str | None = None
    # Sampling defaults of this model (app and eval use them unless told otherwise).
    default_steps: int = 50
    default_guidance: float = 7.5
    # Width of the token embeddings an adapter for this base rewrites (None: known once loaded).
    text_dim: int | None = None
    # The hub repo also has fp16 weight files (variant "fp16"): loaded in fp16, half the download.
    fp16_variant: bool = False


def _load_hub(name: str):
    """The loader of a hub base without a published adapter: `adapter` or SUR_ADAPTER names one.
    The adapter is loaded and its width checked first, so a wrong one fails before the base's
    download. The base is read from `PRESETS[name]` when called."""
    def load(adapter: str | SURAdapter | None = None, device=None, dtype=None, safety_checker: bool = True):
        preset = PRESETS[name]
        adapter = adapter or os.environ.get("SUR_ADAPTER")
        if adapter is None:
            raise ValueError(
                f"this preset ({preset.base}) has no published SUR-adapter yet: pass adapter=<folder or hub id> "
                "or set SUR_ADAPTER (train one with `python -m train.train_adapter`)"
            )
        if not isinstance(adapter, SURAdapter):
            adapter = SURAdapter.from_pretrained(adapter)
        if preset.text_dim is not None:
            adapter.check_text_width(preset.text_dim, where=f"{preset.base}'s text")
        device = torch.device(device) if device is not None else default_device()
        dtype = dtype or default_dtype(device)
        variant = {"variant": "fp16"} if preset.fp16_variant and dtype == torch.float16 else {}
        return SURPipeline.from_pretrained(preset.base, adapter=adapter, device=device, dtype=dtype,
                                           safety_checker=safety_checker, **variant)
    return load


def _paper_or_local_adapter(adapter, eta: float | None, cache_dir=None) -> SURAdapter:
    """The adapter of the `sur-paper` preset: the released one (downloaded and converted once), or
    `adapter` / SUR_ADAPTER: an instance, a surlib adapter folder or hub id, or an official
    checkpoint file (or a folder holding one), converted on the fly with eta from its path or 0.1."""
    adapter = adapter or os.environ.get("SUR_ADAPTER")
    if adapter is None:
        return paper_adapter(PAPER_REPO, cache_dir, eta=eta)
    if isinstance(adapter, SURAdapter):
        return with_eta(adapter, eta)
    local = Path(adapter).expanduser()
    if local.is_file() or (local.is_dir() and not (local / "config.json").exists()):
        if eta is None:
            eta = eta_from_path(local)
        return load_official_adapter(local, eta=PAPER_ETA if eta is None else eta, base_model=PAPER_BASE)
    return with_eta(SURAdapter.from_pretrained(adapter), eta)


def _load_paper(adapter: str | SURAdapter | None = None, device=None, dtype=None, safety_checker: bool = True,
                eta: float | None = None, cache_dir: str | None = None):
    """The paper's model: the base it was trained on plus its released adapter (GPU-sized).

    `eta` overrides the adapter's blend weight (default: from the checkpoint's path, else 0.1);
    `cache_dir` is where the converted adapter is kept (default `surlib.convert.default_cache_dir`)."""
    ada = _paper_or_local_adapter(adapter, eta, cache_dir)
    return SURPipeline.from_pretrained(PAPER_BASE, adapter=ada, device=device, dtype=dtype,
                                       safety_checker=safety_checker)


def _load_tiny(adapter: str | None = None, device=None, dtype=None, safety_checker: bool = False):
    """Random tiny UNet/VAE with the real MiniLM text encoder: plumbing only, images are noise."""
    from .minilm import load_minilm
    from .tiny import build_tiny_sd

    encoder, tokenizer = load_minilm()
    with tempfile.TemporaryDirectory() as tmp:
        sd = build_tiny_sd(tmp, text_encoder=encoder, tokenizer=tokenizer, seed=0, image_size=64)
    device = torch.device(device) if device else default_device()
    dtype = dtype or default_dtype(device)
    sd.to(device) if dtype == torch.float32 else sd.to(device=device, dtype=dtype)
    ada = SURAdapter.from_pretrained(adapter) if adapter else SURAdapter(
        text_dim=encoder.config.hidden_size, llm_dim=encoder.config.hidden_size, num_heads=4, ff_dim=512)
    return SURPipeline(sd, ada, name="tiny")


def _load_toy(adapter: str | None = None, device=None, dtype=None, safety_checker: bool = False,
              traced: bool = True):
    """The toy world's base model and adapter from assets/toy (no network).

    `traced` (on a CPU): run the UNet through per-shape traces, same images in less time
    (surlib/toy/traced_unet.py says why and what to do when torch.jit goes away); False keeps
    the plain diffusers UNet."""
    from .toy.base_model import ASSETS, load_toy_sd
    from .toy.traced_unet import TracedUNet

    sd = load_toy_sd()
    device = torch.device(device) if device else default_device()
    dtype = dtype or torch.float32  # toy models are small; fp32 everywhere keeps results exact
    sd.to(device) if dtype == torch.float32 else sd.to(device=device, dtype=dtype)
    if traced and device.type == "cpu":
        sd.unet = TracedUNet(sd.unet)
    path = adapter or (ASSETS / "adapter" if (ASSETS / "adapter" / "config.json").exists() else None)
    if path is None:
        # No trained toy adapter shipped yet: an identity adapter (eta = 0) keeps the
        # comparison honest (both images equal) instead of showing an untrained one.
        ada = SURAdapter(text_dim=sd.text_encoder.config.hidden_size, llm_dim=384, num_heads=4,
                         ff_dim=512, eta=0.0, base_model="toy")
    else:
        ada = SURAdapter.from_pretrained(path)
    return SURPipeline(sd, ada, name="toy")


TOY_STEPS, TOY_GUIDANCE = 10, 5.0
"""Toy sampling defaults (app and eval): the fewest steps that judged like fifty, and a guidance
that did not lose count accuracy on spells (the comparison is in docs/toy_world.md)."""


SDXL_STEPS, SDXL_GUIDANCE = 30, 5.0
"""SDXL base 1.0 sampling defaults: its default Euler scheduler converges in fewer steps than SD
1.x's 50, and SDXL is tuned for lower guidance than SD 1.x's 7.5 (higher oversaturates)."""


def toy_available() -> bool:
    from .toy.base_model import ASSETS

    return (ASSETS / "unet" / "config.json").exists() and (ASSETS / "vae" / "config.json").exists()


PRESETS: dict[str, Preset] = {p.name: p for p in [
    Preset("toy", "the toy world: MiniLM word-piece text encoder + small VAE/UNet trained here (offline, CPU)",
           _load_toy, default_steps=TOY_STEPS, default_guidance=TOY_GUIDANCE),
    Preset("tiny", "random tiny UNet/VAE + MiniLM text encoder; CPU plumbing demo, images are noise",
           _load_tiny, default_steps=2, default_guidance=5.0),
    Preset("sd15", "Stable Diffusion 1.5 (768-d CLIP); needs a trained SUR-adapter",
           _load_hub("sd15"), base="stable-diffusion-v1-5/stable-diffusion-v1-5", text_dim=768),
    Preset("sd21", "Stable Diffusion 2.1 (1024-d OpenCLIP); needs a trained SUR-adapter",
           _load_hub("sd21"), base="stabilityai/stable-diffusion-2-1", text_dim=1024),
    Preset("sdxl", f"Stable Diffusion XL base 1.0 (2048-d: two CLIP text encoders, 768 + 1280), "
           f"{SDXL_STEPS} steps, guidance {SDXL_GUIDANCE}; needs a trained SUR-adapter (SUR_ADAPTER) and a GPU",
           _load_hub("sdxl"), base="stabilityai/stable-diffusion-xl-base-1.0",
           default_steps=SDXL_STEPS, default_guidance=SDXL_GUIDANCE, text_dim=2048, fp16_variant=True),
    Preset("sur-paper", f"the paper's model: {PAPER_BASE} + the released SUR-adapter ({PAPER_REPO}, eta "
           f"{PAPER_ETA}); downloads several GB; needs a GPU", _load_paper, base=PAPER_BASE, text_dim=768),
]}


def default_preset() -> str:
    """The offline default: the toy world once its weights are in assets/, else `tiny`."""
    return "toy" if toy_available() else "tiny"


def load_preset(name: str, **kwargs) -> SURPipeline:
    """Load a preset by name; kwargs (adapter, device, dtype, safety_checker; `traced` for the
    toy preset; `eta` and `cache_dir` for sur-paper) go to its loader."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; available: {', '.join(sorted(PRESETS))}")
    return PRESETS[name].load(**kwargs)
