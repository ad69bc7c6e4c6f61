"""SUR-adapter: make Stable Diffusion follow plain-language prompts by distilling an LLM."""

from .adapter import SURAdapter, SURAdapterOutput
from .pipeline import Generation, SURPipeline, validate_request
from .presets import PRESETS, load_preset

__all__ = ["SURAdapter", "SURAdapterOutput", "SURPipeline", "Generation", "validate_request",
           "PRESETS", "load_preset"]
