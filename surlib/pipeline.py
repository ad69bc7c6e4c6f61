"""Baseline and SUR-adapter images from one Stable Diffusion (1.x, 2.x or XL) pipeline.

`SURPipeline` is orchestration only: the wrapped diffusers pipeline encodes the prompt, the
adapter rewrites the conditional token embeddings (never the negative ones), and the same
diffusers pipeline denoises with `prompt_embeds` / `negative_prompt_embeds` (and, for SDXL, the
pooled vectors, kept as encoded: `surlib.conditioning` says why). A pair is one batch of two with
identical starting noise, so the comparison is fair and costs about one generation.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
from diffusers.utils.torch_utils import randn_tensor

from .adapter import SURAdapter, gate_opening
from .bases import load_base_pipeline, text_width, text_width_source
from .conditioning import PromptConditioning, encode_conditioning
from .devices import default_device, default_dtype
from .inputs import check_number, check_unicode
from .names import VARIANTS

logger = logging.getLogger(__name__)

MAX_STEPS = 500
MAX_SEED = 2**32 - 1
MAX_GUIDANCE = 50.0
MAX_SPELL_CHARS = 2000


@dataclass
class Generation:
    """Images keyed by variant ("baseline", "adapter"), plus what made them and how long it took.
    `gate`: how open the adapter's prompt gate was for this prompt (0: it passed the prompt
    unchanged, so both images are the same), None for an adapter without one."""

    images: dict[str, Any]
    prompt: str
    seed: int
    steps: int
    guidance: float
    negative_prompt: str | None
    timings: dict[str, float] = field(default_factory=dict)
    nsfw: dict[str, bool] = field(default_factory=dict)
    gate: float | None = None

    @property
    def baseline(self):
        return self.images.get("baseline")

    @property
    def adapter(self):
        return self.images.get("adapter")


def validate_request(prompt, seed, steps, guidance, negative_prompt=None, max_prompt_chars=1000):
    """Check user-facing arguments; returns them normalised or raises ValueError naming the problem."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("prompt must be a non-empty string")
    if len(prompt) > max_prompt_chars:
        raise ValueError(f"prompt is {len(prompt)} characters long; at most {max_prompt_chars} are accepted")
    if negative_prompt is not None and not isinstance(negative_prompt, str):
        raise ValueError("negative_prompt must be a string or None")
    if negative_prompt is not None and len(negative_prompt) > max_prompt_chars:
        raise ValueError(f"negative prompt is {len(negative_prompt)} characters; at most {max_prompt_chars}")
    check_unicode("prompt", prompt)
    if negative_prompt is not None:
        check_unicode("negative prompt", negative_prompt)
    seed = check_number("seed", seed, 0, MAX_SEED, integer=True)
    steps = check_number("steps", steps, 1, MAX_STEPS, integer=True)
    guidance = check_number("guidance", guidance, 0.0, MAX_GUIDANCE, integer=False)
    return prompt.strip(), seed, steps, guidance, (negative_prompt or None)


