"""The three SUR-adapter losses, each a small function of tensors.

``total = noise_weight * noise_loss + llm_weight * llm_distill_loss + quality_weight * quality_loss``
(official weights 1, 1e-5, 1e-5), plus ``identity_weight * identity_loss`` on the rows whose
input is the spell (``spell_fraction``; not in the paper, off by default).

Conventions, and where they differ from the official script:

* ``noise_loss`` keeps the graph from the UNet back into the adapter. The official code re-wraps
  the conditioning with ``torch.tensor(...)``, which detaches it, so the adapter never got this
  loss; ``official_detached=True`` reproduces that, for ablations only.
* Both KL terms are KL(teacher || student) = sum p_teacher * (log p_teacher - log p_student),
  softmaxes over the feature dimension, times temperature^2 (Hinton). The official script passes
  its arguments to ``F.kl_div`` the other way round (KL(student || teacher)).
* ``llm_distill_loss`` compares one pooled teacher vector per prompt with the adapter's
  transformer output *mean-pooled over the prompt's real tokens* (the teacher vector is a mean
  over real tokens too). The official script broadcast the teacher vector against all 77 token
  states and summed the 77 KLs, so its term is roughly 77x ours at the same weight.
* ``quality_loss`` is per token (over features), summed over tokens and averaged over the batch,
  exactly the official ``reduction="batchmean"`` scale, so the official 1e-5 weight means the same.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .teacher import pool_tokens

PREDICTION_TYPES = ("epsilon", "v_prediction")


@dataclass(frozen=True)
class LossWeights:
    noise: float = 1.0
    llm: float = 1e-5
    quality: float = 1e-5
    identity: float = 0.0
    gate: float = 0.0


def sample_noise_and_timesteps(latents: torch.Tensor, num_train_timesteps: int,
                               generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian noise like `latents` and one uniform timestep per sample (global RNG if no generator)."""
    noise = torch.randn(latents.shape, generator=generator, device=latents.device, dtype=latents.dtype)
    t = torch.randint(0, num_train_timesteps, (latents.shape[0],), generator=generator, device=latents.device)
    return noise, t.long()


def min_snr_weights(scheduler, timesteps: torch.Tensor, gamma: float) -> torch.Tensor:
    """Per-sample Min-SNR-gamma weights (Hang et al. 2023) for the scheduler's prediction type:
    min(snr, gamma) / snr for an epsilon target, min(snr, gamma) / (snr + 1) for a velocity."""
    from diffusers.training_utils import compute_snr

    snr = compute_snr(scheduler, timesteps)
    clipped = torch.clamp(snr, max=float(gamma))
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return clipped / snr
    if kind == "v_prediction":
        return clipped / (snr + 1.0)
    raise ValueError(f"Min-SNR weighting supports {PREDICTION_TYPES}, not {kind!r}")


