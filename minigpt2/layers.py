"""Small pure float32 functions of the GPT-2 forward pass (no batch axis)."""
from __future__ import annotations

import numpy as np

_GELU_C = np.float32(np.sqrt(2.0 / np.pi))  # float32, so nothing upcasts to float64
_GELU_A = np.float32(0.044715)
_HALF = np.float32(0.5)
_ONE = np.float32(1.0)


def _centred_and_inv_std(x: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    # One new array only: on big inputs (the whole vocabulary) temporaries, not arithmetic, cost the time.
    c = x - x.mean(axis=-1, keepdims=True)                                    # [..., D]
    var = np.einsum("...d,...d->...", c, c) / np.float32(x.shape[-1])         # biased, as torch.nn.LayerNorm
    return c, np.float32(1.0) / np.sqrt(var + np.float32(eps))[..., None]     # [..., 1]


def inv_std(x: np.ndarray, eps: float) -> np.ndarray:
    """1 / sqrt(var + eps) over the last axis, [..., 1]: the scale a LayerNorm applies to x."""
    return _centred_and_inv_std(x, eps)[1]


def normalize(x: np.ndarray, eps: float) -> np.ndarray:
    """(x - mean) / std over the last axis: LayerNorm before its gain and bias."""
    c, inv_std = _centred_and_inv_std(x, eps)
    c *= inv_std
    return c


def layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    out = normalize(x, eps)                                                   # [..., D]
    out *= w
    out += b
    return out


def gelu_new(x: np.ndarray) -> np.ndarray:
    """GPT-2's tanh approximation of GELU ("gelu_new"): 0.5 x (1 + tanh(y)), y = c (x + a x^3).

    Computed as x / (1 + exp(-2y)), the same function (0.5 (1 + tanh y) = sigmoid(2y)), because
    numpy's exp is vectorised and its tanh is not: 2.7x faster, within 1e-7 relative of the tanh form.
    Very negative x gives exactly 0 (exp overflows to inf), as the tanh form does.
    """
    y = x * x                                                # [..] one temporary, updated in place
    y *= _GELU_A
    y += _ONE
    y *= x
    y *= np.float32(-2.0) * _GELU_C                          # -2 c (x + a x^3)
    with np.errstate(over="ignore"):
        np.exp(y, out=y)
    y += _ONE
    return np.divide(x, y, out=y)


def softmax_(x: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, in place (x may hold -inf for masked entries)."""
    x -= x.max(axis=-1, keepdims=True)
    np.exp(x, out=x)
    x *= _ONE / x.sum(axis=-1, keepdims=True)
    return x


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """log softmax over the last axis, in float64 (a log-probability of a token a float32 sum would blur)."""
    x = logits.astype(np.float64)
    x -= x.max(axis=-1, keepdims=True)
    x -= np.log(np.exp(x).sum(axis=-1, keepdims=True))
    return x


def causal_softmax(scores: np.ndarray) -> np.ndarray:
    """[..., T, T] softmax over keys at or before each query (entries above the diagonal get 0), float64."""
    T = scores.shape[-1]
    return softmax_(np.where(np.tril(np.ones((T, T), bool)), scores.astype(np.float64), -np.inf))