class SURPipeline:
    """A diffusers `StableDiffusionPipeline` or `StableDiffusionXLPipeline` plus a `SURAdapter`,
    moved and typed together. For SDXL the adapter rewrites the 2048-wide concatenation of both
    text encoders' token embeddings; both images of a pair take the prompt's pooled vector."""

    def __init__(self, sd: StableDiffusionPipeline | StableDiffusionXLPipeline, adapter: SURAdapter,
                 name: str | None = None):
        adapter.check_text_width(text_width(sd), where=text_width_source(sd))
        unet_width = sd.unet.config.cross_attention_dim
        if unet_width != adapter.config.text_dim:
            adapter.check_text_width(unet_width, where="the UNet's cross-attention")
        warn_if_other_base(adapter, sd, name)
        self.sd = sd
        self.adapter = adapter.to(device=sd.device, dtype=sd.unet.dtype).eval()
        self.name = name
        # Diffusers schedulers keep per-call state, so one generation at a time per pipeline.
        self._lock = threading.Lock()

    # ----------------------------------------------------------------------------- loading
    @classmethod
    def from_pretrained(
        cls,
        base: str,
        adapter: str | SURAdapter,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        safety_checker: bool = True,
        adapter_subfolder: str | None = None,
        **sd_kwargs,
    ) -> "SURPipeline":
        """Load a Stable Diffusion base (hub id or folder) and an adapter (hub id, folder or model).

        The base loads as the pipeline class its `model_index.json` names (`StableDiffusionPipeline`
        or `StableDiffusionXLPipeline`; `surlib.bases`). `safety_checker` applies to SD 1.x / 2.x
        (SDXL pipelines have none); `sd_kwargs` go to the diffusers `from_pretrained`."""
        device = torch.device(device) if device is not None else default_device()
        dtype = dtype or default_dtype(device)
        sd = load_base_pipeline(base, torch_dtype=dtype, safety_checker=safety_checker, **sd_kwargs)
        if not isinstance(adapter, SURAdapter):
            adapter = SURAdapter.from_pretrained(adapter, subfolder=adapter_subfolder)
        pipe = cls(sd.to(device), adapter, name=str(base))
        return pipe

    def to(self, device=None, dtype=None) -> "SURPipeline":
        self.sd.to(device=device, dtype=dtype)
        self.adapter.to(device=self.sd.device, dtype=self.sd.unet.dtype)
        return self

    @property
    def device(self) -> torch.device:
        return self.sd.device

    @property
    def dtype(self) -> torch.dtype:
        return self.sd.unet.dtype

    @property
    def components(self) -> dict[str, Any]:
        return {**self.sd.components, "adapter": self.adapter}

    def set_progress_bar_config(self, **kwargs):
        self.sd.set_progress_bar_config(**kwargs)

    # ----------------------------------------------------------------------------- prompt
    def conditioning(self, prompts, negative_prompt=None, guidance: float = 7.5) -> PromptConditioning:
        """Everything the base is conditioned on for prompts and negatives (token embeddings, and
        SDXL's pooled vectors), exactly as the pipeline makes them."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        return encode_conditioning(self.sd, prompts, self.device, guidance, negative_prompt)

    def encode(self, prompts, negative_prompt=None, guidance: float = 7.5):
        """Token embeddings of prompts and negatives (None without guidance), exactly as the
        pipeline makes them: what the adapter rewrites."""
        c = self.conditioning(prompts, negative_prompt, guidance)
        return c.embeds, c.negative

    @torch.no_grad()
    def adapt(self, embeds: torch.Tensor, eta: float | None = None) -> torch.Tensor:
        return self.adapter(embeds.to(self.adapter.dtype), eta=eta).embeds.to(embeds.dtype)

    # ----------------------------------------------------------------------------- generation
    def initial_latents(self, seed: int, height: int, width: int) -> torch.Tensor:
        """The starting noise for a seed: drawn on the CPU so it is the same on every device."""
        shape = (1, self.sd.unet.config.in_channels, height // self.sd.vae_scale_factor,
                 width // self.sd.vae_scale_factor)
        gen = torch.Generator("cpu").manual_seed(seed)
        return randn_tensor(shape, generator=gen, dtype=torch.float32).to(self.device, self.dtype)

    def generate_pair(self, prompt: str, seed: int = 0, steps: int = 25, guidance: float = 7.5,
                      negative_prompt: str | None = None, height: int | None = None,
                      width: int | None = None, output_type: str = "pil", eta: float | None = None,
                      spell: str | None = None) -> Generation:
        """Baseline and adapted image in one batched denoising pass from identical noise.

        `eta` overrides the adapter's strength for this pair (0: the adapter image is the
        baseline). `spell`, when given, adds a third image to the same batch and noise: the base
        model given that prompt (what the adapter aims at), as `images["spell"]`."""
        if spell is not None:
            if not isinstance(spell, str) or not spell.strip():
                raise ValueError("spell must be a non-empty string or None")
            if len(spell) > MAX_SPELL_CHARS:
                raise ValueError(f"spell is {len(spell)} characters long; at most {MAX_SPELL_CHARS} are accepted")
        return self._run([prompt], [seed], steps, guidance, negative_prompt, height, width, output_type,
                         VARIANTS, eta=eta, spell=spell.strip() if spell else None)[0]

    def generate_pairs(self, prompts: list[str], seeds: list[int], steps: int = 25, guidance: float = 7.5,
                       negative_prompt: str | None = None, height: int | None = None,
                       width: int | None = None, output_type: str = "pil") -> list[Generation]:
        """Many pairs in one denoising batch (evaluation: it fills a GPU, and on a CPU it saves the
        per-call costs that dominate at few steps).
        Item i equals `generate_pair(prompts[i], seeds[i])` up to float rounding."""
        if isinstance(prompts, str) or isinstance(seeds, (int, float)):
            raise ValueError("generate_pairs takes a list of prompts and a list of seeds; "
                             "use generate_pair for one prompt")
        prompts, seeds = list(prompts), list(seeds)
        if not prompts or len(prompts) != len(seeds):
            raise ValueError(f"generate_pairs needs one seed per prompt and at least one prompt, "
                             f"got {len(prompts)} prompts and {len(seeds)} seeds")
        return self._run(prompts, seeds, steps, guidance, negative_prompt, height, width, output_type, VARIANTS)

    def generate(self, prompt: str, variant: str = "adapter", seed: int = 0, steps: int = 25,
                 guidance: float = 7.5, negative_prompt: str | None = None, height: int | None = None,
                 width: int | None = None, output_type: str = "pil") -> Generation:
        """One image, baseline or adapter; the same seed gives the same image as in a pair."""
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        return self._run([prompt], [seed], steps, guidance, negative_prompt, height, width, output_type,
                         (variant,))[0]

    def _run(self, prompts, seeds, steps, guidance, negative_prompt, height, width, output_type, variants,
             eta=None, spell=None):
        _, _, steps, guidance, negative_prompt = validate_request(prompts[0], seeds[0], steps, guidance,
                                                                  negative_prompt)
        checked = [_validate_item(i, p, s, len(prompts)) for i, (p, s) in enumerate(zip(prompts, seeds))]
        prompts, seeds = [c[0] for c in checked], [c[1] for c in checked]
        default_size = self.sd.unet.config.sample_size * self.sd.vae_scale_factor
        height, width = height or default_size, width or default_size
        multiple = self.sd.vae_scale_factor * 2 ** (len(self.sd.unet.config.block_out_channels) - 1)
        if height % multiple or width % multiple:
            raise ValueError(f"height and width must be multiples of {multiple}, got {height}x{width}")
        if spell is not None:  # one pair only (generate_pair): the spell rides in the same batch
            variants = tuple(variants) + ("spell",)
        n, k = len(variants), len(prompts)
        with self._lock:
            t0 = time.perf_counter()
            encoded = self.conditioning(prompts + ([spell] if spell is not None else []), negative_prompt, guidance)
            t1 = _sync(self.device)
            rows = {"baseline": encoded[:k]}
            gates = [None] * k
            if "adapter" in variants:  # new token embeddings; the prompt's pooled vector is kept
                embeds = rows["baseline"].embeds
                with torch.no_grad():
                    out = self.adapter(embeds.to(self.adapter.dtype), eta=eta)
                rows["adapter"] = rows["baseline"].with_embeds(out.embeds.to(embeds.dtype))
                if self.adapter.config.gate == "prompt":  # one gate per prompt: how open it was
                    gates = gate_opening(out.gate_score).flatten().tolist()
            if spell is not None:
                rows["spell"] = encoded[k:]
            t2 = _sync(self.device)
            # Batch order: prompt-major, variants of one prompt side by side.
            batch = PromptConditioning.interleave([rows[v] for v in variants])
            latents = torch.cat([self.initial_latents(s, height, width).repeat(n, 1, 1, 1) for s in seeds])
            # One generator per image, each seeded from its prompt's seed, so stochastic schedulers
            # add the same noise to both images of a pair (and the same as a single generation).
            generators = [torch.Generator("cpu").manual_seed(s + 1) for s in seeds for _ in variants]
            out = self.sd(
                **batch.pipeline_kwargs(), latents=latents, num_inference_steps=steps, guidance_scale=guidance,
                generator=generators, height=height, width=width, output_type=output_type,
            )
            t3 = _sync(self.device)
        # SDXL pipelines have no safety checker (and no such field).
        nsfw = getattr(out, "nsfw_content_detected", None) or [False] * (n * k)
        timings = {"encode_s": t1 - t0, "adapter_s": t2 - t1, "denoise_s": t3 - t2, "total_s": t3 - t0}
        if k > 1:
            timings["batch_pairs"] = k
        return [Generation(
            images=dict(zip(variants, out.images[i * n:(i + 1) * n])), prompt=prompts[i], seed=seeds[i],
            steps=steps, guidance=guidance, negative_prompt=negative_prompt, timings=dict(timings),
            nsfw={v: bool(f) for v, f in zip(variants, nsfw[i * n:(i + 1) * n])}, gate=gates[i],
        ) for i in range(k)]


_HUB_CACHE_RE = re.compile(r"models--([^/\\]+?)--([^/\\]+)")


def base_aliases(name: str | None) -> set[str]:
    """Spellings of one base model, lower-cased: as given, the hub id inside a hub-cache snapshot
    path (`.../models--org--name/snapshots/...`), the resolved local folder, and the hub id of a
    surlib preset name (an adapter trained with `base: sd15` records "sd15")."""
    if not name:
        return set()
    name = str(name).strip().rstrip("/\\")
    out = {name.lower()}
    if m := _HUB_CACHE_RE.search(name):
        out.add(f"{m.group(1)}/{m.group(2)}".lower())
    try:
        local = Path(name).expanduser()
        if local.exists():
            out.add(str(local.resolve()).lower())
    except (OSError, RuntimeError):  # not a usable path (too long, no home directory): a name only
        pass
    from .presets import PRESETS  # lazy: presets imports this module

    if name in PRESETS and PRESETS[name].base:
        out.add(PRESETS[name].base.lower())
    return out


def warn_if_other_base(adapter: SURAdapter, sd, name: str | None = None) -> bool:
    """Log a warning (and return True) when the adapter records the base it was trained on and the
    pipeline's base is another. Same width is not the same model: an adapter learns its base's
    embedding space (the paper's checkpoint, trained on Realistic Vision V2.0, gives broken images
    on SD 1.5). The base is known by its `name_or_path`, else by `name` when that is a preset; an
    unknown base (a pipeline built in memory) is not compared. Widths that differ stay an error."""
    trained_on = adapter.config.get("base_model")
    paired = getattr(sd, "name_or_path", None)
    if not paired and name:
        from .presets import PRESETS

        paired = name if name in PRESETS else None
    if not trained_on or not paired or base_aliases(trained_on) & base_aliases(paired):
        return False
    logger.warning(
        "this SUR-adapter was trained on base model %r but is paired with %r: the text widths match, "
        "but an adapter learns its own base's embeddings, so the adapted images may be poor or broken. "
        "Use the base it was trained on, or train an adapter for this one.", trained_on, paired)
    return True


def _validate_item(i: int, prompt, seed, total: int):
    """(prompt, seed) of one batch item; in a batch the error names the item."""
    try:
        return validate_request(prompt, seed, 1, 0.0)[:2]
    except ValueError as e:
        raise ValueError(f"item {i}: {e}" if total > 1 else str(e)) from None


def _sync(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


__all__ = ["SURPipeline", "Generation", "validate_request", "VARIANTS", "warn_if_other_base", "base_aliases"]
