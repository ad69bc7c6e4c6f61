"""SUR-adapter: make Stable Diffusion follow plain-language prompts by distilling an LLM.

Names are imported lazily so that light modules (the toy world, the vote store) do not pay
for importing diffusers.
"""

import importlib

_EXPORTS = {
    "SURAdapter": ".adapter", "SURAdapterOutput": ".adapter",
    "SURPipeline": ".pipeline", "Generation": ".pipeline", "validate_request": ".pipeline",
    "PRESETS": ".presets", "load_preset": ".presets", "default_preset": ".presets",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module 'surlib' has no attribute {name!r}")
