"""Small pure float32 functions of the GPT-2 forward pass (no batch axis)."""
from __future__ import annotations

import numpy as np

_GELU_C = np.float32(np.sqrt(2.0 / np.pi))  # float32, so nothing upcasts to float64
_GELU_A = np.float32(0.044715)
_HALF = np.float32(0.5)
_ONE = np.float32(1.0)


def layer_norm_stats(x: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean and 1/std over the last axis (biased variance, as torch.nn.LayerNorm)."""
    mean = x.mean(axis=-1, keepdims=True)                     # [..., 1]
    centered = x - mean
    var = np.mean(centered * centered, axis=-1, keepdims=True)
    return mean, np.float32(1.0) / np.sqrt(var + np.float32(eps))


def normalize(x: np.ndarray, eps: float) -> np.ndarray:
    """(x - mean) / std over the last axis: LayerNorm before its gain and bias."""
    mean, inv_std = layer_norm_stats(x, eps)
    return (x - mean) * inv_std


def layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    return normalize(x, eps) * w + b                          # [..., D]


def gelu_new(x: np.ndarray) -> np.ndarray:
    """GPT-2's tanh approximation of GELU ("gelu_new")."""
    inner = _GELU_C * (x + _GELU_A * x * x * x)
    return _HALF * x * (_ONE + np.tanh(inner))


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)
