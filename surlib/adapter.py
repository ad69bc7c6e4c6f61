"""The SUR-adapter: a small network that rewrites a prompt's text-encoder embedding.

Paper: Zhong et al., "SUR-adapter", ACM MM 2023. Differences from the official code are
deliberate fixes (see docs/method.md): the transformer attends over each
prompt's own tokens (batch first), `eta` and the LLM projection live in the saved config and
weights, no unused layers are kept, and the module is a diffusers model so it saves, loads and
moves like any other pipeline component.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from torch import nn


@dataclass
class SURAdapterOutput(BaseOutput):
    """`embeds` goes to the UNet; `hidden` (transformer output) is what the LLM loss distils into;
    `gate_score` (before relu(tanh(.)), (B, L, 1) or (B, 1, 1)) is what the gate loss trains, None
    without a gate."""

    embeds: torch.Tensor
    hidden: torch.Tensor
    gate_score: torch.Tensor | None = None


class PromptAttention(nn.Module):
    """Queries from the adapter's transformer, keys and values from the original embedding.

    As in the paper the values are the embedding itself (no value projection), so the block
    re-mixes the prompt's own token vectors; a residual add and a residual feed-forward follow.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.to_q = nn.Linear(dim, dim)
        self.to_k = nn.Linear(dim, dim)
        self.ff = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim))
        self.scale = 1.0 / math.sqrt(dim)

    def forward(self, query: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        scores = torch.einsum("bqd,bkd->bqk", self.to_q(query), self.to_k(x)) * self.scale
        h = torch.einsum("bqk,bkd->bqd", scores.softmax(dim=-1), x) + x
        return self.ff(h) + h


GATES = (None, "token", "prompt")


def gate_opening(score: torch.Tensor) -> torch.Tensor:
    """A gate score as how much of the adapter's change passes, in [0, 1). relu makes a closed
    gate exactly 0 (the input, bit for bit); tanh keeps a gradient at the open end."""
    return torch.relu(torch.tanh(score))


def check_eta(eta) -> float:
    """`eta` as a float in [0, 1], or ValueError naming what was given."""
    if isinstance(eta, bool):  # float(True) is 1.0: a flag is not a strength
        raise ValueError(f"eta must be a number between 0 and 1, got {eta!r}")
    try:
        value = float(eta)
    except (TypeError, ValueError):
        raise ValueError(f"eta must be a number between 0 and 1, got {eta!r}") from None
    if not 0.0 <= value <= 1.0:  # also refuses NaN
        raise ValueError(f"eta must be a number between 0 and 1, got {eta!r}")
    return value


class SURAdapter(ModelMixin, ConfigMixin):
    """Maps text embeddings (B, L, text_dim) to adapted embeddings of the same shape.

    Output = eta * fc(h) + (1 - eta) * x (the paper's form), with `fc` initialised to zero, or with
    `residual=True`: x + eta * fc(h). The two can express the same maps; they differ in what the
    adapter does where training gave `fc` nothing to say (fc(h) ~ 0, e.g. a word no training
    sentence used): the paper's form scales that token by (1 - eta), the residual form passes it
    through unchanged, so a fresh residual adapter is the identity. `gate` ("token" or "prompt")
    scales the change: output x + g * (form's output - x) with g in [0, 1) per token or per
    prompt, so where the gate is closed the input passes exactly (identity rows teach where to
    close it; see `gates`). `llm_proj` maps the
    teacher LLM's pooled vector to the text width for the distillation loss. It stays frozen at
    its seeded init (as in the official code): a trainable projection lets the distillation KL
    be satisfied by moving the teacher side instead of the adapter. It is saved with the adapter
    (so a run can be resumed and audited) and unused at inference.
    """

    @register_to_config
    def __init__(
        self,
        text_dim: int = 768,
        llm_dim: int = 5120,
        num_layers: int = 2,
        num_heads: int = 8,
        ff_dim: int = 2048,
        dropout: float = 0.1,
        eta: float = 0.1,
        init_seed: int = 0,
        base_model: str | None = None,
        residual: bool = False,
        gate: str | None = None,
    ):
        super().__init__()
        if text_dim % num_heads:
            raise ValueError(f"text_dim ({text_dim}) must be divisible by num_heads ({num_heads})")
        check_eta(eta)
        if not isinstance(residual, bool):
            raise ValueError(f"residual must be true or false, got {residual!r}")
        if gate not in GATES:
            raise ValueError(f"gate must be one of {', '.join(map(repr, GATES))}, got {gate!r}")
        # Seeded so that two adapters made from the same config start identical (the official
        # LLM projection was random and unseeded).
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            layer = nn.TransformerEncoderLayer(
                d_model=text_dim, nhead=num_heads, dim_feedforward=ff_dim, dropout=dropout, batch_first=True
            )
            self.transformer = nn.TransformerEncoder(layer, num_layers=num_layers, enable_nested_tensor=False)
            self.attention = PromptAttention(text_dim)
            self.fc = nn.Linear(text_dim, text_dim)
            self.llm_proj = nn.Linear(llm_dim, text_dim)
        if gate:
            self.gate_score = nn.Linear(text_dim, 1)
            nn.init.zeros_(self.gate_score.weight)
            nn.init.ones_(self.gate_score.bias)
        nn.init.zeros_(self.fc.weight)
        nn.init.zeros_(self.fc.bias)
        self.llm_proj.requires_grad_(False)
        self.eval()  # inference is the default; training code calls .train() explicitly

    @property
    def text_dim(self) -> int:
        return self.config.text_dim

    def forward(self, x: torch.Tensor, return_dict: bool = True, eta: float | None = None):
        """`eta` overrides the configured strength for this call (0 gives back `x`: the baseline)."""
        if x.ndim != 3 or x.shape[-1] != self.config.text_dim:
            raise ValueError(
                f"SURAdapter expects text embeddings of shape (batch, tokens, {self.config.text_dim}), "
                f"got {tuple(x.shape)}"
            )
        x = x.to(self.dtype)
        hidden = self.transformer(x)
        h = self.attention(hidden, x)
        eta = self.config.eta if eta is None else check_eta(eta)
        if self.config.residual:
            embeds = x + eta * self.fc(h)
        else:
            embeds = eta * self.fc(h) + (1.0 - eta) * x
        score = None
        if self.config.gate:
            score = self.gate_scores(x)
            embeds = x + gate_opening(score) * (embeds - x)
        if not return_dict:
            return embeds, hidden
        return SURAdapterOutput(embeds=embeds, hidden=hidden, gate_score=score)

    def gate_scores(self, x: torch.Tensor) -> torch.Tensor:
        """Each token's score from its own input vector, (B, L, 1); the prompt gate takes a soft
        maximum, (B, 1, 1), so a prompt none of whose tokens asks to be translated passes whole.
        Soft (log of the mean of exp), not the max: with all scores equal at init the max would
        send every gradient to the first token, the same vector in every prompt."""
        score = self.gate_score(x.to(self.dtype))
        if self.config.gate == "prompt":
            score = torch.logsumexp(score, dim=1, keepdim=True) - math.log(score.shape[1])
        return score

    def gates(self, x: torch.Tensor) -> torch.Tensor:
        """How much of the adapter's change each token (or prompt) takes (see `gate_opening`)."""
        return gate_opening(self.gate_scores(x))

    def project_llm(self, llm_features: torch.Tensor) -> torch.Tensor:
        """Teacher vectors (B, llm_dim) in the text width, for the distillation loss."""
        if llm_features.shape[-1] != self.config.llm_dim:
            raise ValueError(
                f"LLM features have width {llm_features.shape[-1]} but this adapter was built for "
                f"llm_dim={self.config.llm_dim}"
            )
        return self.llm_proj(llm_features.to(self.dtype))

    def check_text_width(self, width: int, where: str = "the base model's text encoder") -> None:
        """Refuse a base model of another text width (the official checkpoint broke images so)."""
        if int(width) != self.config.text_dim:
            raise ValueError(
                f"adapter text width {self.config.text_dim} does not match {where} width {width}: "
                "this adapter was trained for a different base model family "
                "(768 = SD 1.x, 1024 = SD 2.x, 2048 = SDXL, 384 = the toy MiniLM world)"
            )
