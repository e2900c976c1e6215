"""minigpt2: a pure-NumPy GPT-2 that records every pattern, message and residual contribution."""
from .config import GPT2Config
from .forward import InputError
from .model import LoadError, Model, load
from .trace import Decomposition, Trace

__all__ = ["GPT2Config", "Model", "load", "Trace", "Decomposition", "LoadError", "InputError"]
__version__ = "0.1.0"
