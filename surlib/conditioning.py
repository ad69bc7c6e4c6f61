"""What a batch of prompts becomes for the base pipeline, made by the pipeline's own `encode_prompt`.

`embeds` are the token embeddings the UNet attends to — the text encoder's last hidden state for
SD 1.x / 2.x, the two encoders' penultimate hidden states concatenated for SDXL — and are what the
SUR-adapter rewrites. SDXL adds `pooled`: text_encoder_2's projected pooled output, which its UNet
adds to the timestep embedding (`added_cond_kwargs["text_embeds"]`).

The pooled vector is never adapted. The adapted image keeps its prompt's own pooled vector, the
baseline's, so a pair differs only by what the adapter changes and eta 0 is exactly the baseline:
 * the paper's method is defined on the token sequence the UNet cross-attends to (the adapter's
   transformer attends over tokens, its distillation pools token states, its quality loss
   compares token by token); SDXL's pooled vector is a second, global path with no counterpart
   in SD 1.x, one vector and no tokens, so "adapting" it would be a new method, not this one;
 * it cannot be derived from the adapted tokens either: it is text_encoder_2's final layer,
   final norm and projection at the end-of-text token, while the adapter sees the penultimate
   states of both encoders;
 * training conditions the frozen UNet the same way (adapted tokens with the simple prompt's
   pooled vector, `surlib.training.frozen.Frozen.added_cond_kwargs`), so the adapter learns for
   exactly the conditioning it gets at inference.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from .bases import is_sdxl


@dataclass
class PromptConditioning:
    """A batch of prompts as the base pipeline takes them (`negative*` None without guidance,
    `*pooled` None for SD 1.x / 2.x)."""

    embeds: torch.Tensor
    negative: torch.Tensor | None = None
    pooled: torch.Tensor | None = None
    negative_pooled: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.embeds.shape[0]

    def __getitem__(self, rows: slice) -> "PromptConditioning":
        return PromptConditioning(*(None if t is None else t[rows] for t in self._fields()))

    def with_embeds(self, embeds: torch.Tensor) -> "PromptConditioning":
        """The same prompts with other token embeddings (the adapter's); pooled vectors kept."""
        return dataclasses.replace(self, embeds=embeds)

    @classmethod
    def interleave(cls, parts: list["PromptConditioning"]) -> "PromptConditioning":
        """One batch from several of equal length, prompt-major: row i of every part side by side
        (the variants of one prompt next to each other)."""
        fields = zip(*(p._fields() for p in parts))
        return cls(*(None if column[0] is None else torch.stack(column, 1).flatten(0, 1) for column in fields))

    def pipeline_kwargs(self) -> dict[str, torch.Tensor | None]:
        """The `prompt_embeds` family of arguments of the pipeline's `__call__`."""
        kwargs = {"prompt_embeds": self.embeds, "negative_prompt_embeds": self.negative}
        if self.pooled is not None:
            kwargs.update(pooled_prompt_embeds=self.pooled, negative_pooled_prompt_embeds=self.negative_pooled)
        return kwargs

    def _fields(self) -> tuple:
        return (self.embeds, self.negative, self.pooled, self.negative_pooled)


@torch.no_grad()
def encode_conditioning(sd, prompts: list[str], device: torch.device, guidance: float,
                        negative_prompt: str | None = None) -> PromptConditioning:
    """`prompts` (and, with guidance > 1, the negative prompt, or the pipeline's own empty-prompt
    negative) through `sd.encode_prompt`, exactly as the pipeline's `__call__` would encode them."""
    use_cfg = guidance > 1.0
    negative = [negative_prompt] * len(prompts) if use_cfg and negative_prompt is not None else None
    out = sd.encode_prompt(list(prompts), device=device, num_images_per_prompt=1,
                           do_classifier_free_guidance=use_cfg, negative_prompt=negative)
    if is_sdxl(sd):
        embeds, negative_embeds, pooled, negative_pooled = out
        return PromptConditioning(embeds, negative_embeds if use_cfg else None, pooled,
                                  negative_pooled if use_cfg else None)
    embeds, negative_embeds = out
    return PromptConditioning(embeds, negative_embeds)


__all__ = ["PromptConditioning", "encode_conditioning"]
