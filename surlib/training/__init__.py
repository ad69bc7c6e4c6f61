"""Training a SUR-adapter on a frozen base model (see loop.train)."""

from .loop import *  # noqa: F401,F403
from .loop import __all__  # noqa: F401