def noise_loss(unet, scheduler, latents: torch.Tensor, encoder_hidden_states: torch.Tensor,
               noise: torch.Tensor, timesteps: torch.Tensor, snr_gamma: float | None = None,
               official_detached: bool = False,
               added_cond_kwargs: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """Noise-prediction MSE of the (frozen) UNet conditioned on the adapted embedding.

    `scheduler` is the training noise scheduler (DDPM); its ``prediction_type`` picks the target:
    the noise (epsilon) or the velocity (v_prediction). `snr_gamma` > 0 applies Min-SNR weights,
    0 or None weights every timestep alike. Gradient flows into `encoder_hidden_states` unless
    `official_detached` (the official code's defect). `added_cond_kwargs` is the UNet's extra
    conditioning of SDXL bases (pooled text vectors and time ids), passed through as given.
    """
    if snr_gamma is not None and snr_gamma < 0:
        raise ValueError(f"snr_gamma must be > 0 for Min-SNR, or 0 / None for plain MSE; got {snr_gamma}")
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        target = noise
    elif kind == "v_prediction":
        target = scheduler.get_velocity(latents, noise, timesteps)
    else:
        raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {kind!r}")
    cond = encoder_hidden_states.detach() if official_detached else encoder_hidden_states
    noisy = scheduler.add_noise(latents, noise, timesteps)
    extra = {}
    if added_cond_kwargs is not None:
        extra["added_cond_kwargs"] = {k: v.to(unet.dtype) for k, v in added_cond_kwargs.items()}
    pred = unet(noisy.to(unet.dtype), timesteps, cond.to(unet.dtype), **extra).sample
    if not snr_gamma:
        return F.mse_loss(pred.float(), target.float())
    per_sample = F.mse_loss(pred.float(), target.float(), reduction="none").mean(dim=tuple(range(1, pred.ndim)))
    return (per_sample * min_snr_weights(scheduler, timesteps, snr_gamma)).mean()


def _kl(teacher_logits: torch.Tensor, student_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(softmax(teacher/T) || softmax(student/T)) over the last dim, elementwise-summed there."""
    t = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    s = F.log_softmax(student_logits.float() / temperature, dim=-1)
    return F.kl_div(s, t, log_target=True, reduction="none").sum(dim=-1) * temperature ** 2


def llm_distill_loss(hidden: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor | None = None,
                     temperature: float = 1.0) -> torch.Tensor:
    """KL between softmax(projected LLM vector) (B, D) and softmax(adapter transformer output
    (B, L, D) mean-pooled over the prompt's tokens `mask`), over features; mean over the batch."""
    if teacher.ndim != 2 or hidden.ndim != 3 or teacher.shape[-1] != hidden.shape[-1]:
        raise ValueError(f"expected hidden (B, L, D) and teacher (B, D), got {tuple(hidden.shape)} "
                         f"and {tuple(teacher.shape)}")
    pooled = hidden.mean(dim=1) if mask is None else pool_tokens(hidden, mask.to(hidden.device), "mean")
    # The teacher is a target: only the adapter may move to meet it (docs/method.md, defect 4).
    return _kl(teacher.detach(), pooled, temperature).mean()


def quality_loss(adapted: torch.Tensor, complex_embeds: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """KL between softmax(text-encoder embedding of the complex prompt) and softmax(adapter output
    for the simple prompt), per token over features; summed over tokens, mean over the batch."""
    if adapted.shape != complex_embeds.shape:
        raise ValueError(f"adapted {tuple(adapted.shape)} and complex-prompt embeddings "
                         f"{tuple(complex_embeds.shape)} must have the same shape")
    return _kl(complex_embeds.detach(), adapted, temperature).sum(dim=-1).mean()


def identity_loss(adapted: torch.Tensor, embeds: torch.Tensor) -> torch.Tensor:
    """Relative squared distance of the adapter's output from its input, ||a - x||^2 / ||x||^2
    per prompt, mean over the batch. Applied to prompts that already work (spells), it asks the
    adapter to leave them alone; a fresh adapter scores eta^2 (its output is (1 - eta) * x), or 0 in
    the residual form (its output is x)."""
    if adapted.shape != embeds.shape:
        raise ValueError(f"adapted {tuple(adapted.shape)} and input embeddings {tuple(embeds.shape)} "
                         "must have the same shape")
    if adapted.shape[0] == 0:
        return adapted.new_zeros((), dtype=torch.float32)
    x = embeds.detach().float()
    dims = tuple(range(1, x.ndim))
    err = (adapted.float() - x).pow(2).sum(dim=dims)
    return (err / x.pow(2).sum(dim=dims).clamp_min(1e-12)).mean()


def gate_loss(scores: torch.Tensor, closed: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """A hinge that teaches a prompt gate which prompts to pass: scores (B, 1, 1) or (B,) of
    identity rows (`closed` True) below -margin, of narrative rows above +margin, mean over rows.

    Without it the identity term alone barely reaches the gate: once the adapter's change on a
    prompt is small its gradient is too, and the gate stays half open. The row type is known in
    training, so the gate can be taught directly; at inference it decides alone."""
    s = scores.reshape(scores.shape[0]).float()
    if s.shape[0] == 0:
        return s.new_zeros(())
    closed = closed.to(s.device).bool()
    return torch.where(closed, torch.relu(margin + s), torch.relu(margin - s)).mean()


__all__ = ["LossWeights", "noise_loss", "llm_distill_loss", "quality_loss", "identity_loss", "gate_loss",
           "min_snr_weights", "sample_noise_and_timesteps"]
