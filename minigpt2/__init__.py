"""minigpt2: a pure-NumPy GPT-2 that records every pattern, message and residual contribution."""
from .config import GPT2Config
from .edits import Edit
from .errors import (ConfigError, Error, InputError, LoadError, NumericError, OutputError, TokenizerError,
                     WeightsError)
from .model import Model, load
from .decomposition import Decomposition
from .trace import Trace

__all__ = ["GPT2Config", "Edit", "Model", "load", "Trace", "Decomposition", "Error", "LoadError", "InputError",
           "ConfigError", "WeightsError", "TokenizerError", "NumericError", "OutputError"]
__version__ = "0.1.0"
